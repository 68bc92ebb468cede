import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { BenchError } from './bench-error.js';
import { ErrorTally } from './error-tally.js';
import { createHistogram, mergeEncoded, summarize } from './histogram.js';
import type { LatencySummary } from './histogram.js';
import { LoadRunner } from './load-runner.js';
import { sourceAddressFor } from './options.js';
import type { BenchOptions, LoadMode } from './options.js';
import { RemoteRunner } from './remote-runner.js';
import type { Runner, RunnerCounters, RunnerResult, RunnerSlice } from './runner.js';

/** Above this send lag (p99), the tool says it fell behind its own schedule. */
const LAG_WARN_MS = 5;
const HANDSHAKE_CONCURRENCY = 256;

export interface LoadProgress {
  readonly phase: 'connecting' | 'warmup' | 'running' | 'closing';
  /** Since the start of the phase. */
  readonly elapsedMs: number;
  readonly counters: RunnerCounters;
  /** Round-trip p99 so far, ms. */
  readonly p99: number;
}

export interface LoadHooks {
  /** Called every `progressMs` (default 500) while the run lasts. */
  readonly onProgress?: (progress: LoadProgress) => void;
  readonly progressMs?: number;
  /** Every connection is open (or failed) and the warm-up is over; measuring starts. */
  readonly onLoadStart?: () => void | Promise<void>;
  /** The load is over and outstanding echoes are in; connections are still open. */
  readonly onLoadEnd?: () => void | Promise<void>;
  /** Aborting stops every runner and rejects. */
  readonly signal?: AbortSignal;
}

export interface BenchResult {
  readonly target: string;
  readonly mode: LoadMode;
  readonly connections: number;
  readonly workers: number;
  readonly size: number;
  readonly binary: boolean;
  readonly durationMs: number;
  readonly warmupMs: number;
  /** The load phase as it happened (max over workers). */
  readonly elapsedMs: number;
  readonly connectionsOpened: number;
  readonly connectionsFailed: number;
  readonly handshakes: { readonly count: number; readonly perSecond: number; readonly latency: LatencySummary };
  readonly messages: {
    readonly sent: number;
    /** Echoes of messages sent while measuring (the latency histogram's count). */
    readonly received: number;
    /** Every echo that arrived while measuring, warm-up ones included. */
    readonly receivedInWindow: number;
    readonly unsent: number;
    readonly perSecond: number;
    /** Echoed payload bytes per second (each byte crossed a proxy twice). */
    readonly bytesPerSecond: number;
  };
  /** Round trip: open loop from the intended send time, closed loop and churn from the actual one. */
  readonly latency: LatencySummary;
  /** Open loop: how late the tool sent each message against its schedule. */
  readonly sendLag: LatencySummary | null;
  /** Open loop: the tool could not keep its schedule (send lag p99 over 5 ms, or messages left unsent). */
  readonly behindSchedule: boolean;
  readonly errors: Readonly<Record<string, number>>;
  readonly errorCount: number;
  readonly warnings: readonly string[];
}

function slices(options: BenchOptions): RunnerSlice[] {
  const out: RunnerSlice[] = [];
  const n = options.connections;
  const w = options.workers;
  const salt = randomInt(254 * 256);
  for (let i = 0; i < w; i++) {
    const connections = Math.floor(n / w) + (i < n % w ? 1 : 0);
    const share = connections / n;
    out.push({
      options,
      connections,
      rate: options.mode.kind === 'open' || options.mode.kind === 'churn' ? (options.mode.rate ?? 0) * share : 0,
      ramp: options.ramp * share,
      localAddress: sourceAddressFor(options.url, i, w, salt),
    });
  }
  return out;
}

/** Generous: a run that overruns this is stuck, and is stopped rather than left hanging. */
function deadlineMs(o: BenchOptions): number {
  const connect = (o.ramp > 0 ? (o.connections / o.ramp) * 1000 : 0) + Math.ceil(o.connections / (HANDSHAKE_CONCURRENCY * o.workers) + 1) * o.timeoutMs;
  return connect + o.warmupMs + o.durationMs + o.timeoutMs + 30_000;
}

function sumCounters(runners: readonly Runner[]): RunnerCounters {
  const s = { open: 0, opened: 0, failed: 0, handshakes: 0, sent: 0, received: 0, errors: 0 };
  for (const r of runners) {
    const c = r.progress().counters;
    s.open += c.open;
    s.opened += c.opened;
    s.failed += c.failed;
    s.handshakes += c.handshakes;
    s.sent += c.sent;
    s.received += c.received;
    s.errors += c.errors;
  }
  return s;
}

function p99Of(runners: readonly Runner[]): number {
  const h = createHistogram();
  for (const r of runners) h.add(r.progress().rtt);
  return h.totalCount === 0 ? 0 : h.getValueAtPercentile(99) / 1000;
}

