// The suite's scenarios: each runs one bounded load through a proxy and turns
// the load tool's result plus /proc readings of the proxy into a few figures.
import { loadgenArgs, runLoadgen } from '../loadgen/run.js';
import type { LoadgenOptions, LoadgenResult } from '../loadgen/run.js';
import { parseBenchArgs } from '../../src/bench/options.js';
import { runLoad } from '../../src/bench/run-load.js';
import type { BenchResult } from '../../src/bench/run-load.js';
import { performance } from 'node:perf_hooks';
import { cpuBusyMicros, cpuIrqMicros, cpuMicros, family, kernelMicros, rssKiB } from './proc.js';
import type { RunningProxy } from './proxies.js';

export interface SuiteSettings {
  readonly quick: boolean;
  /** chatty: messages/s in total; undefined until calibrated (or given with --rate). */
  readonly rate: number | undefined;
  /** Measured load of idle, max and bulk, seconds. */
  readonly seconds: number;
  /**
   * Measured load of chatty, churn and handshake, seconds: latency percentiles want more
   * samples, and a window of a few GC cycles keeps a garbage-collected proxy's
   * figure from depending on whether a major GC fell inside it.
   */
  readonly longSeconds: number;
  /** Unmeasured load before it, seconds (not for idle). */
  readonly warmup: number;
}

/** handshake: connect/echo/close cycles per second, well within what the load side and every proxy here sustain. */
export const HANDSHAKE_RATE = 800;

/** The settings a scenario runs with: the chatty rate is known by then. */
export type RunSettings = SuiteSettings & { readonly rate: number };

