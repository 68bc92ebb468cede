// The results table: one row per figure, one column per proxy, each cell with its ratio to nginx.
import { SATURATED_PCT, SATURATED_ROUNDS } from './scenarios.js';
import type { OutcomeOrFailure } from './scenarios.js';

export type SuiteResults = Record<string, Record<string, OutcomeOrFailure>>;

interface MetricDef {
  readonly scenario: string;
  readonly key: string;
  readonly label: string;
  /** A latency: marked † when the load tool fell behind its schedule. */
  readonly latency?: boolean;
  /** Shown as the difference to nginx's figure (no ratio). */
  readonly diff?: boolean;
  /** A figure of the load side, not of the proxy: no ratio. */
  readonly plain?: boolean;
  /** A saturating scenario's figure of the proxy: marked ‡ when the proxy's core was below SATURATED_PCT busy. */
  readonly saturating?: boolean;
}

export const METRICS: readonly MetricDef[] = [
  { scenario: 'chatty', key: 'cpuUsPerMsg', label: 'chatty: proxy CPU per echo (µs) ↓' },
  { scenario: 'chatty', key: 'p50Ms', label: 'chatty: round trip p50 (ms) ↓', latency: true },
  { scenario: 'chatty', key: 'p99Ms', label: 'chatty: round trip p99 (ms) ↓', latency: true },
  { scenario: 'chatty', key: 'p99Ms', label: 'chatty: p99 − nginx p99 (ms) ↓', latency: true, diff: true },
  { scenario: 'chatty', key: 'loadSidePct', label: 'chatty: load side CPU (% of its core)', plain: true },
  { scenario: 'max', key: 'msgPerSec', label: 'max: echoes/s ↑' },
  { scenario: 'max', key: 'cpuUsPerMsg', label: 'max: proxy CPU per echo (µs) ↓' },
  { scenario: 'bulk', key: 'mbPerSec', label: 'bulk: echoed MB/s ↑' },
  { scenario: 'bulk', key: 'cpuMsPerMB', label: 'bulk: proxy CPU per MB (ms) ↓' },
  { scenario: 'idle', key: 'kbPerConn', label: 'idle: proxy RSS per connection (kB) ↓' },
  { scenario: 'churn', key: 'hsPerSec', label: 'churn: handshakes/s ↑' },
  { scenario: 'churn', key: 'p99HsMs', label: 'churn: handshake p99 (ms) ↓' },
  { scenario: 'churn', key: 'cpuUsPerHs', label: 'churn: proxy CPU per handshake (µs) ↓' },
  { scenario: 'handshake', key: 'p99HsMs', label: 'handshake (fixed rate): p99 (ms) ↓', latency: true },
  { scenario: 'handshake', key: 'cpuUsPerHs', label: 'handshake (fixed rate): proxy CPU per handshake (µs) ↓' },
  { scenario: 'saturate', key: 'msgPerSec', label: 'saturate: echoes/s ↑', saturating: true },
  { scenario: 'saturate', key: 'cpuUsPerMsg', label: 'saturate: proxy CPU per echo (µs) ↓', saturating: true },
  { scenario: 'saturate', key: 'p99Ms', label: 'saturate: round trip p99 (ms) ↓', saturating: true },
  { scenario: 'saturate', key: 'proxyBusyPct', label: 'saturate: proxy core busy (%)', plain: true, saturating: true },
  { scenario: 'saturate', key: 'proxyCorePct', label: "saturate: proxy's core, all its work (%)", plain: true },
  { scenario: 'saturate', key: 'proxyKernelPct', label: "saturate: proxy CPU in the kernel (% of the proxy's)", plain: true },
  { scenario: 'saturate', key: 'loadSidePct', label: 'saturate: load side CPU (% of its core)', plain: true },
  { scenario: 'saturate', key: 'loadgenUsPer', label: 'saturate: load generator CPU per echo (µs)', plain: true },
  { scenario: 'saturate', key: 'echoUsPer', label: 'saturate: echo backend CPU per echo (µs)', plain: true },
  { scenario: 'saturate', key: 'syscallsPer', label: 'saturate: load generator reads, writes and waits per echo', plain: true },
  { scenario: 'churn-sat', key: 'hsPerSec', label: 'churn-sat: handshakes/s ↑', saturating: true },
  { scenario: 'churn-sat', key: 'cpuUsPerHs', label: 'churn-sat: proxy CPU per handshake (µs) ↓', saturating: true },
  { scenario: 'churn-sat', key: 'p99HsMs', label: 'churn-sat: handshake p99 (ms) ↓', saturating: true },
  { scenario: 'churn-sat', key: 'proxyBusyPct', label: 'churn-sat: proxy core busy (%)', plain: true, saturating: true },
  { scenario: 'churn-sat', key: 'proxyCorePct', label: "churn-sat: proxy's core, all its work (%)", plain: true },
  { scenario: 'churn-sat', key: 'proxyKernelPct', label: "churn-sat: proxy CPU in the kernel (% of the proxy's)", plain: true },
  { scenario: 'churn-sat', key: 'loadSidePct', label: 'churn-sat: load side CPU (% of its core)', plain: true },
  { scenario: 'churn-sat', key: 'loadgenUsPer', label: 'churn-sat: load generator CPU per handshake (µs)', plain: true },
  { scenario: 'churn-sat', key: 'echoUsPer', label: 'churn-sat: echo backend CPU per handshake (µs)', plain: true },
  { scenario: 'churn-sat', key: 'syscallsPer', label: 'churn-sat: load generator reads, writes and waits per handshake', plain: true },
];