function combine(options: BenchOptions, results: readonly RunnerResult[]): BenchResult {
  const hs = createHistogram();
  const rtt = createHistogram();
  const lag = createHistogram();
  const errors = new ErrorTally();
  let opened = 0,
    failed = 0,
    handshakes = 0,
    sent = 0,
    received = 0,
    inWindow = 0,
    unsent = 0,
    bytes = 0,
    loadMs = 0,
    connectMs = 0;
  for (const r of results) {
    mergeEncoded(hs, r.handshakeHistogram);
    mergeEncoded(rtt, r.rttHistogram);
    mergeEncoded(lag, r.lagHistogram);
    errors.addAll(r.errors);
    opened += r.opened;
    failed += r.failed;
    handshakes += r.handshakes;
    sent += r.sent;
    received += r.received;
    inWindow += r.receivedInWindow;
    unsent += r.unsent;
    bytes += r.bytesReceived;
    loadMs = Math.max(loadMs, r.loadMs);
    connectMs = Math.max(connectMs, r.connectMs);
  }
  const seconds = loadMs > 0 ? loadMs / 1000 : 1;
  const open = options.mode.kind === 'open' || (options.mode.kind === 'churn' && options.mode.rate !== undefined);
  const sendLag = open ? summarize(lag) : null;
  const warnings: string[] = [];
  if (sendLag !== null && sendLag.p99 > LAG_WARN_MS) {
    warnings.push(
      `the load tool fell behind its schedule (send lag p99 ${sendLag.p99} ms, max ${sendLag.max} ms): ` +
        "latencies still count from the intended send times, but the figures include the tool's own delay",
    );
  }
  if (unsent > 0) {
    warnings.push(
      options.mode.kind === 'churn'
        ? `${unsent} scheduled handshakes were not started (--connections cycles were already under way)`
        : `${unsent} scheduled messages were not sent (no open connection, or a send buffer over 8 MiB)`,
    );
  }
  if (options.mode.kind === 'churn' && handshakes === 0) warnings.push('no handshake completed during the load phase');
  const tally = errors.toJSON();
  if (Object.keys(tally).some((k) => k.startsWith('tls '))) warnings.push('TLS verification failed: --insecure accepts self-signed certificates');
  return {
    target: options.url,
    mode: options.mode,
    connections: options.connections,
    workers: options.workers,
    size: options.size,
    binary: options.binary,
    durationMs: options.durationMs,
    warmupMs: options.warmupMs,
    elapsedMs: Math.round(loadMs),
    connectionsOpened: opened,
    connectionsFailed: failed,
    // Churn handshakes happen during the load; otherwise while connecting.
    handshakes: {
      count: handshakes,
      perSecond: options.mode.kind === 'churn' ? handshakes / seconds : connectMs > 0 ? (handshakes * 1000) / connectMs : 0,
      latency: summarize(hs),
    },
    messages: { sent, received, receivedInWindow: inWindow, unsent, perSecond: received / seconds, bytesPerSecond: bytes / seconds },
    latency: summarize(rtt),
    sendLag,
    behindSchedule: open && ((sendLag?.p99 ?? 0) > LAG_WARN_MS || unsent > 0),
    errors: tally,
    errorCount: errors.total,
    warnings,
  };
}

async function phases(runners: Runner[], hooks: LoadHooks, setPhase: (p: LoadProgress['phase']) => void): Promise<RunnerResult[]> {
  await Promise.all(runners.map((r) => r.connect()));
  setPhase('warmup');
  await Promise.all(runners.map((r) => r.warmup()));
  await hooks.onLoadStart?.();
  setPhase('running');
  await Promise.all(runners.map((r) => r.run()));
  await hooks.onLoadEnd?.();
  setPhase('closing');
  return Promise.all(runners.map((r) => r.close()));
}

/** Runs one load as described by `options`, in this process or in `options.workers` worker processes. */
export async function runLoad(options: BenchOptions, hooks: LoadHooks = {}): Promise<BenchResult> {
  const progressMs = hooks.onProgress === undefined ? 0 : (hooks.progressMs ?? 500);
  const parts = slices(options);
  const runners: Runner[] = [];
  let phase: LoadProgress['phase'] = 'connecting';
  let phaseStart = performance.now();
  let progressTimer: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const abortAll = (): void => {
    for (const r of runners) r.abort();
  };
  try {
    if (parts.length === 1) runners.push(new LoadRunner(parts[0] as RunnerSlice));
    else {
      const started = await Promise.allSettled(parts.map((s) => RemoteRunner.start(s, progressMs)));
      for (const s of started) if (s.status === 'fulfilled') runners.push(s.value);
      for (const s of started) if (s.status === 'rejected') throw s.reason;
    }
    if (progressMs > 0) {
      progressTimer = setInterval(() => {
        hooks.onProgress?.({ phase, elapsedMs: performance.now() - phaseStart, counters: sumCounters(runners), p99: p99Of(runners) });
      }, progressMs);
    }
    const stopped = new Promise<never>((_resolve, reject) => {
      deadline = setTimeout(() => {
        abortAll();
        reject(new BenchError('BENCH_WORKER_FAILED', `the run overran its ${Math.round(deadlineMs(options) / 1000)} s deadline and was stopped`));
      }, deadlineMs(options));
      if (hooks.signal !== undefined) {
        onAbort = () => {
          abortAll();
          reject(new BenchError('BENCH_INTERRUPTED', 'the run was interrupted'));
        };
        if (hooks.signal.aborted) onAbort();
        else hooks.signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    const setPhase = (p: LoadProgress['phase']): void => {
      phase = p;
      phaseStart = performance.now();
    };
    const results = await Promise.race([phases(runners, hooks, setPhase), stopped]);
    return combine(options, results);
  } catch (err) {
    abortAll();
    throw err;
  } finally {
    if (progressTimer !== undefined) clearInterval(progressTimer);
    if (deadline !== undefined) clearTimeout(deadline);
    if (onAbort !== undefined) hooks.signal?.removeEventListener('abort', onAbort);
  }
}
