// Messages between the soak and its load processes (load-worker.ts).

/**
 * chatty: connections that send small messages at a fixed rate and check each echo (a share of
 * them quiet: they only answer the gateway's pings), reconnecting when closed; the vanishing
 * processes run this role too, until they are stopped. churn: connect, upgrade, one echo, close,
 * at a fixed rate. slow: connections to the flooding backend that stop reading now and then.
 */
export type LoadRole = 'chatty' | 'churn' | 'slow';

export interface LoadSpec {
  readonly role: LoadRole;
  /** The gateway's URL, ws://127.0.0.1:PORT/ (slow clients add their path). */
  readonly url: string;
  /** This process's own source address (its own ephemeral ports), or undefined. */
  readonly localAddress: string | undefined;
  /** chatty, slow: connections held. */
  readonly connections: number;
  /** chatty: new connections per second, at the start and when reconnecting. */
  readonly ramp: number;
  /** chatty: messages per second per (non-quiet) connection. */
  readonly ratePerConnection: number;
  /** chatty: the share of connections that never send. */
  readonly quietShare: number;
  /** chatty, churn: message size, bytes. */
  readonly size: number;
  /** churn: cycles started per second, and at most this many at once. */
  readonly churnRate: number;
  readonly churnConcurrency: number;
  /** slow: the route of the flooding backend. */
  readonly slowPath: string;
  /** slow: a short pause (the gateway must keep the connection) and a long one (past keepalive: it may close it). */
  readonly slowShortPauseMs: number;
  readonly slowLongPauseMs: number;
  readonly handshakeTimeoutMs: number;
  /** chatty: the gateway's limits.idleTimeout, which closes a quiet connection (1001) once it has been open that long. */
  readonly idleTimeoutMs: number;
}

/**
 * One kind of ending seen by clients in one second: `kind` is what the client saw ("closed with
 * code 1011", "reset", "handshake status 502", …), `context` what the connection was doing
 * ("chatty", "quiet", "handshake", "churn", and for slow clients "reading", "short pause",
 * "long pause", "after long pause").
 */
export interface CloseRecord {
  /** When the first of them happened, ms since the epoch (the rest within the same second). */
  readonly t: number;
  readonly role: LoadRole;
  readonly kind: string;
  readonly context: string;
  readonly n: number;
}

export interface LoadCounts {
  /** Connections open now, and opened (101) since the start. */
  readonly open: number;
  readonly opened: number;
  readonly handshakeFailures: number;
  /** Unexpected endings of open connections (not asked for by this process). */
  readonly dropped: number;
  readonly sent: number;
  readonly received: number;
  readonly badEchoes: number;
  /** chatty: messages not sent because a connection already had this many echoes outstanding. */
  readonly backlogSkips: number;
  /** Pings from the gateway answered. */
  readonly pings: number;
  /** churn: cycles completed (upgrade, echo, our close 1000), and cycles due while all slots were busy. */
  readonly churnCycles: number;
  readonly churnSkipped: number;
  /** slow: bytes read, and pauses taken. */
  readonly slowBytes: number;
  readonly slowPauses: number;
}

/** Parent → load process. */
export type ToLoad = { readonly t: 'init'; readonly spec: LoadSpec } | { readonly t: 'start' } | { readonly t: 'stop' };

/** Load process → parent: counts and new close records every second, and replies. */
export type FromLoad =
  | { readonly t: 'ready' }
  | { readonly t: 'report'; readonly counts: LoadCounts; readonly closes: readonly CloseRecord[] }
  | { readonly t: 'stopped'; readonly counts: LoadCounts; readonly closes: readonly CloseRecord[] }
  | { readonly t: 'fatal'; readonly message: string };
