// The project's performance targets, checked against one run's figures: each
// is a ratio to nginx measured in the same run (or an absolute memory figure),
// never a comparison of absolute figures across runs or machines.
import { SATURATED_PCT, SATURATED_ROUNDS } from './scenarios.js';
import { BASELINE, behind, figure, formatNumber, saturatedEnough } from './table.js';
import type { SuiteResults } from './table.js';

export const WSGATE_MODES = ['wsgate-tunnel', 'wsgate-inspect'] as const;
type Mode = (typeof WSGATE_MODES)[number];

interface TargetDef {
  readonly label: string;
  readonly scenario: string;
  readonly key: string;
  /** ratio: figure ÷ nginx's ≤ limit; atLeast: figure ÷ nginx's ≥ limit; diff: figure − nginx's ≤ limit; absolute: figure ≤ limit. */
  readonly kind: 'ratio' | 'atLeast' | 'diff' | 'absolute';
  readonly limit: (mode: Mode) => number;
  readonly unit: string;
  /** Cannot be judged when the load side fell behind its schedule (a latency, or work not offered as planned). */
  readonly scheduled?: boolean;
  /** A saturating scenario's: cannot be judged when its proxy's or nginx's core was below SATURATED_PCT busy. */
  readonly saturated?: boolean;
}

export const TARGETS: readonly TargetDef[] = [
  {
    label: 'chatty: CPU per message ≤ 1.05× nginx (tunnel), ≤ 1.15× (inspect)',
    scenario: 'chatty',
    key: 'cpuUsPerMsg',
    kind: 'ratio',
    limit: (mode) => (mode === 'wsgate-tunnel' ? 1.05 : 1.15),
    unit: '×',
  },
  { label: 'chatty: p99 ≤ nginx p99 + 1 ms', scenario: 'chatty', key: 'p99Ms', kind: 'diff', limit: () => 1, unit: ' ms', scheduled: true },
  { label: 'closed loop (max): CPU per message ≤ 1.5× nginx', scenario: 'max', key: 'cpuUsPerMsg', kind: 'ratio', limit: () => 1.5, unit: '×' },
  {
    label: 'handshake (fixed rate): CPU per handshake ≤ 2× nginx',
    scenario: 'handshake',
    key: 'cpuUsPerHs',
    kind: 'ratio',
    limit: () => 2,
    unit: '×',
    scheduled: true,
  },
  {
    label: 'idle: RSS per proxied connection ≤ 3 kB (tunnel), ≤ 6 kB (inspect)',
    scenario: 'idle',
    key: 'kbPerConn',
    kind: 'absolute',
    limit: (mode) => (mode === 'wsgate-tunnel' ? 3 : 6),
    unit: ' kB',
  },
  {
    label: 'saturate: CPU per message ≤ 1.0× nginx (tunnel), ≤ 1.1× (inspect)',
    scenario: 'saturate',
    key: 'cpuUsPerMsg',
    kind: 'ratio',
    limit: (mode) => (mode === 'wsgate-tunnel' ? 1.0 : 1.1),
    unit: '×',
    saturated: true,
  },
  { label: 'saturate: messages/s ≥ 0.9× nginx', scenario: 'saturate', key: 'msgPerSec', kind: 'atLeast', limit: () => 0.9, unit: '×', saturated: true },
  {
    label: 'churn-sat: CPU per handshake ≤ 1.5× nginx',
    scenario: 'churn-sat',
    key: 'cpuUsPerHs',
    kind: 'ratio',
    limit: () => 1.5,
    unit: '×',
    saturated: true,
  },
  { label: 'churn-sat: handshakes/s ≥ 0.65× nginx', scenario: 'churn-sat', key: 'hsPerSec', kind: 'atLeast', limit: () => 0.65, unit: '×', saturated: true },
];

export interface TargetVerdict {
  readonly target: string;
  readonly proxy: Mode;
  /** The compared value (ratio, difference or figure); null when it could not be judged. */
  readonly value: number | null;
  readonly limit: number;
  /** true met, false missed, null not measured (a run failed or was skipped, or the load side fell behind). */
  readonly met: boolean | null;
  readonly note?: string;
}

