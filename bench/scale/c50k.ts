// c50k: 50,000 proxied WebSockets held through a cluster of 8 workers, with
// keepalive pings every 10 s, then one echo on every connection; zero errors
// required. The budgets that shape it (2 descriptors per proxied connection
// in a worker, one per connection in a load process or an echo backend, a
// 20,000 open-file limit per process, and one ephemeral port range per
// backend address:port for the gateway's upstream connections) are checked
// before anything starts.
import { randomInt } from 'node:crypto';
import { MAX_CONNECTIONS_PER_WORKER, sourceAddressFor } from '../../src/bench/options.js';
import { addErrors, count, errorList, formatNumber, markdownTable, maxMin, percent, totalErrors } from './format.js';
import { HoldProcess } from './hold-process.js';
import type { HoldCounts } from './holder.js';
import { replacedWorkers, startEchoes, startGateway } from './processes.js';
import type { Echo, Gateway, InstanceStatus, ScaleEnv } from './processes.js';
import { ScaleUsageError, seconds, sleep } from './scenario.js';
import type { Progress, ScaleSettings, ScenarioReport } from './scenario.js';
import { busyByCpu, cpuCount, cpuMicros, ephemeralPorts, establishedTo, foreignCpu, openFileLimit, rssKiB, tcpSockstat } from './system.js';

const PING_INTERVAL_S = 10;
const PONG_TIMEOUT_S = 10;
/**
 * A client that answers is pinged every pingInterval + pongTimeout: the relay sends a ping after
 * pingInterval of silence, looks for the answer pongTimeout later, and only then starts the next
 * pingInterval (src/relay/inspect.ts, keepalive()).
 */
const PING_PERIOD_S = PING_INTERVAL_S + PONG_TIMEOUT_S;
const HANDSHAKE_TIMEOUT_MS = 15_000;
const ECHO_TIMEOUT_MS = 30_000;
/** Descriptors a worker keeps besides its sessions' (listeners, IPC, upstream dials in progress, libuv). */
const FD_MARGIN = 500;
const PROGRESS_MS = 5000;

/** How the connections are split over load processes, echo backends and workers, and the limits they must fit. */
interface Plan {
  readonly perLoader: number;
  readonly perBackend: number;
  readonly perWorker: number;
  readonly ports: ReturnType<typeof ephemeralPorts>;
  readonly fileLimit: number;
}

/** The plan; throws, before anything starts, naming every budget it would not fit. */
function plan(s: ScaleSettings): Plan {
  const p: Plan = {
    perLoader: Math.ceil(s.connections / s.loaders),
    perBackend: Math.ceil(s.connections / s.backends),
    perWorker: Math.ceil(s.connections / s.workers),
    ports: ephemeralPorts(),
    fileLimit: openFileLimit(),
  };
  const max = count(MAX_CONNECTIONS_PER_WORKER);
  const checks: Array<[boolean, string]> = [
    [p.perLoader > MAX_CONNECTIONS_PER_WORKER, `${count(p.perLoader)} connections per load process (at most ${max}): raise --loaders`],
    [p.perBackend > MAX_CONNECTIONS_PER_WORKER, `${count(p.perBackend)} connections per echo backend (at most ${max}): raise --backends`],
    [p.perBackend > p.ports.size, `${count(p.perBackend)} upstream connections per backend, over the ${count(p.ports.size)} ephemeral ports: raise --backends`],
    [
      2 * p.perWorker + FD_MARGIN > p.fileLimit,
      `${count(2 * p.perWorker)} descriptors per worker, over the ${count(p.fileLimit)} open-file limit: raise --workers`,
    ],
  ];
  const problems = checks.filter(([bad]) => bad).map(([, why]) => why);
  if (problems.length > 0) throw new ScaleUsageError(`c50k cannot run as asked:\n  ${problems.join('\n  ')}`);
  return p;
}

