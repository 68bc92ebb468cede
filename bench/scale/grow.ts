// grow: the same loads through 1 worker and through 2. This machine has two
// CPUs, and the load generator and the echo backend need CPU too, so no
// placement can show "twice the throughput with twice the workers". Two
// placements answer two different questions, each honestly:
//
// - pinned: gateway (primary and workers) on CPU 1, load generator and echo
//   backend on CPU 0. The gateway has one core either way, so the 2-worker
//   run shows what the cluster costs (the primary, IPC, two event loops
//   sharing a core): ratios near 1.0 mean it is nearly free.
// - shared: nothing pinned. A second worker may use the second core, as far
//   as the load side leaves it free: this is what it buys on this machine.
//
// Every run reports the gateway's CPU per message/handshake, the CPU (in
// cores) of the gateway and of the load side, and how busy each CPU was, so a
// run whose load side (or whole machine) was the limit is flagged as such.
import type { BenchResult } from '../../src/bench/run-load.js';
import { addErrors, errorList, formatNumber, markdownTable, median, percent, plural, ratio, spread, totalErrors } from './format.js';
import { busyPct, cores, cpuOf, measuredLoad, nothing } from './measure.js';
import type { CpuWindow } from './measure.js';
import { startEcho, startGateway } from './processes.js';
import type { Gateway, ScaleEnv } from './processes.js';
import { seconds, sleep } from './scenario.js';
import type { Progress, ScaleSettings, ScenarioReport } from './scenario.js';
import { allCpus, cpuCount, pinSelf } from './system.js';
import type { Cpus } from './system.js';

/** Past this share of what it may use, a side counts as the limit. */
const SATURATED = 0.9;
const WORKER_COUNTS = [1, 2] as const;
type Workers = (typeof WORKER_COUNTS)[number];

interface Placement {
  readonly name: 'pinned' | 'shared';
  /** The gateway's CPUs (undefined: anywhere), and how many that is. */
  readonly gateway: Cpus;
  readonly gatewayCpuCount: number;
  /** The load generator's (this process's) and the echo backend's CPUs. */
  readonly load: string;
  /** CPU indexes whose busy time is the load side's (pinned only). */
  readonly loadCpuIndexes: readonly number[] | undefined;
  readonly describe: string;
}

function placements(): Placement[] {
  const n = cpuCount();
  return [
    {
      name: 'pinned',
      gateway: '1',
      gatewayCpuCount: 1,
      load: '0',
      loadCpuIndexes: [0],
      describe: 'pinned: the gateway (primary and workers) on CPU 1, the load generator and the echo backend on CPU 0',
    },
    {
      name: 'shared',
      gateway: undefined,
      gatewayCpuCount: n,
      load: allCpus(),
      loadCpuIndexes: undefined,
      describe: `shared: nothing pinned, the gateway, the load generator and the echo backend share all ${n} CPUs`,
    },
  ];
}

export interface LoadDef {
  readonly name: 'closed' | 'churn';
  readonly args: readonly string[];
  /** What one operation is, for the labels. */
  readonly unit: 'message' | 'handshake';
  /** Operations done in the measured window, and their rate. */
  readonly ops: (r: BenchResult) => number;
  readonly perSecond: (r: BenchResult) => number;
}

export const LOADS: readonly LoadDef[] = [
  {
    name: 'closed',
    args: ['--inflight', '4', '--connections', '200', '--size', '64'],
    unit: 'message',
    // Every echo the gateway relayed in the window, warm-up ones included: that is the work its CPU paid for.
    ops: (r) => r.messages.receivedInWindow,
    perSecond: (r) => r.messages.perSecond,
  },
  {
    name: 'churn',
    args: ['--churn', '--connections', '50', '--size', '64'],
    unit: 'handshake',
    ops: (r) => r.handshakes.count,
    perSecond: (r) => r.handshakes.perSecond,
  },
];

interface GrowRun {
  readonly placement: Placement['name'];
  readonly load: LoadDef['name'];
  readonly workers: Workers;
  readonly round: number;
  readonly perSecond: number;
  readonly gatewayUsPerOp: number;
  /** The primary's part of it (NaN for a single process). */
  readonly primaryUsPerOp: number;
  readonly gatewayCores: number;
  /** The load generator (this process) and the echo backend. */
  readonly loadSideCores: number;
  /** Busy share of each CPU, % (softirq included). */
  readonly busyPctByCpu: readonly number[];
  /** Other processes on the machine (a shared machine's other work), cores. */
  readonly otherCores: number;
  /** What was at its limit: "gateway", "load side", "machine", or "none". */
  readonly bound: string;
  readonly errors: Readonly<Record<string, number>>;
  readonly command: string;
}

