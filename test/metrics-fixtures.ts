import type { Gateway } from '../src/index.js';

/** One scrape of /metrics: series → value, and the raw text. */
export interface Scrape {
  readonly text: string;
  readonly contentType: string;
  /** The value of the series with exactly these labels; undefined when there is none. */
  get(name: string, labels?: Record<string, string>): number | undefined;
  /** The sum over every series of `name` whose labels include `labels`. */
  sum(name: string, labels?: Record<string, string>): number;
  /** Every label set of `name`. */
  series(name: string): Record<string, string>[];
}

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

const LINE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the Prometheus text format (what a scrape reads; enough of it for these tests). */
export function parseMetrics(text: string, contentType = ''): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (m === null) throw new Error(`not a metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  const includes = (s: Sample, want: Record<string, string>): boolean => Object.entries(want).every(([k, v]) => s.labels[k] === v);
  return {
    text,
    contentType,
    get(name, labels = {}) {
      const size = Object.keys(labels).length;
      return samples.find((s) => s.name === name && Object.keys(s.labels).length === size && includes(s, labels))?.value;
    },
    sum(name, labels = {}) {
      return samples.filter((s) => s.name === name && includes(s, labels)).reduce((n, s) => n + s.value, 0);
    },
    series(name) {
      return samples.filter((s) => s.name === name).map((s) => s.labels);
    },
  };
}

/** GET /metrics on an admin address. */
export async function scrapeAt(port: number): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${await res.text()}`);
  return parseMetrics(await res.text(), res.headers.get('content-type') ?? '');
}

/** GET /metrics on an embedded gateway's admin listener. */
export function scrape(gw: Gateway): Promise<Scrape> {
  return scrapeAt(gw.adminAddress!.port);
}

/** An admin API call with JSON in and out. */
export async function adminJson<T = Record<string, unknown>>(
  port: number,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: (text === '' ? undefined : JSON.parse(text)) as T };
}
