// The suite's scenarios: each runs one bounded load through a proxy and turns
// the load tool's result plus /proc readings of the proxy into a few figures.
import { parseBenchArgs } from '../../src/bench/options.js';
import { runLoad } from '../../src/bench/run-load.js';
import type { BenchResult } from '../../src/bench/run-load.js';
import { cpuMicros, rssKiB } from './proc.js';
import type { RunningProxy } from './proxies.js';

export interface SuiteSettings {
  readonly quick: boolean;
  /** chatty: messages/s in total. */
  readonly rate: number;
  /** Measured load of each scenario, seconds. */
  readonly seconds: number;
  /** Unmeasured load before it, seconds (not for idle). */
  readonly warmup: number;
}

export type Figures = Record<string, number | null>;

export interface ScenarioOutcome {
  readonly figures: Figures;
  readonly errors: Readonly<Record<string, number>>;
  readonly warnings: readonly string[];
  /** Open loop: the load tool could not keep its schedule, so latencies include its own queueing. */
  readonly behind: boolean;
  /** The equivalent `wsgate bench` command. */
  readonly command: string;
}

export interface ScenarioDef {
  readonly name: string;
  /** Whether a "direct" (no proxy) row means anything here. */
  readonly direct: boolean;
  run(proxy: RunningProxy, s: SuiteSettings): Promise<ScenarioOutcome>;
}

interface Measured {
  readonly result: BenchResult;
  /** Proxy CPU during the load phase, µs; null without a proxy. */
  readonly cpuUs: number | null;
  /** Proxy RSS growth from before connecting to the end of the load phase, KiB. */
  readonly rssGrowthKiB: number | null;
  readonly command: string;
}

async function measure(proxy: RunningProxy, args: readonly string[]): Promise<Measured> {
  const options = parseBenchArgs([proxy.url, ...args, '--no-progress']);
  const pid = proxy.pid;
  let cpuStart = 0;
  let cpuEnd = 0;
  let rssEnd = 0;
  const rssStart = pid === undefined ? 0 : rssKiB(pid);
  const result = await runLoad(options, {
    onLoadStart: () => {
      if (pid !== undefined) cpuStart = cpuMicros(pid);
    },
    onLoadEnd: () => {
      if (pid === undefined) return;
      cpuEnd = cpuMicros(pid);
      rssEnd = rssKiB(pid);
    },
  });
  return {
    result,
    cpuUs: pid === undefined ? null : cpuEnd - cpuStart,
    rssGrowthKiB: pid === undefined ? null : rssEnd - rssStart,
    command: `wsgate bench ${[proxy.url, ...args].join(' ')}`,
  };
}

function timing(s: SuiteSettings): string[] {
  return ['--duration', `${s.seconds}s`, ...(s.warmup > 0 ? ['--warmup', `${s.warmup}s`] : [])];
}

function per(total: number | null, count: number): number | null {
  return total === null || count <= 0 ? null : total / count;
}

function outcome(m: Measured, figures: Figures): ScenarioOutcome {
  return { figures, errors: m.result.errors, warnings: m.result.warnings, behind: m.result.behindSchedule, command: m.command };
}

// idle first: a fresh proxy process gives a clean memory baseline (a garbage-collected
// proxy keeps the heap that earlier scenarios grew, which would hide its per-connection cost).
export const SCENARIOS: readonly ScenarioDef[] = [
  {
    name: 'idle',
    direct: false,
    run: async (proxy, s) => {
      // Two load processes, each from its own 127.0.0.x: the load side stays far from 20,000 fds a process.
      const conns = s.quick ? 200 : 8000;
      const hold = s.quick ? '0.5s' : '1s';
      const m = await measure(proxy, ['--idle', '--connections', String(conns), '--workers', '2', '--duration', hold]);
      const r = m.result;
      return outcome(m, { kibPerConn: per(m.rssGrowthKiB, r.connectionsOpened), connections: r.connectionsOpened });
    },
  },
  {
    name: 'chatty',
    direct: true,
    run: async (proxy, s) => {
      const [conns, rate] = s.quick ? [20, Math.min(s.rate, 500)] : [1000, s.rate];
      const m = await measure(proxy, ['--rate', String(rate), '--connections', String(conns), '--size', '64', ...timing(s)]);
      const r = m.result;
      return outcome(m, {
        cpuUsPerMsg: per(m.cpuUs, r.messages.receivedInWindow),
        p50Ms: r.latency.p50,
        p99Ms: r.latency.p99,
        msgPerSec: r.messages.perSecond,
      });
    },
  },
  {
    name: 'max',
    direct: true,
    run: async (proxy, s) => {
      const [conns, inflight] = s.quick ? [10, 2] : [50, 8];
      const m = await measure(proxy, ['--inflight', String(inflight), '--connections', String(conns), '--size', '64', ...timing(s)]);
      const r = m.result;
      return outcome(m, { msgPerSec: r.messages.perSecond, cpuUsPerMsg: per(m.cpuUs, r.messages.receivedInWindow), p99Ms: r.latency.p99 });
    },
  },
  {
    name: 'bulk',
    direct: true,
    run: async (proxy, s) => {
      const conns = s.quick ? 4 : 50;
      const m = await measure(proxy, ['--inflight', '1', '--connections', String(conns), '--size', '64KiB', '--binary', ...timing(s)]);
      const r = m.result;
      const megabytes = (r.messages.receivedInWindow * r.size) / 1e6;
      return outcome(m, { mbPerSec: r.messages.bytesPerSecond / 1e6, cpuMsPerMB: per(m.cpuUs === null ? null : m.cpuUs / 1000, megabytes) });
    },
  },
  {
    name: 'churn',
    direct: true,
    run: async (proxy, s) => {
      const conns = s.quick ? 4 : 32;
      const m = await measure(proxy, ['--churn', '--connections', String(conns), '--size', '64', ...timing(s)]);
      const r = m.result;
      return outcome(m, {
        hsPerSec: r.handshakes.perSecond,
        p99HsMs: r.handshakes.latency.p99,
        cpuUsPerHs: per(m.cpuUs, r.handshakes.count),
      });
    },
  },
];
