// The gateway's admin API as the soak uses it: JSON calls, the drain and
// reload calls, and the few Prometheus series it reads from /metrics.

const TIMEOUT_MS = 10_000;

export class Admin {
  readonly #base: string;

  constructor(port: number) {
    this.#base = `http://127.0.0.1:${port}`;
  }

  async json<T>(path: string, method: 'GET' | 'POST' = 'GET'): Promise<{ status: number; body: T }> {
    const res = await fetch(`${this.#base}${path}`, { method, signal: AbortSignal.timeout(TIMEOUT_MS) });
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`${method} ${path} answered ${res.status} with something that is not JSON: ${text.slice(0, 200)}`);
    }
    return { status: res.status, body: body as T };
  }

  async metrics(): Promise<Metrics> {
    const res = await fetch(`${this.#base}/metrics`, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`);
    return new Metrics(await res.text());
  }

  /** Relayed connections matching a filter (`client=…`, `target=…`): the `total` of one small page. */
  async connections(filter: Record<string, string>): Promise<number> {
    const q = new URLSearchParams({ ...filter, limit: '1' });
    const { status, body } = await this.json<{ total?: number }>(`/api/connections?${q}`);
    if (status !== 200 || typeof body.total !== 'number') throw new Error(`GET /api/connections?${q} answered ${status}`);
    return body.total;
  }
}

/** A /metrics answer, read series by series (the text format: `name{labels} value`). */
export class Metrics {
  readonly #lines: readonly string[];

  constructor(text: string) {
    this.#lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  }

  /** The value of a series without labels, or of the one whose labels contain `labels` (e.g. `result="sent"`); NaN when absent. */
  value(name: string, labels?: string): number {
    for (const line of this.#lines) {
      if (!line.startsWith(name)) continue;
      const rest = line.slice(name.length);
      if (labels === undefined ? !rest.startsWith(' ') : !(rest.startsWith('{') && rest.slice(0, rest.indexOf('}')).includes(labels))) continue;
      return Number(rest.slice(rest.lastIndexOf(' ') + 1));
    }
    return NaN;
  }
}