/** What a scenario needs to know besides the proxy: the echo backend shares the load side's CPU. */
export interface LoadSide {
  readonly echoPid: number;
  /** The CPU the load side is pinned to (its softirq time counts as the load side's), if pinned. */
  readonly cpu: number | undefined;
  /** The CPU the proxies are pinned to, if pinned. */
  readonly proxyCpu?: number | undefined;
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

export type OutcomeOrFailure = ScenarioOutcome | { readonly failed: string };

export interface ScenarioDef {
  readonly name: string;
  /** Whether a "direct" (no proxy) row means anything here. */
  readonly direct: boolean;
  /** Drives the proxy's core to its limit: its rounds count only when they did (proxyBusyPct ≥ SATURATED_PCT). */
  readonly saturating?: boolean;
  run(proxy: RunningProxy, s: RunSettings, side: LoadSide): Promise<ScenarioOutcome>;
}

export interface Measured {
  readonly result: BenchResult;
  /** Proxy CPU during the load phase, µs; null without a proxy. */
  readonly cpuUs: number | null;
  /** Proxy RSS growth from before connecting to the end of the load phase, KiB. */
  readonly rssGrowthKiB: number | null;
  /**
   * CPU of the load side during the load phase, µs: this process (which generates the load), the
   * echo backend, and the interrupt and softirq time of their CPU when they are pinned.
   */
  readonly loadSideCpuUs: number;
  /** The interrupt and softirq part of it (0 when not pinned), µs. */
  readonly loadSideIrqUs: number;
  /** Wall time of the load phase, µs. */
  readonly wallUs: number;
  readonly command: string;
}

function processMicros(echo: readonly number[]): number {
  const u = process.cpuUsage();
  return u.user + u.system + cpuMicros(echo);
}

export async function measure(proxy: RunningProxy, args: readonly string[], side: LoadSide): Promise<Measured> {
  const options = parseBenchArgs([proxy.url, ...args, '--no-progress']);
  const pids = proxy.pid === undefined ? undefined : family(proxy.pid);
  const echo = [side.echoPid];
  let cpuStart = 0;
  let cpuEnd = 0;
  let rssEnd = 0;
  let sideStart = 0;
  let sideEnd = 0;
  let irqStart = 0;
  let irqEnd = 0;
  let wallStart = 0;
  let wallEnd = 0;
  const rssStart = pids === undefined ? 0 : rssKiB(pids);
  const result = await runLoad(options, {
    onLoadStart: () => {
      if (pids !== undefined) cpuStart = cpuMicros(pids);
      sideStart = processMicros(echo);
      irqStart = side.cpu === undefined ? 0 : cpuIrqMicros(side.cpu);
      wallStart = performance.now();
    },
    onLoadEnd: () => {
      wallEnd = performance.now();
      sideEnd = processMicros(echo);
      irqEnd = side.cpu === undefined ? 0 : cpuIrqMicros(side.cpu);
      if (pids === undefined) return;
      cpuEnd = cpuMicros(pids);
      rssEnd = rssKiB(pids);
    },
  });
  return {
    result,
    cpuUs: pids === undefined ? null : cpuEnd - cpuStart,
    rssGrowthKiB: pids === undefined ? null : rssEnd - rssStart,
    loadSideCpuUs: sideEnd - sideStart + (irqEnd - irqStart),
    loadSideIrqUs: irqEnd - irqStart,
    wallUs: (wallEnd - wallStart) * 1000,
    command: `wsgate bench ${[proxy.url, ...args].join(' ')}`,
  };
}

/**
 * RSS per idle connection, at the margin: `half` connections are opened and held, the proxy's RSS
 * is read, `half` more are opened beside them, and it is read again; the figure is the growth
 * between the two readings over the second half. Measured from a fresh process, the first half
 * also pays for what any first connections cost once (the JIT's code for the handshake path, the
 * heap's first growth: a few MB, 0.5-1 kB per connection of 8,000), which is not what an idle
 * connection holds.
 */
async function measureIdle(
  proxy: RunningProxy,
  half: number,
): Promise<{ growthKiB: number | null; counted: number; connections: number; errors: Record<string, number>; command: string }> {
  const pids = proxy.pid === undefined ? undefined : family(proxy.pid);
  const rss = (): number => (pids === undefined ? 0 : rssKiB(pids));
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 300));
  let firstOpen!: () => void;
  const opened = new Promise<void>((r) => (firstOpen = r));
  // The first half holds long enough for the second half to ramp up and be read beside it.
  let firstHolding = false;
  const first = runLoad(parseBenchArgs([proxy.url, '--idle', '--connections', String(half), '--duration', '6s', '--no-progress']), {
    onLoadStart: () => {
      firstHolding = true;
      firstOpen();
    },
    onLoadEnd: () => {
      firstHolding = false;
    },
  });
  // A first half that failed before holding (a refusal, say) ends the wait too.
  await Promise.race([opened, first]);
  await settle();
  const rssHalf = rss();
  let rssFull: number | null = null;
  const second = await runLoad(parseBenchArgs([proxy.url, '--idle', '--connections', String(half), '--duration', '0.3s', '--no-progress']), {
    onLoadStart: () => {
      // Read beside the first half only: had it ended meanwhile, the figure would mean nothing.
      if (firstHolding) rssFull = rss();
    },
  });
  const firstResult = await first;
  const errors: Record<string, number> = { ...firstResult.errors };
  for (const [k, n] of Object.entries(second.errors)) errors[k] = (errors[k] ?? 0) + n;
  return {
    growthKiB: pids === undefined || rssFull === null ? null : rssFull - rssHalf,
    counted: second.connectionsOpened,
    connections: firstResult.connectionsOpened + second.connectionsOpened,
    errors,
    command: `wsgate bench ${proxy.url} --idle --connections ${half} (twice, the second beside the first)`,
  };
}

function timing(s: RunSettings, seconds = s.seconds): string[] {
  return ['--duration', `${seconds}s`, ...(s.warmup > 0 ? ['--warmup', `${s.warmup}s`] : [])];
}

/** chatty's load: the open loop every proxy gets at the same rate. */
export function chattyArgs(s: { quick: boolean; warmup: number }, rate: number, seconds: number): string[] {
  const conns = s.quick ? 20 : 1000;
  return [
    '--rate',
    String(rate),
    '--connections',
    String(conns),
    '--size',
    '64',
    '--duration',
    `${seconds}s`,
    ...(s.warmup > 0 ? ['--warmup', `${s.warmup}s`] : []),
  ];
}

