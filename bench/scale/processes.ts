// The processes a scale scenario starts: `wsgate echo` backends and the gateway
// (a cluster primary with its workers, or one process) from a temp config.
// Every one is a spawnChild of the suite's, so killAllChildren() ends them all
// when the run ends, fails or is interrupted.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort, spawnChild } from '../suite/proc.js';
import type { Child } from '../suite/proc.js';
import { pinned } from './system.js';
import type { Cpus } from './system.js';

/** Where a scenario runs: the repository, a temp directory for configs, and how to run `wsgate`. */
export interface ScaleEnv {
  readonly root: string;
  readonly tmp: string;
  /** The command that runs `wsgate` (node, with tsx for a .ts entry, and the entry point). */
  readonly wsgate: readonly string[];
}

/** Node's cluster scheduling: rr = the primary accepts and hands connections round-robin; none = every worker accepts, the kernel picks. */
export type SchedPolicy = 'rr' | 'none';
export type RelayMode = 'inspect' | 'tunnel';

const ECHO_START_MS = 30_000;
/** Eight workers under tsx on a busy 2-core machine take a while. */
const GATEWAY_START_MS = 120_000;
const ADMIN_TIMEOUT_MS = 15_000;

async function waitForOutput(child: Child, pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const m = pattern.exec(child.output());
    if (m) return m;
    if (child.hasExited()) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const why = child.hasExited() ? 'exited' : `did not get ready within ${timeoutMs / 1000} s`;
  await child.stop();
  throw new Error(`${child.name} ${why}:\n${child.output().trim()}`);
}

export interface Echo {
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startEcho(env: ScaleEnv, name: string, cpus: Cpus): Promise<Echo> {
  const [cmd, ...args] = pinned(cpus, [...env.wsgate, 'echo', '--port', '0']);
  const child = spawnChild(name, cmd as string, args, { cwd: env.root });
  const m = await waitForOutput(child, /listening on ws:\/\/127\.0\.0\.1:(\d+)\//, ECHO_START_MS);
  return { port: Number(m[1]), pid: child.pid, stop: () => child.stop() };
}

/** `n` echo backends, started side by side. */
export async function startEchoes(env: ScaleEnv, n: number, cpus: Cpus): Promise<Echo[]> {
  const started = await Promise.allSettled(Array.from({ length: n }, (_, i) => startEcho(env, `echo backend ${i + 1}`, cpus)));
  const echoes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(echoes.map((e) => e.stop()));
    throw failed.reason;
  }
  return echoes;
}

export interface GatewaySpec {
  /** cluster.workers: 1 runs one process (no primary); more make a primary with that many workers. */
  readonly workers: number;
  readonly policy: SchedPolicy;
  readonly backendPorts: readonly number[];
  readonly mode: RelayMode;
  /** relay.pingInterval and relay.pongTimeout (inspect mode), e.g. "10s"; the defaults (30s, 10s) when undefined. */
  readonly pingInterval?: string;
  readonly pongTimeout?: string;
  readonly cpus: Cpus;
  /** cluster.redis (limits, drains and the registry shared across instances); none when undefined. */
  readonly redis?: string;
  /** The listener expects a PROXY protocol header (behind HAProxy's send-proxy-v2). */
  readonly proxyProtocol?: boolean;
}

export interface WorkerStatus {
  readonly id: number;
  readonly pid: number;
  /** Open sessions. */
  readonly connections: number;
}

/** This instance in GET /api/cluster. A single-process gateway has no workers. */
export interface InstanceStatus {
  readonly pid: number;
  readonly connections: number;
  readonly workers: readonly WorkerStatus[];
}

export interface Gateway {
  readonly url: string;
  readonly spec: GatewaySpec;
  /** The config it runs, as written. */
  readonly configText: string;
  /** The primary (or the one process). */
  readonly pid: number;
  /** Its admin listener (/readyz, /api/cluster). */
  readonly adminPort: number;
  /** Worker pids as they were at start; empty for a single process. */
  readonly workerPids: readonly number[];
  /** The primary and every worker: whose CPU and memory are the gateway's. */
  readonly pids: readonly number[];
  status(): Promise<InstanceStatus>;
  stop(): Promise<void>;
}

/**
 * The config: the route and the upstream are the bench's; the limits let a whole load from a few
 * loopback addresses through (handshakeRate 0 = no per-IP rate limit), and a short drain makes
 * teardown quick. Logs at info: the primary's "wsgate started" is what the start waits for.
 */
function gatewayConfig(spec: GatewaySpec, port: number, adminPort: number): Record<string, unknown> {
  return {
    listeners: [{ address: `127.0.0.1:${port}`, ...(spec.proxyProtocol === true ? { proxyProtocol: true } : {}) }],
    admin: { address: `127.0.0.1:${adminPort}` },
    routes: [{ match: { path: '/' }, upstream: 'echo' }],
    upstreams: { echo: { targets: spec.backendPorts.map((p) => ({ url: `ws://127.0.0.1:${p}` })) } },
    limits: { maxConnections: 100_000, perIp: { maxConnections: 100_000, handshakeRate: 0 } },
    relay: {
      mode: spec.mode,
      ...(spec.pingInterval === undefined ? {} : { pingInterval: spec.pingInterval }),
      ...(spec.pongTimeout === undefined ? {} : { pongTimeout: spec.pongTimeout }),
    },
    cluster: { workers: spec.workers, ...(spec.redis === undefined ? {} : { redis: spec.redis }) },
    shutdown: { drainTimeout: '1s' },
    log: { level: 'info', accessLog: false },
  };
}

/** This instance in GET /api/cluster: the one whose primary is `pid` (with cluster.redis, every instance sharing the Redis is listed). */
async function fetchStatus(adminPort: number, pid: number): Promise<InstanceStatus> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/api/cluster`, { signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`GET /api/cluster answered ${res.status}`);
  const body = (await res.json()) as { instances?: InstanceStatus[] };
  const listed = body.instances ?? [];
  const mine = listed.find((i) => i.pid === pid) ?? (listed.length === 1 ? listed[0] : undefined);
  if (mine === undefined) throw new Error('GET /api/cluster listed no instance');
  return mine;
}

export async function startGateway(env: ScaleEnv, name: string, spec: GatewaySpec): Promise<Gateway> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const configText = stringify(gatewayConfig(spec, port, adminPort));
  const file = join(env.tmp, `${name.replace(/\W+/g, '-')}-${port}.yaml`);
  writeFileSync(file, configText);
  const [cmd, ...args] = pinned(spec.cpus, [...env.wsgate, 'start', '-c', file]);
  const child = spawnChild(name, cmd as string, args, { cwd: env.root, env: { ...process.env, NODE_CLUSTER_SCHED_POLICY: spec.policy } });
  await waitForOutput(child, /"msg":"wsgate started"/, GATEWAY_START_MS);
  let first: InstanceStatus;
  try {
    first = await fetchStatus(adminPort, child.pid);
  } catch (err) {
    await child.stop();
    throw err;
  }
  const workerPids = first.workers.map((w) => w.pid);
  return {
    url: `ws://127.0.0.1:${port}/`,
    spec,
    configText,
    pid: first.pid,
    adminPort,
    workerPids,
    pids: [first.pid, ...workerPids],
    status: () => fetchStatus(adminPort, first.pid),
    stop: () => child.stop(),
  };
}

/** Worker pids that are no longer those the gateway started with: a worker died and was replaced. */
export function replacedWorkers(gateway: Gateway, now: InstanceStatus): number {
  const before = new Set(gateway.workerPids);
  return now.workers.filter((w) => !before.has(w.pid)).length;
}
