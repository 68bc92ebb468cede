// The soak's figures: rows every 30 s, least-squares slopes over the last
// minutes, the checks, and the markdown that goes into bench/RESULTS.md.
import { count, formatNumber, markdownTable } from '../scale/format.js';
import type { CloseAccounting, LogAccounting } from './accounting.js';
import type { FaultRecord } from './faults.js';
import type { Sample } from './sampler.js';

export interface Row {
  readonly t: number;
  readonly rssMiB: number;
  readonly heapUsedMiB: number;
  readonly handles: number;
  readonly resources: number;
  readonly fds: number;
  readonly sessions: number;
  /** The worst event-loop lag p99 of the samples in the row's interval. */
  readonly lagP99Ms: number;
  /** The gateway's CPU over the interval, % of one core. */
  readonly cpuPct: number;
  readonly messagesPerS: number;
  readonly handshakesPerS: number;
  readonly faults: readonly string[];
}

const SHORT: Readonly<Record<FaultRecord['kind'], string>> = {
  reload: 'reload',
  drain: 'drain',
  undrain: 'undrain',
  kill: 'kill',
  restart: 'restart',
  vanish: 'freeze',
  'vanish reaped': 'reaped+SIGKILL',
};

/** One row per `everyS` seconds of load: the sample nearest each mark, rates and the worst lag over the interval. */
export function rows(samples: readonly Sample[], faults: readonly FaultRecord[], everyS: number): Row[] {
  const load = samples.filter((s) => s.t >= 0);
  const out: Row[] = [];
  let prev: Sample | undefined = load[0];
  if (prev === undefined) return out;
  const last = load[load.length - 1] as Sample;
  for (let mark = everyS; mark <= last.t + everyS / 2; mark += everyS) {
    const inInterval = load.filter((s) => s.t > (prev as Sample).t && s.t <= mark + 0.5);
    const s = inInterval[inInterval.length - 1];
    if (s === undefined) continue;
    const p = prev;
    const dt = s.t - p.t;
    out.push({
      t: s.t,
      rssMiB: s.rssMiB,
      heapUsedMiB: s.heapUsedMiB,
      handles: s.handles,
      resources: s.resources,
      fds: s.fds,
      sessions: s.sessions,
      lagP99Ms: Math.max(...inInterval.map((x) => x.lagP99Ms)),
      cpuPct: (100 * (s.cpuSeconds - p.cpuSeconds)) / dt,
      messagesPerS: (s.messages - p.messages) / dt,
      handshakesPerS: (s.accepted - p.accepted) / dt,
      faults: faults.filter((f) => f.t > p.t && f.t <= s.t).map((f) => SHORT[f.kind] + (f.ok ? '' : ' ✗')),
    });
    prev = s;
  }
  return out;
}

export interface Slope {
  readonly metric: string;
  readonly unit: string;
  readonly samples: number;
  readonly windowMin: number;
  readonly mean: number;
  /** Least-squares slope, units per minute, and its standard error. */
  readonly perMin: number;
  readonly stdErr: number;
  /** slope × window: the change the trend makes over the window, and that as a share of the mean. */
  readonly change: number;
  readonly changePct: number;
  readonly flat: boolean;
  /** Judged (a check) or only reported. */
  readonly judged: boolean;
}

