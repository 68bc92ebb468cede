// policy: Node's two cluster scheduling policies with 2 workers. rr: the
// primary accepts every connection and hands it to a worker in turn; none:
// every worker accepts on the shared socket and the kernel decides who wakes.
// Each round starts a fresh echo backend and gateway per policy (the policy is
// read once, at start), runs handshake churn, then opens idle connections and
// reads from /api/cluster where they ended up.
import type { BenchResult } from '../../src/bench/run-load.js';
import { addErrors, count, errorList, formatNumber, markdownTable, maxMin, median, percent, plural, ratio, spread, totalErrors } from './format.js';
import { busyPct, cores, cpuOf, measuredLoad, nothing } from './measure.js';
import type { CpuWindow } from './measure.js';
import { replacedWorkers, startEcho, startGateway } from './processes.js';
import type { Gateway, InstanceStatus, ScaleEnv, SchedPolicy } from './processes.js';
import { seconds, sleep } from './scenario.js';
import type { Progress, ScaleSettings, ScenarioReport } from './scenario.js';

const WORKERS = 2;
const CHURN_CONNECTIONS = 50;
/** Long enough that the gateway's sessions are all counted before /api/cluster is read. */
const IDLE_HOLD = '2s';
const POLICIES: readonly SchedPolicy[] = ['rr', 'none'];

/** What one churn run says about the gateway. */
interface ChurnFigures {
  readonly hsPerSec: number;
  readonly gatewayUsPerHs: number;
  readonly primaryUsPerHs: number;
  /** The primary's part of the gateway's CPU, %. */
  readonly primaryPct: number;
  /** Busiest worker's CPU over the idlest's. */
  readonly workerCpuMaxMin: number;
  readonly hsP99Ms: number;
  /** Load generator (this process) and echo backend, in cores. */
  readonly loadSideCores: number;
  readonly machineBusyPct: number;
  /** Other processes on the machine (a shared machine's other work), cores. */
  readonly otherCores: number;
}

interface PolicyRound extends ChurnFigures {
  readonly policy: SchedPolicy;
  readonly round: number;
  /** Open sessions per worker with the idle connections open. */
  readonly idlePerWorker: readonly number[];
  readonly idleMaxMin: number;
  readonly idleOpened: number;
  /** Gateway and primary CPU per idle connection opened (accept, handshake, upstream dial). */
  readonly openGatewayUsPerConn: number;
  readonly openPrimaryUsPerConn: number;
  readonly errors: Readonly<Record<string, number>>;
  readonly commands: readonly string[];
}

function churnArgs(s: ScaleSettings): string[] {
  const warm = s.warmupMs > 0 ? ['--warmup', seconds(s.warmupMs)] : [];
  return ['--churn', '--connections', String(CHURN_CONNECTIONS), '--duration', seconds(s.durationMs), ...warm];
}

function idleArgs(s: ScaleSettings): string[] {
  return ['--idle', '--connections', String(s.connections), '--workers', '1', '--duration', IDLE_HOLD];
}

function pct(part: number, whole: number): number {
  return whole > 0 ? (100 * part) / whole : NaN;
}

function churnFigures(gw: Gateway, echoPid: number, r: BenchResult, w: CpuWindow): ChurnFigures {
  const gateway = cpuOf(w, gw.pids);
  const primary = cpuOf(w, [gw.pid]);
  const hs = r.handshakes.count;
  return {
    hsPerSec: r.handshakes.perSecond,
    gatewayUsPerHs: gateway / hs,
    primaryUsPerHs: primary / hs,
    primaryPct: pct(primary, gateway),
    workerCpuMaxMin: maxMin(gw.workerPids.map((p) => cpuOf(w, [p]))),
    hsP99Ms: r.handshakes.latency.p99,
    loadSideCores: cores(w.selfUs + cpuOf(w, [echoPid]), w),
    machineBusyPct: busyPct(w),
    otherCores: cores(w.otherUs, w),
  };
}