/** The counts of every load process added up (the fewest pings is the fewest of all). */
function sum(all: ReadonlyArray<HoldCounts | undefined>): HoldCounts {
  const errors: Record<string, number> = {};
  const out = { open: 0, opened: 0, failed: 0, dropped: 0, minPings: Infinity, pings: 0, echoSent: 0, echoed: 0, connectMs: 0 };
  let p99 = 0;
  let max = 0;
  for (const c of all) {
    if (c === undefined) continue;
    out.open += c.open;
    out.opened += c.opened;
    out.failed += c.failed;
    out.dropped += c.dropped;
    out.minPings = Math.min(out.minPings, c.minPings);
    out.pings += c.pings;
    out.echoSent += c.echoSent;
    out.echoed += c.echoed;
    out.connectMs = Math.max(out.connectMs, c.connectMs);
    p99 = Math.max(p99, c.handshake.p99);
    max = Math.max(max, c.handshake.max);
    addErrors(errors, c.errors);
  }
  // Percentiles do not add up: the worst process's p99 stands for all.
  return { ...out, handshake: { count: out.opened, p50: NaN, p90: NaN, p99, p999: NaN, max, mean: NaN }, errors };
}

/** Prints the totals every few seconds while a phase runs. */
function reporter(holders: readonly HoldProcess[], progress: Progress, label: string, asked: number): () => void {
  const timer = setInterval(() => {
    const c = sum(holders.map((h) => h.latest));
    progress(`  ${label}: ${count(c.open)} open of ${count(asked)}, ${count(c.failed)} failed, ${count(c.dropped)} dropped`);
  }, PROGRESS_MS);
  return () => clearInterval(timer);
}

async function startHolders(gw: Gateway, s: ScaleSettings): Promise<HoldProcess[]> {
  // One salt for the run: load process i connects from 127.A.B.(2+i), each with its own ephemeral ports.
  const salt = randomInt(254 * 256);
  const started = await Promise.allSettled(
    Array.from({ length: s.loaders }, (_, i) => {
      const connections = Math.floor(s.connections / s.loaders) + (i < s.connections % s.loaders ? 1 : 0);
      return HoldProcess.start(`load process ${i + 1}`, {
        url: gw.url,
        connections,
        ramp: (s.ramp * connections) / s.connections,
        localAddress: sourceAddressFor(gw.url, i, s.loaders, salt),
        handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
      });
    }),
  );
  const holders = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(holders.map((h) => h.stop()));
    throw failed.reason;
  }
  return holders;
}

/** Gateway memory and CPU (the primary and every worker), and where the rest of the machine's CPU went, at one instant. */
interface Reading {
  readonly at: number;
  readonly rssKiB: number;
  readonly cpuUs: number;
  readonly primaryCpuUs: number;
  /** Load processes and echo backends. */
  readonly loadSideUs: number;
  /** Busy time of every CPU together: whether the machine, rather than the gateway, set the pace. */
  readonly machineBusyUs: number;
  /** Processes outside the run, by pid: other work on a shared machine. */
  readonly foreign: ReadonlyMap<number, number>;
}

function read(gw: Gateway, loadSide: readonly number[]): Reading {
  return {
    at: Date.now(),
    rssKiB: rssKiB(gw.pids),
    cpuUs: cpuMicros(gw.pids),
    primaryCpuUs: cpuMicros([gw.pid]),
    loadSideUs: cpuMicros(loadSide),
    machineBusyUs: busyByCpu().reduce((a, b) => a + b, 0),
    foreign: foreignCpu(),
  };
}

/** Where the CPU went between two readings, in cores, and how busy the machine was, %. */
function cpuBetween(a: Reading, b: Reading): { gateway: number; loadSide: number; other: number; machinePct: number } {
  const wallUs = (b.at - a.at) * 1000;
  const otherUs = [...b.foreign].reduce((sum, [pid, us]) => sum + us - (a.foreign.get(pid) ?? 0), 0);
  return {
    gateway: (b.cpuUs - a.cpuUs) / wallUs,
    loadSide: (b.loadSideUs - a.loadSideUs) / wallUs,
    other: otherUs / wallUs,
    machinePct: (100 * (b.machineBusyUs - a.machineBusyUs)) / (wallUs * cpuCount()),
  };
}

