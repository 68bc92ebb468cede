// The results table: one row per figure, one column per proxy, each cell with its ratio to nginx.
import type { ScenarioOutcome } from './scenarios.js';

export type SuiteResults = Record<string, Record<string, ScenarioOutcome | { readonly failed: string }>>;

interface MetricDef {
  readonly scenario: string;
  readonly key: string;
  readonly label: string;
  /** A latency: marked † when the load tool fell behind its schedule. */
  readonly latency?: boolean;
}

export const METRICS: readonly MetricDef[] = [
  { scenario: 'chatty', key: 'cpuUsPerMsg', label: 'chatty: proxy CPU per echo (µs) ↓' },
  { scenario: 'chatty', key: 'p50Ms', label: 'chatty: round trip p50 (ms) ↓', latency: true },
  { scenario: 'chatty', key: 'p99Ms', label: 'chatty: round trip p99 (ms) ↓', latency: true },
  { scenario: 'max', key: 'msgPerSec', label: 'max: echoes/s ↑' },
  { scenario: 'max', key: 'cpuUsPerMsg', label: 'max: proxy CPU per echo (µs) ↓' },
  { scenario: 'bulk', key: 'mbPerSec', label: 'bulk: echoed MB/s ↑' },
  { scenario: 'bulk', key: 'cpuMsPerMB', label: 'bulk: proxy CPU per MB (ms) ↓' },
  { scenario: 'idle', key: 'kibPerConn', label: 'idle: proxy RSS per connection (KiB) ↓' },
  { scenario: 'churn', key: 'hsPerSec', label: 'churn: handshakes/s ↑' },
  { scenario: 'churn', key: 'p99HsMs', label: 'churn: handshake p99 (ms) ↓' },
  { scenario: 'churn', key: 'cpuUsPerHs', label: 'churn: proxy CPU per handshake (µs) ↓' },
];

const BASELINE = 'nginx';

/** Legend of the † mark. */
export const BEHIND_NOTE =
  '† the load generator fell behind its schedule (the load side, not the proxy, was saturated): ' +
  'the latency includes its own queueing; rerun with a lower --rate for latency figures.';

export function formatNumber(v: number): string {
  const abs = Math.abs(v);
  if (abs >= 1000) return Math.round(v).toLocaleString('en-US');
  if (abs >= 100) return v.toFixed(0);
  if (abs >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function behind(results: SuiteResults, proxy: string, m: MetricDef): boolean {
  const o = results[proxy]?.[m.scenario];
  return m.latency === true && o !== undefined && !('failed' in o) && o.behind;
}

function figure(results: SuiteResults, proxy: string, m: MetricDef): number | null | undefined {
  const o = results[proxy]?.[m.scenario];
  if (o === undefined || 'failed' in o) return undefined;
  return o.figures[m.key] ?? null;
}

function errorCount(results: SuiteResults, proxy: string): number | undefined {
  const row = results[proxy];
  if (row === undefined) return undefined;
  let n = 0;
  for (const o of Object.values(row)) if (!('failed' in o)) for (const c of Object.values(o.errors)) n += c;
  return n;
}

/** Markdown table; `proxies` in column order. Cells: value (ratio to nginx); "–" where a figure does not apply; † see BEHIND_NOTE. */
export function markdownTable(results: SuiteResults, proxies: readonly string[]): string {
  const metrics = METRICS.filter((m) => proxies.some((p) => figure(results, p, m) !== undefined));
  const lines = [`| figure | ${proxies.join(' | ')} |`, `|---|${proxies.map(() => '---:').join('|')}|`];
  for (const m of metrics) {
    const base = figure(results, BASELINE, m);
    const cells = proxies.map((p) => {
      const v = figure(results, p, m);
      if (v === undefined || v === null) return '–';
      const ratio = typeof base === 'number' && base > 0 ? ` (${(v / base).toFixed(2)}×)` : '';
      return `${formatNumber(v)}${behind(results, p, m) ? ' †' : ''}${ratio}`;
    });
    lines.push(`| ${m.label} | ${cells.join(' | ')} |`);
  }
  lines.push(`| errors counted (all scenarios) | ${proxies.map((p) => String(errorCount(results, p) ?? '–')).join(' | ')} |`);
  return lines.join('\n');
}
