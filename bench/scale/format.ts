// Numbers and markdown tables for the scale reports.
import { formatNumber } from '../suite/table.js';

export { formatNumber };

/** The median: on these shared machines one run in three is often off by 20%, and a median drops it. */
export function median(values: readonly number[]): number {
  const v = [...values].sort((x, y) => x - y);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

/** "median (min–max)" of the rounds, so the spread is visible next to the figure; "–" without values. */
export function spread(values: readonly number[], fmt: (v: number) => string = formatNumber): string {
  const v = values.filter((x) => Number.isFinite(x));
  if (v.length === 0) return '–';
  if (v.length === 1) return fmt(v[0] as number);
  return `${fmt(median(v))} (${fmt(Math.min(...v))}–${fmt(Math.max(...v))})`;
}

/** b ÷ a as "1.23×", or "–" when either is missing or a is 0. */
export function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && a !== 0 ? `${(b / a).toFixed(2)}×` : '–';
}

export function percent(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(v >= 10 ? 0 : 1)}%` : '–';
}

/** "1 round", "3 rounds". */
export function plural(n: number, word: string): string {
  return `${count(n)} ${word}${n === 1 ? '' : 's'}`;
}

/** Whole numbers with thousands separators. */
export function count(v: number): string {
  return Math.round(v).toLocaleString('en-US');
}

/** Largest over smallest (≥ 1; Infinity when one is 0 and another is not). */
export function maxMin(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return hi === 0 ? 1 : lo === 0 ? Infinity : hi / lo;
}

/** Errors by kind as "kind: n, …", or "0". */
export function errorList(errors: Readonly<Record<string, number>>): string {
  const parts = Object.entries(errors)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k}: ${count(n)}`);
  return parts.length === 0 ? '0' : parts.join(', ');
}

export function addErrors(into: Record<string, number>, from: Readonly<Record<string, number>>): void {
  for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
}

export function totalErrors(errors: Readonly<Record<string, number>>): number {
  return Object.values(errors).reduce((a, b) => a + b, 0);
}

export function markdownTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const align = header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [header, align, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}