async function oneRound(env: ScaleEnv, s: ScaleSettings, policy: SchedPolicy, round: number): Promise<PolicyRound> {
  const echo = await startEcho(env, 'echo backend', undefined);
  try {
    const gw = await startGateway(env, `gateway-${policy}`, { workers: WORKERS, policy, backendPorts: [echo.port], mode: s.mode, cpus: undefined });
    try {
      const watched = [...gw.pids, echo.pid];
      const churn = await measuredLoad(gw.url, churnArgs(s), watched, nothing);
      await sleep(500);
      const idle = await measuredLoad<InstanceStatus>(gw.url, idleArgs(s), watched, () => gw.status());
      const perWorker = idle.atEnd.workers.map((w) => w.connections);
      const opened = idle.result.connectionsOpened;
      const errors: Record<string, number> = {};
      addErrors(errors, churn.result.errors);
      addErrors(errors, idle.result.errors);
      // A worker that ran out of descriptors (an uneven spread) and was restarted is an error too.
      addErrors(errors, { 'worker replaced': replacedWorkers(gw, idle.atEnd) });
      return {
        policy,
        round,
        ...churnFigures(gw, echo.pid, churn.result, churn.load),
        idlePerWorker: perWorker,
        idleMaxMin: maxMin(perWorker),
        idleOpened: opened,
        openGatewayUsPerConn: cpuOf(idle.connect, gw.pids) / opened,
        openPrimaryUsPerConn: cpuOf(idle.connect, [gw.pid]) / opened,
        errors,
        commands: [churn.command, idle.command],
      };
    } finally {
      await gw.stop();
    }
  } finally {
    await echo.stop();
  }
}

function line(r: PolicyRound): string {
  return (
    `  round ${r.round} ${r.policy.padEnd(4)}  churn ${formatNumber(r.hsPerSec)} hs/s, ${formatNumber(r.gatewayUsPerHs)} µs/hs ` +
    `(primary ${percent(r.primaryPct)}); idle ${count(r.idleOpened)}: ${r.idlePerWorker.map(count).join(' / ')}; errors ${errorList(r.errors)}`
  );
}

interface Row {
  readonly label: string;
  readonly value: (r: PolicyRound) => number;
  readonly fmt?: (v: number) => string;
  /** Show none ÷ rr (a figure of the gateway, not of the machine). */
  readonly ratio?: boolean;
}

const ROWS: readonly Row[] = [
  { label: 'churn: handshakes/s ↑', value: (r) => r.hsPerSec, ratio: true },
  { label: 'churn: gateway CPU per handshake, primary + workers (µs) ↓', value: (r) => r.gatewayUsPerHs, ratio: true },
  { label: 'churn: primary CPU per handshake (µs)', value: (r) => r.primaryUsPerHs, ratio: true },
  { label: "churn: primary's share of gateway CPU", value: (r) => r.primaryPct, fmt: percent },
  { label: 'churn: busiest ÷ idlest worker, CPU', value: (r) => r.workerCpuMaxMin, fmt: (v) => v.toFixed(2) },
  { label: 'churn: handshake p99 (ms) ↓', value: (r) => r.hsP99Ms, ratio: true },
  { label: 'churn: load generator + echo CPU (cores)', value: (r) => r.loadSideCores, fmt: (v) => v.toFixed(2) },
  { label: 'churn: machine busy (% of all CPUs)', value: (r) => r.machineBusyPct, fmt: percent },
  { label: "churn: other processes' CPU (cores)", value: (r) => r.otherCores, fmt: (v) => v.toFixed(2) },
  { label: 'idle open: gateway CPU per connection (µs)', value: (r) => r.openGatewayUsPerConn, ratio: true },
  { label: 'idle open: primary CPU per connection (µs)', value: (r) => r.openPrimaryUsPerConn, ratio: true },
  { label: 'idle: busiest ÷ idlest worker, connections ↓', value: (r) => r.idleMaxMin, fmt: (v) => v.toFixed(2), ratio: true },
];

