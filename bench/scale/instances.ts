// instances: one wsgate instance against three behind HAProxy, as users
// deploy several (test/topology.test.ts): HAProxy in mode tcp, balance
// roundrobin, send-proxy-v2 to each instance, a health check on each
// instance's admin /readyz; every instance with `cluster.redis` set (one
// Redis for all, so the 1-instance run pays the same Redis round trips) and
// `proxyProtocol: true`. The loads are grow's (closed loop and churn), run in
// this process through HAProxy's port, with the CPU of every gateway process,
// of HAProxy, of Redis and of the load side read when the window opens and
// closes.
//
// This machine has two CPUs: three instances cannot get more cores than one
// instance could, so the 3 ÷ 1 ratios show what spreading costs (CPU per
// message and per handshake, the balance over instances), not growth. Two
// placements, as grow's:
//
// - pinned: every gateway process on CPU 1; HAProxy, Redis, the load generator
//   and the echo backend on CPU 0. The gateways have one core whatever their
//   number: the ratios are the cost of spreading one core's work over three
//   processes.
// - shared: nothing pinned: whatever the added instances can take of the
//   second core, as far as everything else leaves it free.
//
// Every topology of a placement stays up for all its rounds (so the rounds
// alternate which one goes first, as grow's do); the idle ones' CPU while
// another is measured is reported.
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { commandOutput, freePort, spawnChild, waitForPort } from '../suite/proc.js';
import type { Child } from '../suite/proc.js';
import { addErrors, errorList, formatNumber, markdownTable, maxMin, median, percent, plural, ratio, spread, totalErrors } from './format.js';
import { LOADS } from './grow.js';
import type { LoadDef } from './grow.js';
import { busyPct, cores, cpuOf, measuredLoad, nothing } from './measure.js';
import type { CpuWindow } from './measure.js';
import { replacedWorkers, startEcho, startGateway } from './processes.js';
import type { Echo, Gateway, ScaleEnv } from './processes.js';
import { ScaleUsageError, seconds, sleep } from './scenario.js';
import type { Progress, ScaleSettings, ScenarioReport } from './scenario.js';
import { allCpus, cpuCount, pinSelf, pinned } from './system.js';
import type { Cpus } from './system.js';

const HAPROXY = process.env.HAPROXY ?? 'haproxy';
const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';
/** Past this share of what it may use, a side counts as the limit. */
const SATURATED = 0.9;
const HAPROXY_READY_MS = 30_000;
const HAPROXY_STATS_MS = 5_000;

/** Instances × `cluster.workers` of each. */
export const TOPOLOGIES = {
  '1x1': { instances: 1, workers: 1 },
  '3x1': { instances: 3, workers: 1 },
  '3x2': { instances: 3, workers: 2 },
} as const;
export type TopologyName = keyof typeof TOPOLOGIES;
export const TOPOLOGY_NAMES = Object.keys(TOPOLOGIES) as TopologyName[];
const BASELINE: TopologyName = '1x1';

export const PLACEMENT_NAMES = ['pinned', 'shared'] as const;
export type PlacementName = (typeof PLACEMENT_NAMES)[number];

function topologyLabel(name: TopologyName): string {
  const { instances, workers } = TOPOLOGIES[name];
  return `${plural(instances, 'instance')}${workers > 1 ? ` × ${workers} workers` : ''}`;
}

interface Placement {
  readonly name: PlacementName;
  /** Every gateway process (undefined: anywhere), and how many CPUs that is. */
  readonly gateway: Cpus;
  readonly gatewayCpuCount: number;
  /** HAProxy, Redis and the echo backend (undefined: anywhere). */
  readonly others: Cpus;
  /** The load generator (this process). */
  readonly load: string;
  /** CPU indexes whose busy time is everything but the gateways' (pinned only). */
  readonly othersCpuIndexes: readonly number[] | undefined;
  readonly describe: string;
}