export const BASELINE = 'nginx';

/** Legend of the † mark. */
export const BEHIND_NOTE =
  '† the load generator fell behind its schedule (the load side, not the proxy, was saturated): ' +
  'the latency includes its own queueing; rerun with a lower --rate for latency figures.';

/** Legend of the ‡ mark. */
export const UNSATURATED_NOTE =
  `‡ fewer than ${SATURATED_ROUNDS} rounds (in a shorter run, not every round) had the proxy's core ${SATURATED_PCT}% busy or more; in the ` +
  "others something else was the limit (the load side, or other work on the proxy's core: see the rows below and the warnings in the " +
  "JSON). The figures are of the rounds at saturation when there were any; with none, the throughput is not the proxy's and the CPU " +
  'figures come from a lighter load. Targets on it are not judged.';

export function formatNumber(v: number): string {
  const abs = Math.abs(v);
  if (abs >= 1000) return Math.round(v).toLocaleString('en-US');
  if (abs >= 100) return v.toFixed(0);
  if (abs >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

/** The chatty run of `proxy` fell behind its schedule. */
export function behind(results: SuiteResults, proxy: string, scenario: string): boolean {
  const o = results[proxy]?.[scenario];
  return o !== undefined && !('failed' in o) && o.behind;
}

/**
 * Whether a saturating scenario's figures of `proxy` come from enough rounds at saturation to
 * judge a target on (SATURATED_ROUNDS, or every round of a shorter run).
 */
export function saturatedEnough(results: SuiteResults, proxy: string, scenario: string): boolean {
  const n = figure(results, proxy, scenario, 'saturatedRounds');
  const of = figure(results, proxy, scenario, 'rounds');
  if (typeof n !== 'number' || typeof of !== 'number') {
    // One round, not combined: it counts when it saturated.
    const busy = figure(results, proxy, scenario, 'proxyBusyPct');
    return typeof busy !== 'number' || busy >= SATURATED_PCT;
  }
  return n >= Math.min(SATURATED_ROUNDS, of);
}

/** A figure: undefined when the scenario did not run or failed, null when it does not apply. */
export function figure(results: SuiteResults, proxy: string, scenario: string, key: string): number | null | undefined {
  const o = results[proxy]?.[scenario];
  if (o === undefined || 'failed' in o) return undefined;
  return o.figures[key] ?? null;
}

function errorCount(results: SuiteResults, proxy: string): number | undefined {
  const row = results[proxy];
  if (row === undefined) return undefined;
  let n = 0;
  for (const o of Object.values(row)) if (!('failed' in o)) for (const c of Object.values(o.errors)) n += c;
  return n;
}

function cell(results: SuiteResults, proxy: string, m: MetricDef): string {
  const v = figure(results, proxy, m.scenario, m.key);
  if (v === undefined || v === null) return '–';
  const base = figure(results, BASELINE, m.scenario, m.key);
  const late = m.latency === true && (behind(results, proxy, m.scenario) || (m.diff === true && behind(results, BASELINE, m.scenario)));
  const mark = `${late ? ' †' : ''}${m.saturating === true && !saturatedEnough(results, proxy, m.scenario) ? ' ‡' : ''}`;
  if (m.diff === true) {
    if (typeof base !== 'number') return '–';
    const d = v - base;
    return `${d >= 0 ? '+' : '−'}${formatNumber(Math.abs(d))}${mark}`;
  }
  const ratio = m.plain !== true && typeof base === 'number' && base > 0 ? ` (${(v / base).toFixed(2)}×)` : '';
  return `${formatNumber(v)}${mark}${ratio}`;
}

/** Markdown table; `proxies` in column order. Cells: value (ratio to nginx); "–" where a figure does not apply; † see BEHIND_NOTE. */
export function markdownTable(results: SuiteResults, proxies: readonly string[]): string {
  const metrics = METRICS.filter((m) => proxies.some((p) => figure(results, p, m.scenario, m.key) !== undefined));
  const lines = [`| figure | ${proxies.join(' | ')} |`, `|---|${proxies.map(() => '---:').join('|')}|`];
  for (const m of metrics) {
    if (m.diff === true && typeof figure(results, BASELINE, m.scenario, m.key) !== 'number') continue;
    lines.push(`| ${m.label} | ${proxies.map((p) => cell(results, p, m)).join(' | ')} |`);
  }
  lines.push(`| errors counted (all scenarios) | ${proxies.map((p) => String(errorCount(results, p) ?? '–')).join(' | ')} |`);
  return lines.join('\n');
}