/** The connections opened, and what the gateway and the machine looked like then. */
interface Opened {
  readonly counts: HoldCounts;
  readonly rampStart: Reading;
  readonly afterOpen: Reading;
  readonly status: InstanceStatus;
  /** Established upstream connections per backend port. */
  readonly upstreamPerBackend: readonly number[];
  readonly sockets: ReturnType<typeof tcpSockstat>;
}

interface Held {
  readonly endOfHold: Reading;
  readonly status: InstanceStatus;
  readonly holdMs: number;
}

interface C50kResult {
  readonly asked: number;
  readonly idle: Reading;
  readonly opened: Opened;
  readonly held: Held;
  /** Counts after the final echo, connections still open (pings, echoes). */
  readonly echoed: HoldCounts;
  /** Counts after the cut: every error of the run. */
  readonly final: HoldCounts;
  readonly replaced: number;
}

/** Load processes and echo backends: the CPU that is not the gateway's. */
function loadSidePids(echoes: readonly Echo[], holders: readonly HoldProcess[]): number[] {
  return [...holders.map((h) => h.pid), ...echoes.map((e) => e.pid)];
}

async function openAll(gw: Gateway, echoes: readonly Echo[], holders: readonly HoldProcess[], s: ScaleSettings, progress: Progress): Promise<Opened> {
  progress(`  opening ${count(s.connections)} connections at ${count(s.ramp)}/s from ${holders.length} load processes…`);
  const stop = reporter(holders, progress, 'opening', s.connections);
  const rampStart = read(gw, loadSidePids(echoes, holders));
  const counts = sum(await Promise.all(holders.map((h) => h.open())));
  stop();
  const afterOpen = read(gw, loadSidePids(echoes, holders));
  const status = await gw.status();
  const upstreamPerBackend = echoes.map((e) => establishedTo(e.port));
  progress(`  ${count(counts.opened)} open (${count(counts.failed)} failed) in ${(counts.connectMs / 1000).toFixed(1)} s; holding ${seconds(s.durationMs)}…`);
  return { counts, rampStart, afterOpen, status, upstreamPerBackend, sockets: tcpSockstat() };
}

async function holdAll(gw: Gateway, echoes: readonly Echo[], holders: readonly HoldProcess[], s: ScaleSettings, progress: Progress): Promise<Held> {
  const stop = reporter(holders, progress, 'holding', s.connections);
  const start = Date.now();
  await sleep(s.durationMs);
  stop();
  const endOfHold = read(gw, loadSidePids(echoes, holders));
  const holdMs = Date.now() - start;
  return { endOfHold, holdMs, status: await gw.status() };
}

/** Opens, holds, echoes and cuts; the gateway and the backends are already up. */
async function run(gw: Gateway, echoes: readonly Echo[], s: ScaleSettings, progress: Progress): Promise<C50kResult> {
  await sleep(1000);
  const idle = read(gw, loadSidePids(echoes, []));
  const holders = await startHolders(gw, s);
  try {
    const opened = await openAll(gw, echoes, holders, s, progress);
    const held = await holdAll(gw, echoes, holders, s, progress);
    progress('  one echo on every connection…');
    const echoed = sum(await Promise.all(holders.map((h) => h.echo(ECHO_TIMEOUT_MS))));
    progress(`  ${count(echoed.echoed)} of ${count(echoed.echoSent)} echoed; cutting the connections`);
    const final = sum(await Promise.all(holders.map((h) => h.cut())));
    return { asked: s.connections, idle, opened, held, echoed, final, replaced: replacedWorkers(gw, held.status) };
  } finally {
    await Promise.all(holders.map((h) => h.stop()));
  }
}

const MiB = (kib: number): string => formatNumber(kib / 1024);
/** kB (1,000 bytes) per connection, the unit of the project's memory target. */
const kbPerConn = (kib: number, conns: number): string => formatNumber((kib * 1.024) / conns);

