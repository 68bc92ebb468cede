// One `wsgate bench` load, run in this process (runLoad, as the suite does) so
// that CPU readings can be taken exactly when the measured window opens and
// closes: the connect phase and the close at the end are not in them.
import { performance } from 'node:perf_hooks';
import { parseBenchArgs } from '../../src/bench/options.js';
import { runLoad } from '../../src/bench/run-load.js';
import type { BenchResult } from '../../src/bench/run-load.js';
import { busyByCpu, cpuMicros, foreignCpu } from './system.js';

/** CPU readings at one instant. */
interface Snapshot {
  readonly at: number;
  /** This process: the load generator. */
  readonly selfUs: number;
  readonly byPid: ReadonlyMap<number, number>;
  readonly busyByCpu: readonly number[];
  readonly foreign: ReadonlyMap<number, number>;
}

/** What happened between two snapshots, µs. */
export interface CpuWindow {
  readonly wallUs: number;
  readonly selfUs: number;
  /** CPU of each watched process over the window. */
  readonly byPid: ReadonlyMap<number, number>;
  /** Busy time of each CPU (softirq included). */
  readonly busyByCpu: readonly number[];
  /** Processes outside this run (other work on a shared machine). */
  readonly otherUs: number;
}

function snapshot(pids: readonly number[]): Snapshot {
  const u = process.cpuUsage();
  return {
    at: performance.now(),
    selfUs: u.user + u.system,
    byPid: new Map(pids.map((p) => [p, cpuMicros([p])])),
    busyByCpu: busyByCpu(),
    foreign: foreignCpu(),
  };
}

function between(a: Snapshot, b: Snapshot): CpuWindow {
  return {
    wallUs: (b.at - a.at) * 1000,
    selfUs: b.selfUs - a.selfUs,
    byPid: new Map([...b.byPid].map(([p, us]) => [p, us - (a.byPid.get(p) ?? us)])),
    busyByCpu: b.busyByCpu.map((us, i) => us - (a.busyByCpu[i] ?? us)),
    otherUs: [...b.foreign].reduce((sum, [p, us]) => sum + us - (a.foreign.get(p) ?? 0), 0),
  };
}

/** CPU of these processes over the window, µs. */
export function cpuOf(w: CpuWindow, pids: readonly number[]): number {
  return pids.reduce((sum, p) => sum + (w.byPid.get(p) ?? 0), 0);
}

/** CPU over the window in cores (1.0 = one CPU busy the whole time). */
export function cores(us: number, w: CpuWindow): number {
  return w.wallUs > 0 ? us / w.wallUs : NaN;
}

/** How busy the given CPUs were (all of them when none are given), % of their time. */
export function busyPct(w: CpuWindow, which?: readonly number[]): number {
  const list = which ?? w.busyByCpu.map((_, i) => i);
  const busy = list.reduce((sum, i) => sum + (w.busyByCpu[i] ?? 0), 0);
  return w.wallUs > 0 && list.length > 0 ? (100 * busy) / (w.wallUs * list.length) : NaN;
}

export interface Measured<T> {
  readonly result: BenchResult;
  /** From opening the first connection until the measured load starts (persistent connections: the connect phase). */
  readonly connect: CpuWindow;
  /** The measured load (after the warm-up). */
  readonly load: CpuWindow;
  /** What `atEnd` returned: read when the load is over, its connections still open. */
  readonly atEnd: T;
  /** The equivalent command line. */
  readonly command: string;
}

/**
 * Runs `wsgate bench url ...args` here, watching the CPU of `pids` (gateway processes, echo
 * backends). `atEnd` runs once the load is over and outstanding echoes are in, connections still
 * open (to read how they are spread, say).
 */
export async function measuredLoad<T>(url: string, args: readonly string[], pids: readonly number[], atEnd: () => Promise<T>): Promise<Measured<T>> {
  const options = parseBenchArgs([url, ...args, '--no-progress']);
  const begin = snapshot(pids);
  let start: Snapshot = begin;
  let end: Snapshot = begin;
  let extra: { value: T } | undefined;
  const result = await runLoad(options, {
    onLoadStart: () => {
      start = snapshot(pids);
    },
    onLoadEnd: async () => {
      end = snapshot(pids);
      extra = { value: await atEnd() };
    },
  });
  if (extra === undefined) throw new Error('the load ended without a measured window');
  return { result, connect: between(begin, start), load: between(start, end), atEnd: extra.value, command: `wsgate bench ${[url, ...args].join(' ')}` };
}

export const nothing = (): Promise<undefined> => Promise.resolve(undefined);