/** Which side ran out of CPU: a gateway at ≥ 90% of what its workers can use, a load side at ≥ 90% of its core, or every CPU ≥ 90% busy. */
function boundBy(p: Placement, workers: Workers, w: CpuWindow, gatewayCores: number): string {
  const out: string[] = [];
  if (gatewayCores >= SATURATED * Math.min(workers, p.gatewayCpuCount)) out.push('gateway');
  if (p.loadCpuIndexes !== undefined && busyPct(w, p.loadCpuIndexes) >= 100 * SATURATED) out.push('load side');
  if (p.loadCpuIndexes === undefined && busyPct(w) >= 100 * SATURATED) out.push('machine');
  return out.length === 0 ? 'none' : out.join(' + ');
}

async function oneRun(gw: Gateway, echoPid: number, p: Placement, load: LoadDef, s: ScaleSettings, round: number): Promise<GrowRun> {
  const warm = s.warmupMs > 0 ? ['--warmup', seconds(s.warmupMs)] : [];
  const watched = [...gw.pids, echoPid];
  const m = await measuredLoad(gw.url, [...load.args, '--duration', seconds(s.durationMs), ...warm], watched, nothing);
  const w = m.load;
  const gatewayUs = cpuOf(w, gw.pids);
  const ops = load.ops(m.result);
  const gatewayCores = cores(gatewayUs, w);
  const workers = gw.spec.workers as Workers;
  return {
    placement: p.name,
    load: load.name,
    workers,
    round,
    perSecond: load.perSecond(m.result),
    gatewayUsPerOp: gatewayUs / ops,
    primaryUsPerOp: gw.workerPids.length === 0 ? NaN : cpuOf(w, [gw.pid]) / ops,
    gatewayCores,
    loadSideCores: cores(w.selfUs + cpuOf(w, [echoPid]), w),
    busyPctByCpu: w.busyByCpu.map((_, i) => busyPct(w, [i])),
    otherCores: cores(w.otherUs, w),
    bound: boundBy(p, workers, w, gatewayCores),
    errors: m.result.errors,
    command: m.command,
  };
}

function line(r: GrowRun): string {
  return (
    `  ${r.placement} round ${r.round} ${r.load.padEnd(6)} ${r.workers} worker${r.workers > 1 ? 's' : ' '}  ${formatNumber(r.perSecond)}/s, ` +
    `${formatNumber(r.gatewayUsPerOp)} µs gateway CPU each, gateway ${r.gatewayCores.toFixed(2)} cores, load side ${r.loadSideCores.toFixed(2)}, ` +
    `CPUs ${r.busyPctByCpu.map(percent).join(' / ')} busy; bound: ${r.bound}; errors ${errorList(r.errors)}`
  );
}

/** Runs every load through both gateways of one placement, alternating which goes first. */
async function onePlacement(env: ScaleEnv, s: ScaleSettings, p: Placement, progress: Progress): Promise<GrowRun[]> {
  pinSelf(p.load);
  const echo = await startEcho(env, 'echo backend', p.name === 'pinned' ? p.load : undefined);
  const gateways = new Map<Workers, Gateway>();
  try {
    for (const workers of WORKER_COUNTS) {
      const spec = { workers, policy: s.policy, backendPorts: [echo.port], mode: s.mode, cpus: p.gateway };
      gateways.set(workers, await startGateway(env, `gateway-${workers}w-${p.name}`, spec));
    }
    const runs: GrowRun[] = [];
    for (let round = 1; round <= s.rounds; round++) {
      const order = round % 2 === 1 ? WORKER_COUNTS : [...WORKER_COUNTS].reverse();
      for (const load of LOADS) {
        for (const workers of order) {
          const r = await oneRun(gateways.get(workers) as Gateway, echo.pid, p, load, s, round);
          runs.push(r);
          progress(line(r));
          await sleep(300);
        }
      }
    }
    return runs;
  } finally {
    for (const gw of gateways.values()) await gw.stop();
    await echo.stop();
  }
}

interface Row {
  readonly label: string;
  readonly value: (r: GrowRun) => number;
  readonly fmt?: (v: number) => string;
  /** Show the 2 ÷ 1 ratio. */
  readonly ratio?: boolean;
}

function rowsFor(load: LoadDef): Row[] {
  const cpu = (v: number): string => v.toFixed(2);
  return [
    { label: `${load.unit}s/s ↑`, value: (r) => r.perSecond, ratio: true },
    { label: `gateway CPU per ${load.unit} (µs) ↓`, value: (r) => r.gatewayUsPerOp, ratio: true },
    { label: `… of which the primary (µs)`, value: (r) => r.primaryUsPerOp },
    { label: `${load.unit}s per gateway CPU-second ↑`, value: (r) => 1e6 / r.gatewayUsPerOp, ratio: true },
    { label: 'gateway CPU (cores)', value: (r) => r.gatewayCores, fmt: cpu, ratio: true },
    { label: 'load generator + echo CPU (cores)', value: (r) => r.loadSideCores, fmt: cpu },
    { label: "other processes' CPU (cores)", value: (r) => r.otherCores, fmt: cpu },
  ];
}

