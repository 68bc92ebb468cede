import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Config } from '../config/types.js';

/** Settings a running gateway cannot take on: a reload that changes any of them is refused, naming each. */
export function restartOnly(now: Config, next: Config): string[] {
  const out: string[] = [];
  for (const key of ['workers', 'redis', 'onRedisError'] as const) {
    if (now.cluster[key] !== next.cluster[key]) out.push(`cluster.${key}: cannot change while the gateway runs; restart it to apply`);
  }
  // The file is opened once, at start (SIGUSR1 reopens the same path, for logrotate).
  if (now.log.file !== next.log.file) out.push('log.file: cannot change while the gateway runs; restart it to apply');
  // The logger (and its pretty printer) is built once and held by everything that logs.
  if (now.log.format !== next.log.format) out.push('log.format: cannot change while the gateway runs; restart it to apply');
  // Written once by `wsgate start`; `wsgate reload` would look for the pid at the new path.
  if (now.pidFile !== next.pidFile) out.push('pidFile: cannot change while the gateway runs; restart it to apply');
  return out;
}

/**
 * `cluster.workers` as a number: `auto` is one per core this process may use —
 * the CPUs it can run on, or fewer under a cgroup CPU quota (a container's
 * CPU limit), which Node's count does not see. Above 1, a primary supervises
 * that many workers.
 */
export function workerCount(config: Config, cpuMax = readCpuMax()): number {
  const w = config.cluster.workers;
  if (w !== 'auto') return w;
  const quota = cpuQuota(cpuMax);
  return Math.max(1, Math.min(availableParallelism(), quota ?? Infinity));
}

/** cgroup v2's cpu.max, "QUOTA PERIOD" or "max PERIOD": whole CPUs the quota buys (rounded up), or undefined when unlimited. */
export function cpuQuota(cpuMax: string | undefined): number | undefined {
  const m = /^(\d+)\s+(\d+)/.exec(cpuMax?.trim() ?? '');
  if (m === null || Number(m[2]) === 0) return undefined;
  return Math.max(1, Math.ceil(Number(m[1]) / Number(m[2])));
}

function readCpuMax(): string | undefined {
  try {
    // Once, at start: the number of workers is settled before anything listens.
    return readFileSync('/sys/fs/cgroup/cpu.max', 'utf8');
  } catch {
    return undefined;
  }
}