function table(rounds: readonly PolicyRound[], s: ScaleSettings): string {
  const of = (p: SchedPolicy): PolicyRound[] => rounds.filter((r) => r.policy === p);
  const rows = ROWS.map((row) => {
    const [rr, none] = POLICIES.map((p) => of(p).map(row.value));
    return [row.label, spread(rr ?? [], row.fmt), spread(none ?? [], row.fmt), row.ratio === true ? ratio(median(rr ?? []), median(none ?? [])) : ''];
  });
  const perWorker = POLICIES.map((p) =>
    of(p)
      .map((r) => r.idlePerWorker.map(count).join(' / '))
      .join('; '),
  );
  rows.push([`idle ${count(s.connections)}: connections per worker, each round`, perWorker[0] ?? '', perWorker[1] ?? '', '']);
  const errs = POLICIES.map((p) => {
    const e: Record<string, number> = {};
    for (const r of of(p)) addErrors(e, r.errors);
    return errorList(e);
  });
  rows.push(['errors (all rounds)', errs[0] ?? '', errs[1] ?? '', '']);
  return markdownTable(['figure', 'rr', 'none', 'none ÷ rr'], rows);
}

/** Readings that the numbers alone do not say. */
function notes(rounds: readonly PolicyRound[]): string[] {
  const med = (p: SchedPolicy, f: (r: PolicyRound) => number): number => median(rounds.filter((r) => r.policy === p).map(f));
  const spreadOf = (p: SchedPolicy): string => {
    const v = med(p, (r) => r.idleMaxMin);
    return v === Infinity ? '∞' : v.toFixed(2);
  };
  const out = [
    `The primary's share of the gateway's CPU under churn: ${percent(med('rr', (r) => r.primaryPct))} with rr (it accepts every ` +
      `connection and passes its handle to a worker over IPC), ${percent(med('none', (r) => r.primaryPct))} with none (what remains is ` +
      'answering the admit and release messages of the instance-wide limits, one round trip per handshake).',
    `Idle connections, busiest ÷ idlest worker: rr ${spreadOf('rr')}, none ${spreadOf('none')}. Node's rr is not strict turns: ` +
      'the primary hands the next connection to a worker that has acknowledged its previous one, so a worker that is slow to be ' +
      'scheduled gets fewer.',
  ];
  if (med('none', (r) => r.idleMaxMin) > 1.5) {
    out.push(
      "With none, the kernel's choice of worker was uneven: a worker's share of the open-file limit, of memory and of CPU then " +
        'follows that choice, not the worker count.',
    );
  }
  return out;
}

export async function policyScenario(env: ScaleEnv, s: ScaleSettings, progress: Progress): Promise<ScenarioReport> {
  const rounds: PolicyRound[] = [];
  for (let round = 1; round <= s.rounds; round++) {
    // Alternate which policy goes first, so neither always runs on a machine warmed by the other.
    const order = round % 2 === 1 ? POLICIES : [...POLICIES].reverse();
    for (const policy of order) {
      const r = await oneRound(env, s, policy, round);
      rounds.push(r);
      progress(line(r));
      await sleep(500);
    }
  }
  const errors = rounds.reduce((n, r) => n + totalErrors(r.errors), 0);
  return {
    summary:
      `${WORKERS} workers, ${s.mode} mode, ${plural(s.rounds, 'round')} alternating rr and none (fresh gateway and echo backend each), ` +
      `each cell the median (min–max). churn: ${CHURN_CONNECTIONS} connect/upgrade/echo/close loops, ${seconds(s.durationMs)} measured` +
      `${s.warmupMs > 0 ? ` after ${seconds(s.warmupMs)} of warm-up` : ''}; idle: ${count(s.connections)} connections from one load process, ` +
      `held ${IDLE_HOLD}, /api/cluster read before they close. Nothing pinned.`,
    table: table(rounds, s),
    notes: notes(rounds),
    data: { rounds, commands: rounds[0]?.commands ?? [] },
    errors,
  };
}
