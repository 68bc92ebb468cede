import type { HandshakeOutcome } from '../observability/metric-table.js';
import type { UpstreamStatus } from './status.js';

// What the admin API shows of live traffic: GET /api/stats (and its feed,
// GET /api/stats/stream, one snapshot a second as server-sent events), and
// GET /api/connections. Totals are cumulative since start, as in /metrics:
// a viewer computes rates from two snapshots (the dashboard does).

export interface StatsSnapshot {
  /** When the snapshot was taken, ms since the epoch. */
  readonly time: number;
  readonly uptimeSeconds: number;
  /** admin.metrics: false leaves the totals at zero (no counting at all). */
  readonly metrics: boolean;
  /** Processes serving traffic (cluster workers, or 1). */
  readonly workers: number;
  readonly connections: {
    /** Relayed now (past the 101). */
    readonly active: number;
    readonly byRoute: Readonly<Record<string, number>>;
    /** Relayed since start. */
    readonly total: number;
  };
  /** Handshakes since start by outcome; every outcome but `accepted` is a rejection. */
  readonly handshakes: Readonly<Record<HandshakeOutcome, number>>;
  readonly messages: Direction;
  readonly bytes: Direction;
  /** Ended connections since start by close code ("none": no Close frame). */
  readonly closes: Readonly<Record<string, number>>;
  /** wsgate_handshake_duration_seconds: cumulative counts per upper bound (seconds), the last one +Inf. */
  readonly handshakeDuration: {
    readonly buckets: readonly number[];
    readonly counts: readonly number[];
    readonly count: number;
    readonly sum: number;
  };
  readonly upstreams: readonly UpstreamStatus[];
}

/** upstream: client to backend; downstream: backend to client. */
export interface Direction {
  readonly upstream: number;
  readonly downstream: number;
}

/** One relayed connection in GET /api/connections. */
export interface ConnectionInfo {
  /** "123" in a single process, "2.123" for worker 2's connection 123. */
  readonly id: string;
  readonly client: string;
  readonly route: string;
  readonly upstream: string;
  /** The target's URL. */
  readonly target: string;
  readonly subprotocol: string | null;
  /** "http/1.1", or "h2" (RFC 8441). */
  readonly protocol: string;
  readonly startedAt: string;
  readonly ageSeconds: number;
  readonly relay: 'tunnel' | 'inspect';
  readonly bytes: Direction;
  /** Zero in tunnel mode (it does not see messages). */
  readonly messages: Direction;
}

/** GET /api/connections?route=&upstream=&target=&client=&limit=&after= */
export interface ConnectionQuery {
  readonly route?: string | undefined;
  readonly upstream?: string | undefined;
  readonly target?: string | undefined;
  /** Exact client address. */
  readonly client?: string | undefined;
  /** At most this many (default 100, at most 1000). */
  readonly limit: number;
  /** Only connections opened after this one (the `next` of the previous page). */
  readonly after?: string | undefined;
}

export interface ConnectionPage {
  readonly connections: readonly ConnectionInfo[];
  /** Connections matching the filters, across pages. */
  readonly total: number;
  /** Pass as `after` for the next page; null on the last. */
  readonly next: string | null;
}