function placement(name: PlacementName): Placement {
  const n = cpuCount();
  if (name === 'pinned') {
    return {
      name,
      gateway: '1',
      gatewayCpuCount: 1,
      others: '0',
      load: '0',
      othersCpuIndexes: [0],
      describe:
        'pinned: every gateway process (each instance, primaries and workers) on CPU 1 (`taskset -c 1`); HAProxy, Redis, the load ' +
        'generator and the echo backend on CPU 0. The gateways have one core whatever their number',
    };
  }
  return {
    name,
    gateway: undefined,
    gatewayCpuCount: n,
    others: undefined,
    load: allCpus(),
    othersCpuIndexes: undefined,
    describe: `shared: nothing pinned; the gateways, HAProxy, Redis, the load generator and the echo backend share all ${n} CPUs`,
  };
}

// ---------------------------------------------------------------- Redis, HAProxy

interface Redis {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

async function startRedis(env: ScaleEnv, cpus: Cpus): Promise<Redis> {
  const port = await freePort();
  const argv = [REDIS_SERVER, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'];
  const [cmd, ...args] = pinned(cpus, argv);
  const child = spawnChild('redis-server', cmd as string, args, { cwd: env.tmp });
  try {
    await waitForPort(child, port);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid, stop: () => child.stop() };
}

/** One server line of HAProxy's `show stat` (counters since HAProxy started). */
interface ServerStats {
  readonly status: string;
  /** Sessions open now, and ever. */
  readonly scur: number;
  readonly stot: number;
  /** Failed connects to the instance, connects retried, response errors (server aborts included), aborts by either side. */
  readonly econ: number;
  readonly wretr: number;
  readonly eresp: number;
  readonly cliAbrt: number;
  readonly srvAbrt: number;
  /** UP → DOWN transitions (the health check failed). */
  readonly chkdown: number;
}

interface Haproxy {
  readonly url: string;
  readonly pid: number;
  /** Server name (g0, g1, …) → its counters. */
  stats(): Promise<Map<string, ServerStats>>;
  stop(): Promise<void>;
}

function haproxyConfig(front: number, socket: string, instances: readonly Gateway[]): string {
  return [
    'global',
    // One thread: its own core at most, so "HAProxy at its limit" is unambiguous (and the same in every topology).
    '  nbthread 1',
    '  maxconn 4000',
    `  stats socket ${socket} mode 600 level admin`,
    'defaults',
    '  mode tcp',
    '  maxconn 4000',
    '  timeout connect 5s',
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout tunnel 1h',
    '  timeout check 5s',
    'frontend ws',
    `  bind 127.0.0.1:${front} backlog 4096`,
    '  default_backend gateways',
    'backend gateways',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    ...instances.map((g, i) => `  server g${i} 127.0.0.1:${new URL(g.url).port} send-proxy-v2 check port ${g.adminPort} inter 1s fall 3 rise 1`),
    '',
  ].join('\n');
}

/** One command on HAProxy's stats socket (non-interactive: it answers and closes). */
function haproxyCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(socket);
    let out = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`HAProxy's stats socket did not answer "${command}" within ${HAPROXY_STATS_MS / 1000} s`));
    }, HAPROXY_STATS_MS);
    c.setEncoding('utf8');
    c.on('data', (d: string) => (out += d));
    c.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    c.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    c.write(`${command}\n`);
  });
}