function per(total: number | null, count: number): number | null {
  return total === null || count <= 0 ? null : total / count;
}

function percent(part: number | null, whole: number | null): number | null {
  return part === null || whole === null || whole <= 0 ? null : (100 * part) / whole;
}

/**
 * Below this share of its core, a saturating scenario's proxy was not the limit: the load side
 * was, so its throughput is the load side's and its CPU per message comes from a lighter load.
 */
export const SATURATED_PCT = 95;

/**
 * Rounds at saturation a target on a saturating scenario needs from nginx and from the wsgate
 * mode (all of them when a run has fewer): a median of fewer is one lucky or unlucky round.
 */
export const SATURATED_ROUNDS = 3;

export interface LoadgenMeasured {
  readonly result: LoadgenResult;
  /** Proxy CPU over the load generator's measured phase, µs; null without a proxy (or with no measured phase). */
  readonly cpuUs: number | null;
  /** The measured phase as this process saw it (the window the proxy's CPU was read over), µs. */
  readonly wallUs: number | null;
  /** The echo backend's CPU over the same window, µs. */
  readonly echoCpuUs: number;
  /** Interrupt and softirq time of the load side's CPU over it (0 when not pinned), µs. */
  readonly irqUs: number;
  /** Everything the proxy's CPU did over it, the proxy's work and any other (null when not pinned), µs. */
  readonly proxyCoreUs: number | null;
  /** Everything the load side's CPU did over it (null when not pinned), µs. */
  readonly loadCoreUs: number | null;
  /** Of cpuUs, the proxy's time in the kernel (system calls, and the TCP work done in them), µs. */
  readonly kernelUs: number | null;
  readonly command: string;
}

/**
 * One run of the C load generator (bench/loadgen), pinned to the load side's CPU, with the proxy's
 * CPU read from /proc when it says its measured phase starts and ends.
 */
export async function measureLoadgen(
  proxy: RunningProxy,
  options: Omit<LoadgenOptions, 'url' | 'cpu' | 'onMeasureStart' | 'onMeasureEnd'>,
  side: LoadSide,
): Promise<LoadgenMeasured> {
  const pids = proxy.pid === undefined ? undefined : family(proxy.pid);
  const echo = [side.echoPid];
  // Readings at the load generator's marks: [wall ms, proxy CPU, echo CPU, irq, proxy core, load core, proxy kernel]; in a field, not a
  // local, so that the type checker sees the callbacks' writes. The clock first at both ends, so
  // the /proc reads shift the CPU window by the same little time and do not widen it.
  const at: { start?: number[]; end?: number[] } = {};
  const read = (): number[] => {
    const wall = performance.now();
    return [
      wall,
      pids === undefined ? 0 : cpuMicros(pids),
      cpuMicros(echo),
      side.cpu === undefined ? 0 : cpuIrqMicros(side.cpu),
      side.proxyCpu === undefined ? 0 : cpuBusyMicros(side.proxyCpu),
      side.cpu === undefined ? 0 : cpuBusyMicros(side.cpu),
      pids === undefined ? 0 : kernelMicros(pids),
    ];
  };
  const full: LoadgenOptions = {
    ...options,
    url: proxy.url,
    ...(side.cpu === undefined ? {} : { cpu: side.cpu }),
    onMeasureStart: () => (at.start = read()),
    onMeasureEnd: () => (at.end = read()),
  };
  const result = await runLoadgen(full);
  const { start, end } = at;
  const delta = (i: number): number | null => (start === undefined || end === undefined ? null : (end[i] as number) - (start[i] as number));
  const wallMs = delta(0);
  return {
    result,
    cpuUs: pids === undefined ? null : delta(1),
    wallUs: wallMs === null ? null : wallMs * 1000,
    echoCpuUs: delta(2) ?? 0,
    irqUs: delta(3) ?? 0,
    proxyCoreUs: side.proxyCpu === undefined || pids === undefined ? null : delta(4),
    loadCoreUs: side.cpu === undefined ? null : delta(5),
    kernelUs: pids === undefined ? null : delta(6),
    command: `build/loadgen/loadgen ${loadgenArgs(full).join(' ')}`,
  };
}

