import type { LiveSession } from '../observability/metrics.js';
import type { ConnectionInfo, ConnectionPage, ConnectionQuery } from './stats.js';

/** What the connection list needs of a session past its 101. */
export interface ListedSession extends LiveSession {
  readonly id: number;
  readonly client: string;
  readonly subprotocol: string | undefined;
  /** "http/1.1", or "h2" for a WebSocket over an HTTP/2 stream. */
  readonly protocol: string;
  /** Date.now() at the 101. */
  readonly relayedAt: number;
  readonly relayMode: 'tunnel' | 'inspect';
}

export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

/** Close codes an operator may send: the registered ones a server sends, and the application range. */
export function validCloseCode(code: number): boolean {
  return [1000, 1001, 1008, 1011, 1012, 1013].includes(code) || (Number.isInteger(code) && code >= 3000 && code <= 4999);
}

/** The query of GET /api/connections, or what is wrong with it. */
export function parseConnectionQuery(params: URLSearchParams): ConnectionQuery | string {
  const limitText = params.get('limit');
  const limit = limitText === null ? DEFAULT_PAGE : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) return `limit: must be an integer from 1 to ${MAX_PAGE}`;
  const after = params.get('after') ?? undefined;
  if (after !== undefined && splitId(after) === undefined) return 'after: must be a connection id';
  const text = (name: string): string | undefined => params.get(name) ?? undefined;
  return { route: text('route'), upstream: text('upstream'), target: text('target'), client: text('client'), limit, after };
}

/** "123" → [0, 123] (a single process); "2.123" → [2, 123] (worker 2). */
export function splitId(id: string): [number, number] | undefined {
  const m = /^(?:(\d{1,4})\.)?(\d{1,15})$/.exec(id);
  if (m === null) return undefined;
  return [m[1] === undefined ? 0 : Number(m[1]), Number(m[2])];
}

/**
 * One process's page of its relayed sessions (in the order they began),
 * ids prefixed with `worker` when it is a cluster worker's. `after` is the
 * session number to start after.
 */
export function listConnections(sessions: Iterable<ListedSession>, q: ConnectionQuery, worker: number | undefined, after = 0): ConnectionPage {
  const now = Date.now();
  const page: ConnectionInfo[] = [];
  let total = 0;
  let more = false;
  for (const s of sessions) {
    if (!matches(s, q)) continue;
    total++;
    if (s.id <= after) continue;
    if (page.length === q.limit) {
      more = true;
      continue;
    }
    page.push(info(s, worker, now));
  }
  return { connections: page, total, next: more ? page.at(-1)!.id : null };
}

/** The workers' pages (in worker order, each after the cursor) as one. */
export function mergePages(pages: readonly ConnectionPage[], limit: number): ConnectionPage {
  const all = pages.flatMap((p) => p.connections);
  const total = pages.reduce((n, p) => n + p.total, 0);
  const more = all.length > limit || pages.some((p) => p.next !== null);
  const connections = all.slice(0, limit);
  return { connections, total, next: more && connections.length > 0 ? connections.at(-1)!.id : null };
}

function matches(s: ListedSession, q: ConnectionQuery): boolean {
  return (
    (q.route === undefined || s.route === q.route) &&
    (q.upstream === undefined || s.upstream === q.upstream) &&
    (q.target === undefined || s.target === q.target) &&
    (q.client === undefined || s.client === q.client)
  );
}

function info(s: ListedSession, worker: number | undefined, now: number): ConnectionInfo {
  return {
    id: worker === undefined ? String(s.id) : `${worker}.${s.id}`,
    client: s.client,
    route: s.route,
    upstream: s.upstream,
    target: s.target,
    subprotocol: s.subprotocol ?? null,
    protocol: s.protocol,
    startedAt: new Date(s.relayedAt).toISOString(),
    ageSeconds: Math.round((now - s.relayedAt) / 100) / 10,
    relay: s.relayMode,
    bytes: { upstream: s.relay.bytesFromClient, downstream: s.relay.bytesFromUpstream },
    messages: { upstream: s.relay.messagesFromClient, downstream: s.relay.messagesFromUpstream },
  };
}