function boundCell(runs: readonly GrowRun[]): string {
  const tally = new Map<string, number>();
  for (const r of runs) tally.set(r.bound, (tally.get(r.bound) ?? 0) + 1);
  return [...tally].map(([b, n]) => (tally.size === 1 ? b : `${b} ×${n}`)).join(', ');
}

function busyCell(runs: readonly GrowRun[]): string {
  const n = Math.max(0, ...runs.map((r) => r.busyPctByCpu.length));
  return Array.from({ length: n }, (_, i) => percent(median(runs.map((r) => r.busyPctByCpu[i] ?? NaN)))).join(' / ');
}

function table(runs: readonly GrowRun[]): string {
  const cpuNames = Array.from({ length: cpuCount() }, (_, i) => `CPU ${i}`).join(' / ');
  const rows: string[][] = [];
  for (const p of placements()) {
    for (const load of LOADS) {
      const of = (w: Workers): GrowRun[] => runs.filter((r) => r.placement === p.name && r.load === load.name && r.workers === w);
      const [one, two] = [of(1), of(2)];
      if (one.length === 0 && two.length === 0) continue;
      const tag = `${p.name} · ${load.name}`;
      for (const row of rowsFor(load)) {
        const [a, b] = [one.map(row.value), two.map(row.value)];
        rows.push([`${tag}: ${row.label}`, spread(a, row.fmt), spread(b, row.fmt), row.ratio === true ? ratio(median(a), median(b)) : '']);
      }
      rows.push([`${tag}: CPU busy (${cpuNames})`, busyCell(one), busyCell(two), '']);
      rows.push([`${tag}: at its limit`, boundCell(one), boundCell(two), '']);
    }
  }
  const errors = WORKER_COUNTS.map((w) => {
    const e: Record<string, number> = {};
    for (const r of runs.filter((x) => x.workers === w)) addErrors(e, r.errors);
    return errorList(e);
  });
  rows.push(['errors (all runs)', errors[0] ?? '', errors[1] ?? '', '']);
  return markdownTable(['figure', '1 worker', '2 workers', '2 ÷ 1'], rows);
}

function notes(runs: readonly GrowRun[], s: ScaleSettings): string[] {
  const out = placements().map((p) => `${p.describe}.`);
  out.push(
    '"at its limit": gateway = its CPU use reached 90% of what its workers can use on the CPUs it has; load side = CPU 0 (pinned) was ' +
      '90% busy; machine = every CPU was 90% busy (unpinned). A throughput ratio from a run whose load side or machine was at its ' +
      "limit says what this machine could offer, not what the gateway could do: read the CPU-per-operation rows for the gateway's efficiency.",
    `1 worker is a single process (no primary); 2 workers are a primary and two workers (${s.policy} scheduling), so the primary's ` +
      'CPU (accepting connections in rr mode, the admit/release IPC of every handshake) is in the 2-worker figures.',
  );
  for (const p of placements()) {
    const med = (load: LoadDef['name'], w: Workers, f: (r: GrowRun) => number): number =>
      median(runs.filter((r) => r.placement === p.name && r.load === load && r.workers === w).map(f));
    const extra = med('churn', 2, (r) => r.gatewayUsPerOp) - med('churn', 1, (r) => r.gatewayUsPerOp);
    const primary = med('churn', 2, (r) => r.primaryUsPerOp);
    if (Number.isFinite(extra) && Number.isFinite(primary)) {
      out.push(
        `${p.name}: a handshake cost the gateway ${formatNumber(extra)} µs more with 2 workers than with 1: ${formatNumber(primary)} µs in the ` +
          `primary, ${formatNumber(extra - primary)} µs more in the workers. Closed loop: ${formatNumber(med('closed', 2, (r) => r.gatewayUsPerOp))} ` +
          `against ${formatNumber(med('closed', 1, (r) => r.gatewayUsPerOp))} µs per message (relaying does not involve the primary).`,
      );
    }
  }
  return out;
}

export async function growScenario(env: ScaleEnv, s: ScaleSettings, progress: Progress): Promise<ScenarioReport> {
  const runs: GrowRun[] = [];
  try {
    for (const p of placements()) runs.push(...(await onePlacement(env, s, p, progress)));
  } finally {
    pinSelf(allCpus());
  }
  return {
    summary:
      `1 worker vs 2, ${s.mode} mode; closed loop \`${LOADS[0]?.args.join(' ')}\` and churn \`${LOADS[1]?.args.join(' ')}\`, ` +
      `${seconds(s.durationMs)} measured${s.warmupMs > 0 ? ` after ${seconds(s.warmupMs)} of warm-up` : ''}, ${plural(s.rounds, 'round')} alternating ` +
      'which gateway goes first; each cell the median (min–max), the ratio from the medians.',
    table: table(runs),
    notes: notes(runs, s),
    data: { runs },
    errors: runs.reduce((n, r) => n + totalErrors(r.errors), 0),
  };
}