/** Why a saturating target is not judged: per proxy, its rounds at saturation, or its core's share when it had none to count. */
function shortOfSaturation(results: SuiteResults, proxies: readonly string[], scenario: string): string {
  const each = proxies.map((p) => {
    const n = figure(results, p, scenario, 'saturatedRounds');
    const of = figure(results, p, scenario, 'rounds');
    if (typeof n === 'number' && typeof of === 'number' && n > 0) return `${p} ${n} of ${of} rounds`;
    const busy = figure(results, p, scenario, 'proxyBusyPct');
    return `${p} no round, ${typeof busy === 'number' ? `${formatNumber(busy)}% busy` : 'not measured'}`;
  });
  return `proxy core ≥ ${SATURATED_PCT}% busy in too few rounds (${each.join(', ')}; ${SATURATED_ROUNDS} needed): not saturated`;
}

function judge(results: SuiteResults, t: TargetDef, mode: Mode): TargetVerdict {
  const limit = t.limit(mode);
  const none = (note: string): TargetVerdict => ({ target: t.label, proxy: mode, value: null, limit, met: null, note });
  const v = figure(results, mode, t.scenario, t.key);
  if (typeof v !== 'number') return none('not measured');
  let value = v;
  if (t.kind !== 'absolute') {
    const base = figure(results, BASELINE, t.scenario, t.key);
    if (typeof base !== 'number' || base <= 0) return none('no nginx figure');
    value = t.kind === 'diff' ? v - base : v / base;
  }
  if (t.scheduled === true && (behind(results, mode, t.scenario) || behind(results, BASELINE, t.scenario))) {
    return { target: t.label, proxy: mode, value, limit, met: null, note: 'load side fell behind its schedule' };
  }
  if (t.saturated === true) {
    const short = [mode, BASELINE].filter((p) => !saturatedEnough(results, p, t.scenario));
    if (short.length > 0) return { target: t.label, proxy: mode, value, limit, met: null, note: shortOfSaturation(results, short, t.scenario) };
  }
  return { target: t.label, proxy: mode, value, limit, met: t.kind === 'atLeast' ? value >= limit : value <= limit };
}

export function judgeTargets(results: SuiteResults): TargetVerdict[] {
  return TARGETS.flatMap((t) => WSGATE_MODES.map((mode) => judge(results, t, mode)));
}

function show(v: TargetVerdict, t: TargetDef): string {
  if (v.value === null) return `– (${v.note ?? 'not measured'})`;
  const value =
    t.kind === 'diff' ? `${v.value >= 0 ? '+' : '−'}${formatNumber(Math.abs(v.value))}` : t.kind === 'absolute' ? formatNumber(v.value) : v.value.toFixed(2);
  const mark = v.met === null ? `? (${v.note ?? ''})` : v.met ? '✓' : '✗';
  return `${value}${t.unit} ${mark}`;
}

/** A small table: one row per target, one column per wsgate mode, ✓ met / ✗ missed / ? not judged. */
export function targetsMarkdown(verdicts: readonly TargetVerdict[]): string {
  const lines = [`| target (vs nginx in this run) | ${WSGATE_MODES.join(' | ')} |`, `|---|${WSGATE_MODES.map(() => '---:').join('|')}|`];
  for (const t of TARGETS) {
    const cells = WSGATE_MODES.map((mode) => {
      const v = verdicts.find((x) => x.target === t.label && x.proxy === mode);
      return v === undefined ? '–' : show(v, t);
    });
    lines.push(`| ${t.label} | ${cells.join(' | ')} |`);
  }
  const met = verdicts.filter((v) => v.met === true).length;
  const judged = verdicts.filter((v) => v.met !== null).length;
  lines.push('', `${met} of ${judged} judged targets met${judged < verdicts.length ? ` (${verdicts.length - judged} not judged)` : ''}.`);
  return lines.join('\n');
}