async function serverStats(socket: string): Promise<Map<string, ServerStats>> {
  const lines = (await haproxyCommand(socket, 'show stat')).split('\n').filter((l) => l.trim() !== '');
  const header = (lines[0] ?? '').replace(/^#\s*/, '').split(',');
  const col = (f: readonly string[], name: string): string => f[header.indexOf(name)] ?? '';
  const num = (f: readonly string[], name: string): number => Number(col(f, name)) || 0;
  const out = new Map<string, ServerStats>();
  for (const line of lines.slice(1)) {
    const f = line.split(',');
    if (col(f, 'pxname') !== 'gateways' || ['BACKEND', 'FRONTEND'].includes(col(f, 'svname'))) continue;
    out.set(col(f, 'svname'), {
      status: col(f, 'status'),
      scur: num(f, 'scur'),
      stot: num(f, 'stot'),
      econ: num(f, 'econ'),
      wretr: num(f, 'wretr'),
      eresp: num(f, 'eresp'),
      cliAbrt: num(f, 'cli_abrt'),
      srvAbrt: num(f, 'srv_abrt'),
      chkdown: num(f, 'chkdown'),
    });
  }
  return out;
}

async function startHaproxy(env: ScaleEnv, name: string, instances: readonly Gateway[], cpus: Cpus): Promise<Haproxy> {
  const front = await freePort();
  const socket = join(env.tmp, `${name}.sock`);
  const file = join(env.tmp, `${name}.cfg`);
  writeFileSync(file, haproxyConfig(front, socket, instances));
  const [cmd, ...args] = pinned(cpus, [HAPROXY, '-db', '-f', file]);
  const child: Child = spawnChild(name, cmd as string, args, { cwd: env.tmp });
  // Ready when its health checks have found every instance up: before that, roundrobin skips some.
  const deadline = Date.now() + HAPROXY_READY_MS;
  let last = 'no answer on its stats socket';
  while (Date.now() < deadline && !child.hasExited()) {
    try {
      const stats = await serverStats(socket);
      const up = [...stats.values()].filter((st) => st.status === 'UP').length;
      if (stats.size === instances.length && up === instances.length) {
        await waitForPort(child, front);
        return { url: `ws://127.0.0.1:${front}/`, pid: child.pid, stats: () => serverStats(socket), stop: () => child.stop() };
      }
      last = `${up} of ${instances.length} instances UP`;
    } catch {
      // the socket is not there yet
    }
    await sleep(100);
  }
  await child.stop();
  throw new Error(`${name} ${child.hasExited() ? 'exited' : `was not ready within ${HAPROXY_READY_MS / 1000} s (${last})`}:\n${child.output().trim()}`);
}

// ---------------------------------------------------------------- topologies

interface Topology {
  readonly name: TopologyName;
  readonly instances: readonly Gateway[];
  readonly haproxy: Haproxy;
  /** Every process of every instance. */
  readonly pids: readonly number[];
  /** The primaries (instances of more than one worker). */
  readonly primaryPids: readonly number[];
  stop(): Promise<void>;
}

async function startTopology(env: ScaleEnv, s: ScaleSettings, p: Placement, name: TopologyName, redis: string, echoPort: number): Promise<Topology> {
  const { instances: n, workers } = TOPOLOGIES[name];
  const instances: Gateway[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(instances.map((g) => g.stop()));
  };
  try {
    for (let i = 0; i < n; i++) {
      const spec = { workers, policy: s.policy, backendPorts: [echoPort], mode: s.mode, cpus: p.gateway, redis, proxyProtocol: true };
      instances.push(await startGateway(env, `gateway-${name}-${i + 1}-${p.name}`, spec));
    }
    const haproxy = await startHaproxy(env, `haproxy-${name}-${p.name}`, instances, p.others);
    return {
      name,
      instances,
      haproxy,
      pids: instances.flatMap((g) => g.pids),
      primaryPids: instances.filter((g) => g.workerPids.length > 0).map((g) => g.pid),
      stop: async () => {
        await haproxy.stop();
        await stopAll();
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

// ---------------------------------------------------------------- one run

interface InstancesRun {
  readonly placement: PlacementName;
  readonly load: LoadDef['name'];
  readonly topology: TopologyName;
  readonly round: number;
  readonly perSecond: number;
  /** Gateway CPU per operation, every process of every instance summed. */
  readonly gatewayUsPerOp: number;
  /** The primaries' part of it (NaN without primaries). */
  readonly primaryUsPerOp: number;
  readonly redisUsPerOp: number;
  readonly haproxyUsPerOp: number;
  readonly gatewayCores: number;
  readonly haproxyCores: number;
  readonly redisCores: number;
  /** The load generator (this process) and the echo backend. */
  readonly loadSideCores: number;
  /** The placement's other topologies, idle meanwhile (their gateways and HAProxy). */
  readonly idleCores: number;
  /** Processes outside this run (other work on a shared machine), cores. */
  readonly otherCores: number;
  /** Busy share of each CPU, % (softirq included). */
  readonly busyPctByCpu: readonly number[];
  /** Each instance's CPU over the window, µs. */
  readonly cpuPerInstanceUs: readonly number[];
  /** Sessions HAProxy sent to each instance over the whole run (connect phase, warm-up and window). */
  readonly sessionsPerInstance: readonly number[];
  /** Server-side aborts as HAProxy counts them (eresp, srv_abrt): reported, not errors (see the notes). */
  readonly haproxyEresp: number;
  readonly haproxySrvAbrt: number;
  readonly bound: string;
  readonly errors: Readonly<Record<string, number>>;
  readonly command: string;
}

function sum(stats: ReadonlyMap<string, ServerStats>, f: (st: ServerStats) => number): number {
  return [...stats.values()].reduce((a, st) => a + f(st), 0);
}

function boundBy(p: Placement, t: Topology, w: CpuWindow, gatewayCores: number, haproxyCores: number, redisCores: number): string {
  const { instances, workers } = TOPOLOGIES[t.name];
  const out: string[] = [];
  // The processes that relay: every single-process instance, or every worker.
  if (gatewayCores >= SATURATED * Math.min(instances * workers, p.gatewayCpuCount)) out.push('gateway');
  if (haproxyCores >= SATURATED) out.push('HAProxy');
  if (redisCores >= SATURATED) out.push('Redis');
  if (p.othersCpuIndexes !== undefined && busyPct(w, p.othersCpuIndexes) >= 100 * SATURATED) out.push('CPU 0');
  if (p.othersCpuIndexes === undefined && busyPct(w) >= 100 * SATURATED) out.push('machine');
  return out.length === 0 ? 'none' : out.join(' + ');
}

interface Shared {
  readonly redis: Redis;
  readonly echo: Echo;
  /** Every topology of the placement (the measured one included). */
  readonly topologies: readonly Topology[];
}

async function oneRun(t: Topology, sh: Shared, p: Placement, load: LoadDef, s: ScaleSettings, round: number): Promise<InstancesRun> {
  const warm = s.warmupMs > 0 ? ['--warmup', seconds(s.warmupMs)] : [];
  const idle = sh.topologies.filter((x) => x !== t).flatMap((x) => [...x.pids, x.haproxy.pid]);
  const watched = [...t.pids, t.haproxy.pid, sh.redis.pid, sh.echo.pid, ...idle];
  const before = await t.haproxy.stats();
  const m = await measuredLoad(t.haproxy.url, [...load.args, '--duration', seconds(s.durationMs), ...warm], watched, () => t.haproxy.stats());
  await sleep(300); // the last sessions' close reaches HAProxy's counters
  const after = await t.haproxy.stats();
  const w = m.load;
  const ops = load.ops(m.result);
  const gatewayUs = cpuOf(w, t.pids);
  const haproxyUs = cpuOf(w, [t.haproxy.pid]);
  const redisUs = cpuOf(w, [sh.redis.pid]);
  const gatewayCores = cores(gatewayUs, w);
  const haproxyCores = cores(haproxyUs, w);
  const redisCores = cores(redisUs, w);
  const delta = (f: (st: ServerStats) => number): number => sum(after, f) - sum(before, f);
  const errors: Record<string, number> = {};
  addErrors(errors, m.result.errors);
  addErrors(errors, {
    'HAProxy: connect to an instance failed': delta((st) => st.econ),
    'HAProxy: connect retried': delta((st) => st.wretr),
    'HAProxy: instance marked down': delta((st) => st.chkdown),
    'HAProxy: instance not UP after the run': [...after.values()].filter((st) => st.status !== 'UP').length,
  });
  return {
    placement: p.name,
    load: load.name,
    topology: t.name,
    round,
    perSecond: load.perSecond(m.result),
    gatewayUsPerOp: gatewayUs / ops,
    primaryUsPerOp: t.primaryPids.length === 0 ? NaN : cpuOf(w, t.primaryPids) / ops,
    redisUsPerOp: redisUs / ops,
    haproxyUsPerOp: haproxyUs / ops,
    gatewayCores,
    haproxyCores,
    redisCores,
    loadSideCores: cores(w.selfUs + cpuOf(w, [sh.echo.pid]), w),
    idleCores: cores(cpuOf(w, idle), w),
    otherCores: cores(w.otherUs, w),
    busyPctByCpu: w.busyByCpu.map((_, i) => busyPct(w, [i])),
    cpuPerInstanceUs: t.instances.map((g) => cpuOf(w, g.pids)),
    sessionsPerInstance: t.instances.map((_, i) => (m.atEnd.get(`g${i}`)?.stot ?? 0) - (before.get(`g${i}`)?.stot ?? 0)),
    haproxyEresp: delta((st) => st.eresp),
    haproxySrvAbrt: delta((st) => st.srvAbrt),
    bound: boundBy(p, t, w, gatewayCores, haproxyCores, redisCores),
    errors,
    command: m.command,
  };
}

function line(r: InstancesRun): string {
  return (
    `  ${r.placement} round ${r.round} ${r.load.padEnd(6)} ${topologyLabel(r.topology).padEnd(24)} ${formatNumber(r.perSecond)}/s, ` +
    `gateway ${formatNumber(r.gatewayUsPerOp)} µs each (${r.gatewayCores.toFixed(2)} cores), Redis ${formatNumber(r.redisUsPerOp)} µs, ` +
    `HAProxy ${formatNumber(r.haproxyUsPerOp)} µs (${r.haproxyCores.toFixed(2)} cores), load side ${r.loadSideCores.toFixed(2)} cores, ` +
    `CPUs ${r.busyPctByCpu.map(percent).join(' / ')} busy; sessions ${r.sessionsPerInstance.join('/')}; bound: ${r.bound}; errors ${errorList(r.errors)}`
  );
}

/** Runs every load through every topology of one placement, alternating which goes first. */
async function onePlacement(
  env: ScaleEnv,
  s: ScaleSettings,
  p: Placement,
  names: readonly TopologyName[],
  progress: Progress,
  /** Errors outside the measured runs (pre-warming, replaced workers), by topology; added to. */
  extra: Map<TopologyName, Record<string, number>>,
): Promise<InstancesRun[]> {
  pinSelf(p.load);
  const stops: Array<() => Promise<void>> = [];
  try {
    const redis = await startRedis(env, p.others);
    stops.push(() => redis.stop());
    const echo = await startEcho(env, 'echo backend', p.others);
    stops.push(() => echo.stop());
    const topologies: Topology[] = [];
    for (const name of names) {
      const t = await startTopology(env, s, p, name, redis.url, echo.port);
      stops.push(() => t.stop());
      topologies.push(t);
      progress(`  ${p.name}: ${topologyLabel(name)} up behind HAProxy (gateway pids ${t.pids.join(', ')})`);
    }
    const sh: Shared = { redis, echo, topologies };
    const errorsOf = (name: TopologyName): Record<string, number> => extra.get(name) ?? extra.set(name, {}).get(name) ?? {};
    // Unmeasured, once per load and topology (a whole run's length): each process compiles its handshake and relay
    // paths itself, so without it round 1 would charge three instances three warm-ups against one instance's one.
    for (const t of topologies) {
      const seen: string[] = [];
      for (const load of LOADS) {
        const m = await measuredLoad(t.haproxy.url, [...load.args, '--duration', seconds(s.durationMs + s.warmupMs)], [], nothing);
        addErrors(errorsOf(t.name), m.result.errors);
        seen.push(`${load.name} ${formatNumber(load.perSecond(m.result))}/s`);
        await sleep(300);
      }
      progress(`  ${p.name}: ${topologyLabel(t.name)} pre-warmed (${seen.join(', ')}; errors ${errorList(errorsOf(t.name))})`);
    }
    const runs: InstancesRun[] = [];
    for (let round = 1; round <= s.rounds; round++) {
      const order = round % 2 === 1 ? topologies : [...topologies].reverse();
      for (const load of LOADS) {
        for (const t of order) {
          const r = await oneRun(t, sh, p, load, s, round);
          runs.push(r);
          progress(line(r));
          await sleep(300);
        }
      }
    }
    // A worker that died and was replaced (3 × 2) would have cut its clients: an error.
    for (const t of topologies) {
      for (const g of t.instances) if (g.workerPids.length > 0) addErrors(errorsOf(t.name), { 'worker replaced': replacedWorkers(g, await g.status()) });
    }
    return runs;
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }
}

// ---------------------------------------------------------------- the report

interface Row {
  readonly label: string;
  readonly value: (r: InstancesRun) => number;
  readonly fmt?: (v: number) => string;
  /** Show the ratios to 1 instance. */
  readonly ratio?: boolean;
}

function rowsFor(load: LoadDef, names: readonly TopologyName[]): Row[] {
  const cpu = (v: number): string => v.toFixed(2);
  const rows: Row[] = [
    { label: `${load.unit}s/s ↑`, value: (r) => r.perSecond, ratio: true },
    { label: `gateway CPU per ${load.unit}, all instances (µs) ↓`, value: (r) => r.gatewayUsPerOp, ratio: true },
  ];
  if (names.some((n) => TOPOLOGIES[n].workers > 1)) rows.push({ label: '… of which the primaries (µs)', value: (r) => r.primaryUsPerOp });
  rows.push(
    { label: `${load.unit}s per gateway CPU-second ↑`, value: (r) => 1e6 / r.gatewayUsPerOp, ratio: true },
    { label: `Redis CPU per ${load.unit} (µs)`, value: (r) => r.redisUsPerOp, ratio: load.unit === 'handshake' },
    { label: `HAProxy CPU per ${load.unit} (µs)`, value: (r) => r.haproxyUsPerOp, ratio: true },
    { label: 'gateway CPU, all instances (cores)', value: (r) => r.gatewayCores, fmt: cpu, ratio: true },
    { label: 'HAProxy CPU (cores)', value: (r) => r.haproxyCores, fmt: cpu },
    { label: 'Redis CPU (cores)', value: (r) => r.redisCores, fmt: cpu },
    { label: 'load generator + echo CPU (cores)', value: (r) => r.loadSideCores, fmt: cpu },
    { label: "idle topologies' CPU (cores)", value: (r) => r.idleCores, fmt: cpu },
    { label: "other processes' CPU (cores)", value: (r) => r.otherCores, fmt: cpu },
    { label: 'busiest ÷ idlest instance, CPU', value: (r) => (r.cpuPerInstanceUs.length > 1 ? maxMin(r.cpuPerInstanceUs) : NaN), fmt: (v) => v.toFixed(2) },
    {
      label: 'busiest ÷ idlest instance, sessions',
      value: (r) => (r.sessionsPerInstance.length > 1 ? maxMin(r.sessionsPerInstance) : NaN),
      fmt: (v) => v.toFixed(2),
    },
  );
  return rows;
}

function boundCell(runs: readonly InstancesRun[]): string {
  const tally = new Map<string, number>();
  for (const r of runs) tally.set(r.bound, (tally.get(r.bound) ?? 0) + 1);
  return [...tally].map(([b, n]) => (tally.size === 1 ? b : `${b} ×${n}`)).join(', ');
}

function busyCell(runs: readonly InstancesRun[]): string {
  const n = Math.max(0, ...runs.map((r) => r.busyPctByCpu.length));
  return Array.from({ length: n }, (_, i) => percent(median(runs.map((r) => r.busyPctByCpu[i] ?? NaN)))).join(' / ');
}

function table(
  runs: readonly InstancesRun[],
  names: readonly TopologyName[],
  placements: readonly Placement[],
  extra: ReadonlyMap<TopologyName, Record<string, number>>,
): string {
  const cpuNames = Array.from({ length: cpuCount() }, (_, i) => `CPU ${i}`).join(' / ');
  const others = names.filter((n) => n !== BASELINE);
  const header = ['figure', topologyLabel(BASELINE)];
  for (const n of others) header.push(topologyLabel(n), `${TOPOLOGIES[n].instances}${TOPOLOGIES[n].workers > 1 ? `×${TOPOLOGIES[n].workers}` : ''} ÷ 1`);
  const rows: string[][] = [];
  for (const p of placements) {
    for (const load of LOADS) {
      const of = (n: TopologyName): InstancesRun[] => runs.filter((r) => r.placement === p.name && r.load === load.name && r.topology === n);
      if (names.every((n) => of(n).length === 0)) continue;
      const tag = `${p.name} · ${load.name}`;
      for (const row of rowsFor(load, names)) {
        const base = of(BASELINE).map(row.value);
        const cells = [`${tag}: ${row.label}`, spread(base, row.fmt)];
        for (const n of others) {
          const v = of(n).map(row.value);
          cells.push(spread(v, row.fmt), row.ratio === true ? ratio(median(base), median(v)) : '');
        }
        rows.push(cells);
      }
      const plain = (f: (rs: readonly InstancesRun[]) => string): string[] => [f(of(BASELINE)), ...others.flatMap((n) => [f(of(n)), ''])];
      rows.push([`${tag}: CPU busy (${cpuNames})`, ...plain(busyCell)]);
      rows.push([`${tag}: at its limit`, ...plain(boundCell)]);
    }
  }
  const errorsOf = (n: TopologyName): string => {
    const e: Record<string, number> = {};
    for (const r of runs.filter((x) => x.topology === n)) addErrors(e, r.errors);
    addErrors(e, extra.get(n) ?? {});
    return errorList(e);
  };
  rows.push(['errors (all runs)', errorsOf(BASELINE), ...others.flatMap((n) => [errorsOf(n), ''])]);
  const aborts = (n: TopologyName): string => {
    const rs = runs.filter((x) => x.topology === n);
    return `${rs.reduce((a, r) => a + r.haproxyEresp, 0)} / ${rs.reduce((a, r) => a + r.haproxySrvAbrt, 0)}`;
  };
  rows.push(['HAProxy eresp / srv_abrt (all runs)', aborts(BASELINE), ...others.flatMap((n) => [aborts(n), ''])]);
  return markdownTable(header, rows);
}

function notes(runs: readonly InstancesRun[], s: ScaleSettings, names: readonly TopologyName[], placements: readonly Placement[]): string[] {
  const out: string[] = [
    `This machine has ${cpuCount()} CPUs: the added instances cannot add cores (the load generator, the echo backend, HAProxy and Redis ` +
      'need CPU too), so the 3 ÷ 1 ratios show what spreading one workload over three processes costs (the CPU per message and per ' +
      'handshake, summed over every instance), not how throughput grows with cores. "… per gateway CPU-second" is the per-core figure: ' +
      'its ratio is what a core of gateway does with three instances against one.',
    ...placements.map((p) => `${p.describe}.`),
    `Each instance is its own \`wsgate start\`: ${names
      .map(
        (n) =>
          `${topologyLabel(n)} of \`cluster.workers: ${TOPOLOGIES[n].workers}\`${TOPOLOGIES[n].workers > 1 ? ` (a primary and ${TOPOLOGIES[n].workers} workers, ${s.policy} scheduling)` : ' (one process, no primary)'}`,
      )
      .join('; ')}; every instance with \`cluster.redis\` (one redis-server for all, so the 1-instance run pays the same Redis round trips per handshake), ` +
      '`proxyProtocol: true` and `limits: { maxConnections: 100000, perIp: { maxConnections: 100000, handshakeRate: 0 } }`.',
    'HAProxy 1 thread (`nbthread 1`), `mode tcp`, `balance roundrobin`, `send-proxy-v2` to every instance, `option httpchk GET /readyz` on ' +
      "each instance's admin port every 1 s; timeouts client/server/tunnel 1 h. Every topology of a placement stays up through its rounds; " +
      "the idle ones' CPU (gateways and HAProxy: health checks, Redis heartbeats) while another is measured is its own row. Before round 1, " +
      'each topology runs each load once unmeasured (warm-up plus duration), so that every instance has compiled its hot paths.',
    '"at its limit": gateway = its CPU use reached 90% of what its relaying processes can use on the CPUs they have; HAProxy or Redis = ' +
      '0.9 cores (each runs one thread); CPU 0 = CPU 0 (load side, HAProxy, Redis; pinned) was 90% busy; machine = every CPU was 90% busy ' +
      "(unpinned). A throughput ratio from a run at any limit but the gateway's says what this machine could offer, not what the gateways " +
      'could do: the CPU-per-operation rows are the efficiency.',
    "Errors: the load's own (failed handshakes, unanswered echoes, …, the unmeasured pre-warm runs' included), HAProxy's connect failures, " +
      'retries and instances marked down, and workers replaced (3 × 2). ' +
      "HAProxy's eresp / srv_abrt (its response errors and transfers it saw an instance abort) are listed on their own, not added to the count.",
  ];
  for (const p of placements) {
    const med = (load: LoadDef['name'], n: TopologyName, f: (r: InstancesRun) => number): number =>
      median(runs.filter((r) => r.placement === p.name && r.load === load && r.topology === n).map(f));
    for (const n of names.filter((x) => x !== BASELINE)) {
      const diff = (load: LoadDef['name'], f: (r: InstancesRun) => number): string => {
        const d = med(load, n, f) - med(load, BASELINE, f);
        return Number.isFinite(d) ? `${d < 0 ? '−' : '+'}${formatNumber(Math.abs(d))} µs` : '–';
      };
      const pair = (load: LoadDef['name'], f: (r: InstancesRun) => number): string =>
        `${formatNumber(med(load, n, f))} against ${formatNumber(med(load, BASELINE, f))} µs`;
      out.push(
        `${p.name}, ${topologyLabel(n)} against 1: per handshake, the gateways ${diff('churn', (r) => r.gatewayUsPerOp)} ` +
          `(${pair('churn', (r) => r.gatewayUsPerOp)}), Redis ${diff('churn', (r) => r.redisUsPerOp)}, HAProxy ${diff('churn', (r) => r.haproxyUsPerOp)}; ` +
          `per message, the gateways ${pair('closed', (r) => r.gatewayUsPerOp)}, HAProxy ${pair('closed', (r) => r.haproxyUsPerOp)}.`,
      );
    }
  }
  return out;
}

export async function instancesScenario(env: ScaleEnv, s: ScaleSettings, progress: Progress): Promise<ScenarioReport> {
  const names = (s.topologies ?? TOPOLOGY_NAMES) as readonly TopologyName[];
  const placements = ((s.placements ?? PLACEMENT_NAMES) as readonly PlacementName[]).map(placement);
  if (!names.includes(BASELINE)) throw new ScaleUsageError(`instances: --topologies must include ${BASELINE} (the ratios are to it)`);
  if (commandOutput(HAPROXY, ['-v']) === undefined) throw new ScaleUsageError(`instances needs HAProxy: "${HAPROXY} -v" does not run (HAPROXY=path picks one)`);
  if (commandOutput(REDIS_SERVER, ['--version']) === undefined) {
    throw new ScaleUsageError(`instances needs redis-server: "${REDIS_SERVER} --version" does not run (REDIS_SERVER=path picks one)`);
  }
  if (placements.some((p) => p.name === 'pinned') && cpuCount() < 2)
    throw new ScaleUsageError('instances: the pinned placement needs 2 CPUs (--placement shared)');
  const runs: InstancesRun[] = [];
  const extra = new Map<TopologyName, Record<string, number>>();
  try {
    for (const p of placements) runs.push(...(await onePlacement(env, s, p, names, progress, extra)));
  } finally {
    pinSelf(allCpus());
  }
  return {
    summary:
      `${names.map(topologyLabel).join(' vs ')} behind HAProxy (mode tcp, roundrobin, send-proxy-v2), one Redis, ${s.mode} mode; closed loop ` +
      `\`${LOADS[0]?.args.join(' ')}\` and churn \`${LOADS[1]?.args.join(' ')}\` through HAProxy's port, ${seconds(s.durationMs)} measured` +
      `${s.warmupMs > 0 ? ` after ${seconds(s.warmupMs)} of warm-up` : ''}, ${plural(s.rounds, 'round')} alternating which topology goes first; ` +
      'each cell the median (min–max), the ratios from the medians.',
    table: table(runs, names, placements, extra),
    notes: notes(runs, s, names, placements),
    data: { runs, errorsOutsideRuns: Object.fromEntries(extra) },
    errors: runs.reduce((n, r) => n + totalErrors(r.errors), 0) + [...extra.values()].reduce((n, e) => n + totalErrors(e), 0),
  };
}