/** Connections, keepalive, echoes and errors: did every connection survive and still relay? */
function connectionRows(r: C50kResult, s: ScaleSettings, p: Plan): string[][] {
  const o = r.opened.counts;
  const e = r.echoed;
  const rampSeconds = o.connectMs / 1000;
  const expectedPings = Math.floor(r.held.holdMs / 1000 / PING_PERIOD_S);
  return [
    ['connections asked / opened / failed', `${count(r.asked)} / ${count(o.opened)} / ${count(o.failed)}`],
    ['load processes × connections (own source address each)', `${s.loaders} × ${count(p.perLoader)}`],
    ['ramp: asked / achieved (connections/s)', `${count(s.ramp)} / ${count(o.opened / rampSeconds)} (${rampSeconds.toFixed(1)} s)`],
    ['handshake p99 / max, worst load process (ms)', `${formatNumber(o.handshake.p99)} / ${formatNumber(o.handshake.max)}`],
    ['held for', `${(r.held.holdMs / 1000).toFixed(1)} s (relay.pingInterval ${PING_INTERVAL_S}s, pongTimeout ${PONG_TIMEOUT_S}s)`],
    [
      'keepalive pings answered per connection: fewest / mean',
      `${e.minPings} / ${formatNumber(e.pings / Math.max(1, e.open))} (fewest expected: ${expectedPings}, one per ${PING_PERIOD_S} s held)`,
    ],
    ['connections dropped while held', count(r.final.dropped)],
    ['final echo: echoed / sent', `${count(e.echoed)} / ${count(e.echoSent)}`],
    ['errors', errorList(r.final.errors)],
    ['gateway workers replaced during the run', String(r.replaced)],
  ];
}

function cpuCell(c: ReturnType<typeof cpuBetween>): string {
  return `${c.gateway.toFixed(2)} / ${c.loadSide.toFixed(2)} / ${c.other.toFixed(2)}; ${percent(c.machinePct)}`;
}

/** Memory, spread and CPU of the gateway, and the kernel's side. */
function gatewayRows(r: C50kResult, s: ScaleSettings, p: Plan): string[][] {
  const { rampStart, afterOpen } = r.opened;
  const { endOfHold } = r.held;
  const conns = r.opened.counts.opened;
  const workers = r.opened.status.workers.map((w) => w.connections);
  const rampCpu = afterOpen.cpuUs - rampStart.cpuUs;
  const primaryShare = (100 * (afterOpen.primaryCpuUs - rampStart.primaryCpuUs)) / rampCpu;
  const opening = cpuBetween(rampStart, afterOpen);
  const holding = cpuBetween(afterOpen, endOfHold);
  const sockets = r.opened.sockets;
  return [
    [
      `gateway RSS, primary + ${s.workers} workers: idle → all open → end of hold (MiB)`,
      `${MiB(r.idle.rssKiB)} → ${MiB(afterOpen.rssKiB)} → ${MiB(endOfHold.rssKiB)}`,
    ],
    ['gateway RSS per connection, all open − idle (kB)', kbPerConn(afterOpen.rssKiB - r.idle.rssKiB, conns)],
    ['gateway RSS per connection, end of hold − idle (kB)', kbPerConn(endOfHold.rssKiB - r.idle.rssKiB, conns)],
    ['connections per worker, all open', workers.map(count).join(' / ')],
    ['busiest ÷ idlest worker', maxMin(workers).toFixed(2)],
    ['connections per worker, end of hold', r.held.status.workers.map((w) => count(w.connections)).join(' / ')],
    ['while opening: gateway CPU per connection (µs) / primary share', `${formatNumber(rampCpu / conns)} / ${percent(primaryShare)}`],
    ['while opening: CPU of gateway / load side / other processes (cores); machine busy', cpuCell(opening)],
    ['while held: CPU of gateway (keepalive) / load side / other processes (cores); machine busy', cpuCell(holding)],
    [
      `upstream connections per backend (ephemeral ports: ${count(p.ports.size)} per backend)`,
      r.opened.upstreamPerBackend.map((n) => (Number.isFinite(n) ? count(n) : '?')).join(' / '),
    ],
    ['TCP sockets in use, all open (kernel)', `${count(sockets.inuse)}; buffers ${formatNumber((sockets.memPages * 4) / 1024)} MiB`],
  ];
}