/** Why the proxy's process used less than SATURATED_PCT of its core. */
function unsaturatedWhy(busy: number, core: number | null, loadSide: number | null): string {
  const head = `the proxy used ${busy.toFixed(0)}% of its core (below ${SATURATED_PCT}%)`;
  // Other processes on the proxy's core (a shared machine) take CPU the proxy wanted.
  if (core !== null && core >= SATURATED_PCT && core - busy > 100 - SATURATED_PCT) {
    return `${head}: other work took ${(core - busy).toFixed(0)}% of that core`;
  }
  if (loadSide !== null && loadSide >= SATURATED_PCT) return `${head}: the load side (${loadSide.toFixed(0)}% of its core) was the limit`;
  return `${head}; the load side used ${loadSide === null ? '?' : loadSide.toFixed(0)}% of its core`;
}

/** A saturating scenario's outcome: the figures, and a warning when the proxy's core was not the limit. */
function saturatingOutcome(m: LoadgenMeasured, count: number, figures: Figures): ScenarioOutcome {
  const r = m.result;
  const loadgenUs = r.cpuUs.user + r.cpuUs.sys;
  const busy = percent(m.cpuUs, m.wallUs);
  const all: Figures = {
    ...figures,
    proxyBusyPct: busy,
    proxyCorePct: percent(m.proxyCoreUs, m.wallUs),
    // How much of the proxy's CPU went to the kernel: the part no user-space work can shorten.
    proxyKernelPct: percent(m.kernelUs, m.cpuUs),
    // The load side's core as a whole when it is pinned: the kernel here charges softirq time taken in
    // a process's context to that process *and* to the CPU's softirq figure, so adding the two
    // can count it twice (and other work on that core limits the load side as much as its own).
    loadSidePct: percent(m.loadCoreUs ?? loadgenUs + m.echoCpuUs + m.irqUs, m.wallUs),
    loadgenUsPer: per(loadgenUs, count),
    echoUsPer: per(m.echoCpuUs, count),
    syscallsPer: per(r.syscalls.reads + r.syscalls.writes + r.syscalls.epollWaits, count),
  };
  const warnings = r.stderr
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(0, 5);
  if (busy !== null && busy < SATURATED_PCT) warnings.push(unsaturatedWhy(busy, all.proxyCorePct ?? null, all.loadSidePct ?? null));
  return { figures: all, errors: r.errors, warnings, behind: false, command: m.command };
}

function outcome(m: Measured, figures: Figures): ScenarioOutcome {
  return { figures, errors: m.result.errors, warnings: m.result.warnings, behind: m.result.behindSchedule, command: m.command };
}