export function slope(
  metric: string,
  unit: string,
  points: ReadonlyArray<readonly [number, number]>,
  windowMin: number,
  flatPct: number,
  judged: boolean,
): Slope {
  const pts = points.filter(([, y]) => Number.isFinite(y));
  const n = pts.length;
  const mx = pts.reduce((a, [x]) => a + x, 0) / n;
  const my = pts.reduce((a, [, y]) => a + y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (const [x, y] of pts) {
    sxx += (x - mx) ** 2;
    sxy += (x - mx) * (y - my);
  }
  const b = sxy / sxx;
  const residual = pts.reduce((a, [x, y]) => a + (y - (my + b * (x - mx))) ** 2, 0);
  const stdErr = n > 2 ? Math.sqrt(residual / (n - 2) / sxx) : NaN;
  const change = b * windowMin;
  const changePct = (100 * Math.abs(change)) / Math.abs(my);
  return { metric, unit, samples: n, windowMin, mean: my, perMin: b, stdErr, change, changePct, flat: n >= 3 && changePct < flatPct, judged };
}

export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

const fmt = (v: number, digits = 1): string => (Number.isFinite(v) ? v.toFixed(digits) : '–');

function clock(t: number): string {
  const s = Math.round(t);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function rowsTable(r: readonly Row[]): string {
  return markdownTable(
    [
      'time',
      'RSS MiB',
      'heap used MiB',
      'handles / resources',
      'fds',
      'sessions',
      'loop lag p99 ms',
      'CPU %',
      'msgs/s',
      'handshakes/s',
      'faults in the interval',
    ],
    r.map((x) => [
      clock(x.t),
      fmt(x.rssMiB),
      fmt(x.heapUsedMiB),
      `${count(x.handles)} / ${count(x.resources)}`,
      count(x.fds),
      count(x.sessions),
      fmt(x.lagP99Ms, 2),
      fmt(x.cpuPct, 0),
      count(x.messagesPerS),
      fmt(x.handshakesPerS, 1),
      x.faults.join(', ') || '–',
    ]),
  );
}

export function slopesTable(s: readonly Slope[], flatPct: number): string {
  return markdownTable(
    ['metric', 'mean', 'slope per min (± s.e.)', `change over the window`, '% of mean', `flat (< ${flatPct}%)`],
    s.map((x) => [
      `${x.metric} (${x.unit})`,
      formatNumber(x.mean),
      `${x.perMin >= 0 ? '+' : ''}${formatNumber(x.perMin)} (± ${formatNumber(x.stdErr)})`,
      `${x.change >= 0 ? '+' : ''}${formatNumber(x.change)}`,
      `${x.changePct.toFixed(2)}%`,
      x.judged ? (x.flat ? '✓' : '✗') : `${x.flat ? 'yes' : 'no'} (not judged)`,
    ]),
  );
}

export function checksTable(checks: readonly Check[]): string {
  return markdownTable(
    ['check', 'result', 'detail'],
    checks.map((c) => [c.name, c.ok ? '✓' : '✗', c.detail]),
  );
}

export function closesTable(a: CloseAccounting): string {
  if (a.rows.length === 0) return '(no client saw a close it did not ask for)';
  return markdownTable(
    ['explained by', 'load', 'what the client saw', 'while', 'count', 'seen (s)'],
    a.rows.map((r) => [r.explanation === 'unexpected' ? '**unexpected**' : r.explanation, r.role, r.kind, r.context, count(r.n), `${r.firstT}–${r.lastT}`]),
  );
}

export function faultTable(a: CloseAccounting): string {
  if (a.faults.length === 0) return '(no drain or kill in this run)';
  return markdownTable(
    ['fault', 'at (s)', 'sessions on the target', 'closes it explains', 'bound', 'excess'],
    a.faults.map((f) => [f.kind, fmt(f.t, 0), count(f.sessions), count(f.explained), count(f.bound), f.excess === 0 ? '0' : `**${count(f.excess)}**`]),
  );
}

export function logTable(l: LogAccounting): string {
  const shown = l.rows.filter((r) => r.level !== 'info' || r.lines > 0);
  return markdownTable(
    ['level', 'msg', 'lines', 'explained', 'by'],
    shown.map((r) => [
      r.level,
      r.msg,
      count(r.lines),
      r.level === 'info' ? '–' : count(r.explained),
      r.by || (r.level === 'info' ? '' : r.explained < r.lines ? '**unexplained**' : ''),
    ]),
  );
}

export function gatewayClosesTable(first: Sample, last: Sample): string {
  const codes = new Set([...Object.keys(first.closes), ...Object.keys(last.closes)]);
  const rowsOut = [...codes]
    .map((c) => [c, (last.closes[c] ?? 0) - (first.closes[c] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([c, n]) => [c, count(n)]);
  return rowsOut.length === 0 ? '(none)' : markdownTable(['close code (gateway, wsgate_closes_total)', 'sessions'], rowsOut);
}