function notes(r: C50kResult, s: ScaleSettings, p: Plan): string[] {
  const out = [
    `Budgets checked before the start: ${count(p.perLoader)} connections per load process and ${count(p.perBackend)} per echo backend ` +
      `(≤ ${count(MAX_CONNECTIONS_PER_WORKER)} each), ${count(2 * p.perWorker)} descriptors per worker if evenly spread ` +
      `(open-file limit ${count(p.fileLimit)}), ${count(p.perBackend)} upstream connections per backend address:port within the ` +
      `${count(p.ports.size)} ephemeral ports (${p.ports.low}–${p.ports.high}) of 127.0.0.1.`,
    'RSS is resident memory of the primary and every worker (not the kernel socket buffers, shown on the last row for the whole machine: ' +
      'every connection is four sockets here, client, gateway front, gateway upstream and backend).',
  ];
  const o = r.opened.counts;
  const achieved = o.opened / (o.connectMs / 1000);
  if (achieved < 0.9 * s.ramp) {
    out.push(
      `The ramp ran at ${count(achieved)} connections/s, not the ${count(s.ramp)} asked, with the machine ` +
        `${percent(cpuBetween(r.opened.rampStart, r.opened.afterOpen).machinePct)} busy (load processes, gateway and echo backends ` +
        'share its CPUs): handshakes queued behind the 256 that each load process keeps in flight, and the handshake latency above is ' +
        'mostly that queue.',
    );
  }
  const total = r.opened.status.workers.reduce((n, w) => n + w.connections, 0);
  if (total !== o.opened) out.push(`/api/cluster counted ${count(total)} sessions when the load side had ${count(o.opened)} open.`);
  if (s.policy === 'none') out.push('Scheduling policy none: the kernel picks the worker; an uneven spread can push a worker past its open-file limit.');
  return out;
}

export async function c50kScenario(env: ScaleEnv, s: ScaleSettings, progress: Progress): Promise<ScenarioReport> {
  const p = plan(s);
  progress(`  starting ${s.backends} echo backends and the gateway (${s.workers} workers, ${s.policy})…`);
  const echoes = await startEchoes(env, s.backends, undefined);
  let result: C50kResult;
  let config = '';
  try {
    const spec = {
      workers: s.workers,
      policy: s.policy,
      backendPorts: echoes.map((e) => e.port),
      mode: s.mode,
      pingInterval: `${PING_INTERVAL_S}s`,
      pongTimeout: `${PONG_TIMEOUT_S}s`,
      cpus: undefined,
    };
    const gw = await startGateway(env, 'gateway', spec);
    config = gw.configText;
    try {
      result = await run(gw, echoes, s, progress);
    } finally {
      await gw.stop();
    }
  } finally {
    await Promise.all(echoes.map((e) => e.stop()));
  }
  const o = result.opened.counts;
  const errors = totalErrors(result.final.errors) + result.replaced + Math.max(0, result.asked - o.opened - o.failed);
  return {
    summary:
      `${count(s.connections)} WebSockets through ${s.workers} workers (${s.policy} scheduling, inspect mode, keepalive pings) ` +
      `to ${s.backends} echo backends, from ${s.loaders} load processes at ${count(s.ramp)} connections/s, held ${seconds(s.durationMs)}, ` +
      'then one 16-byte message echoed on every connection. Zero errors required.',
    table: markdownTable(['figure', 'value'], [...connectionRows(result, s, p), ...gatewayRows(result, s, p)]),
    notes: notes(result, s, p),
    data: { result, plan: p, config },
    errors,
  };
}