function median(values: readonly number[]): number {
  const v = [...values].sort((x, y) => x - y);
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

/** Open-loop latencies: taken only from rounds in which the load side kept its schedule, when there are any. */
const SCHEDULE_SENSITIVE = new Set(['p50Ms', 'p99Ms', 'sendLagP99Ms']);

/** A saturating scenario's round in which the proxy's core was the limit. */
function saturatedRound(o: OutcomeOrFailure): o is ScenarioOutcome {
  if ('failed' in o) return false;
  const busy = o.figures.proxyBusyPct;
  return typeof busy === 'number' && busy >= SATURATED_PCT;
}

/** How many of a saturating scenario's rounds saturated the proxy. */
export function saturatedCount(rounds: readonly OutcomeOrFailure[] | undefined): number {
  return rounds === undefined ? 0 : rounds.filter(saturatedRound).length;
}

/**
 * Several rounds of one scenario on one proxy: the median of each figure, errors added up. A round
 * whose load side fell behind (the machine was busy) gives no latency if another round kept its
 * schedule; the result is behind only when every round was. In a saturating scenario (its rounds
 * carry proxyBusyPct) the figures come from the rounds that saturated the proxy, when there are
 * any: a round the load side limited measured a lighter load, not the proxy at its limit.
 * `rounds` and `saturatedRounds` say how many there were of each.
 */
export function combineRounds(rounds: readonly OutcomeOrFailure[]): OutcomeOrFailure | undefined {
  const ok = rounds.filter((o): o is ScenarioOutcome => !('failed' in o));
  if (ok.length === 0) return rounds[0];
  const saturating = ok.some((o) => typeof o.figures.proxyBusyPct === 'number');
  const saturated = saturating ? ok.filter(saturatedRound) : [];
  const counted = saturated.length > 0 ? saturated : ok;
  const onSchedule = counted.filter((o) => !o.behind);
  const figures: Figures = {};
  for (const key of Object.keys((ok[0] as ScenarioOutcome).figures)) {
    const from = SCHEDULE_SENSITIVE.has(key) && onSchedule.length > 0 ? onSchedule : counted;
    const values = from.map((o) => o.figures[key]).filter((v): v is number => typeof v === 'number');
    figures[key] = values.length === 0 ? null : median(values);
  }
  if (saturating) {
    figures.rounds = ok.length;
    figures.saturatedRounds = saturated.length;
  }
  const errors: Record<string, number> = {};
  for (const o of ok) for (const [k, n] of Object.entries(o.errors)) errors[k] = (errors[k] ?? 0) + n;
  const failed = rounds.length - ok.length;
  const warnings = [...new Set(ok.flatMap((o) => o.warnings)), ...(failed > 0 ? [`${failed} of ${rounds.length} rounds failed`] : [])];
  if (saturated.length > 0 && saturated.length < ok.length) {
    warnings.push(`figures from the ${saturated.length} of ${ok.length} rounds that saturated the proxy's core`);
  }
  if (onSchedule.length > 0 && onSchedule.length < counted.length) {
    warnings.push(`latencies from ${onSchedule.length} of ${counted.length} rounds: the load side fell behind its schedule in the others`);
  }
  return { figures, errors, warnings, behind: onSchedule.length === 0, command: (ok[0] as ScenarioOutcome).command };
}

// idle first: a fresh proxy process gives a clean memory baseline (a garbage-collected
// proxy keeps the heap that earlier scenarios grew, which would hide its per-connection cost).
export const SCENARIOS: readonly ScenarioDef[] = [
  {
    name: 'idle',
    direct: false,
    run: async (proxy, s) => {
      // One load process: 8,000 sockets are well under its 19,000, and a second process on the
      // same core would only add its start-up.
      const conns = s.quick ? 200 : 8000;
      const m = await measureIdle(proxy, conns / 2);
      // kB = 1,000 bytes: the unit the memory target is written in.
      const kb = m.growthKiB === null ? null : (m.growthKiB * 1024) / 1000;
      return {
        figures: { kbPerConn: per(kb, m.counted), connections: m.connections },
        errors: m.errors,
        warnings: [],
        behind: false,
        command: m.command,
      };
    },
  },
  {
    name: 'chatty',
    direct: true,
    run: async (proxy, s, side) => {
      const m = await measure(proxy, chattyArgs(s, s.rate, s.longSeconds), side);
      const r = m.result;
      return outcome(m, {
        cpuUsPerMsg: per(m.cpuUs, r.messages.receivedInWindow),
        p50Ms: r.latency.p50,
        p99Ms: r.latency.p99,
        msgPerSec: r.messages.perSecond,
        sendLagP99Ms: r.sendLag?.p99 ?? null,
        loadSidePct: m.wallUs > 0 ? (100 * m.loadSideCpuUs) / m.wallUs : null,
      });
    },
  },
  {
    name: 'max',
    direct: true,
    run: async (proxy, s, side) => {
      const [conns, inflight] = s.quick ? [10, 2] : [50, 8];
      const m = await measure(proxy, ['--inflight', String(inflight), '--connections', String(conns), '--size', '64', ...timing(s)], side);
      const r = m.result;
      return outcome(m, { msgPerSec: r.messages.perSecond, cpuUsPerMsg: per(m.cpuUs, r.messages.receivedInWindow), p99Ms: r.latency.p99 });
    },
  },
  {
    name: 'bulk',
    direct: true,
    run: async (proxy, s, side) => {
      const conns = s.quick ? 4 : 50;
      const m = await measure(proxy, ['--inflight', '1', '--connections', String(conns), '--size', '64KiB', '--binary', ...timing(s)], side);
      const r = m.result;
      const megabytes = (r.messages.receivedInWindow * r.size) / 1e6;
      return outcome(m, { mbPerSec: r.messages.bytesPerSecond / 1e6, cpuMsPerMB: per(m.cpuUs === null ? null : m.cpuUs / 1000, megabytes) });
    },
  },
  {
    name: 'churn',
    direct: true,
    run: async (proxy, s, side) => {
      const conns = s.quick ? 4 : 32;
      const m = await measure(proxy, ['--churn', '--connections', String(conns), '--size', '64', ...timing(s, s.longSeconds)], side);
      const r = m.result;
      return outcome(m, {
        hsPerSec: r.handshakes.perSecond,
        p99HsMs: r.handshakes.latency.p99,
        cpuUsPerHs: per(m.cpuUs, r.handshakes.count),
      });
    },
  },
  {
    // The same cycles at one fixed rate for every proxy. In churn each proxy
    // runs as fast as the loops go, so a faster one handles more handshakes
    // per second, and a busier event loop does more of them per wakeup: its
    // CPU per handshake drops with its own speed (nginx's by a third between
    // 1,400/s and 2,300/s). Here every proxy does the same work.
    name: 'handshake',
    direct: true,
    run: async (proxy, s, side) => {
      const rate = s.quick ? 50 : HANDSHAKE_RATE;
      const m = await measure(proxy, ['--churn', '--rate', String(rate), '--connections', '64', '--size', '64', ...timing(s, s.longSeconds)], side);
      const r = m.result;
      // Behind only when cycles were left unstarted (not the same work). A late start on a busy
      // load core changes neither figure: the handshake latency counts from the actual connect.
      return { ...outcome(m, { p99HsMs: r.handshakes.latency.p99, cpuUsPerHs: per(m.cpuUs, r.handshakes.count) }), behind: r.messages.unsent > 0 };
    },
  },
  {
    // The proxy's core at 100%: the C load generator (a few µs per echo) keeps 800 messages in
    // flight, so the proxy always has work. What it costs per message at its limit, and how far
    // that limit is. A round with the proxy's core below SATURATED_PCT busy does not count.
    name: 'saturate',
    direct: true,
    saturating: true,
    run: async (proxy, s, side) => {
      const [connections, inflight] = s.quick ? [20, 2] : [200, 4];
      const m = await measureLoadgen(proxy, { mode: 'closed', connections, inflight, size: 64, durationS: s.seconds, warmupS: s.warmup }, side);
      const r = m.result;
      return saturatingOutcome(m, r.messages, {
        msgPerSec: r.msgPerSec,
        cpuUsPerMsg: per(m.cpuUs, r.messages),
        p99Ms: r.latencyUs.p99 === null ? null : r.latencyUs.p99 / 1000,
      });
    },
  },
  {
    // Handshakes as fast as the proxy takes them: 50 loops of connect, upgrade, one echo, close.
    name: 'churn-sat',
    direct: true,
    saturating: true,
    run: async (proxy, s, side) => {
      const connections = s.quick ? 4 : 50;
      const m = await measureLoadgen(proxy, { mode: 'churn', connections, size: 64, durationS: s.longSeconds, warmupS: s.warmup }, side);
      const r = m.result;
      return saturatingOutcome(m, r.handshakes, {
        hsPerSec: r.hsPerSec,
        cpuUsPerHs: per(m.cpuUs, r.handshakes),
        p99HsMs: r.handshakeUs.p99 === null ? null : r.handshakeUs.p99 / 1000,
      });
    },
  },
];
