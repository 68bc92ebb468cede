import type { HealthVerdict } from '../health/health-monitor.js';
import type { UpstreamStatus } from '../admin/status.js';
import type { ConnectionPage, ConnectionQuery } from '../admin/stats.js';
import type { MetricJson } from '../observability/metrics.js';
import type { AdmitRequest, DrainCommand, Refusal } from './shared-state.js';

// What a cluster primary and its workers say to each other over the IPC
// channel: small plain objects, per command; the admits and releases of the
// handshake path go in batches (one message each way per event-loop turn of
// the worker, however many handshakes it took), as flat arrays: every
// message is a JSON encode, a write and a read on both sides.

/** One admit: [id, scope, key, route, routeMax, globalMax, perIp.maxConnections, perIp.handshakeRate, perIp.handshakeBurst]. */
export type AdmitWire = [number, string, string, string, number, number, number, number, number];

/** One answer: [id, ticket number] when admitted, [id, 0, why] when not. */
export type AnswerWire = [number, number] | [number, 0, Refusal];

export function admitToWire(id: number, r: AdmitRequest): AdmitWire {
  return [id, r.scope, r.key, r.route, r.routeMax, r.globalMax, r.perIp.maxConnections, r.perIp.handshakeRate.perSecond, r.perIp.handshakeBurst];
}

export function admitFromWire(w: AdmitWire): AdmitRequest {
  return {
    scope: w[1],
    key: w[2],
    route: w[3],
    routeMax: w[4],
    globalMax: w[5],
    perIp: { maxConnections: w[6], handshakeRate: { perSecond: w[7] }, handshakeBurst: w[8] },
  };
}

export type ToPrimary =
  /** The worker listens for messages: the primary may send its config (sent earlier, it would be lost). */
  | { readonly t: 'hello' }
  /** Admits (a) and releases (r, ticket numbers) since the last batch. */
  | { readonly t: 'limits'; readonly a: readonly AdmitWire[]; readonly r: readonly number[] }
  | { readonly t: 'ready'; readonly addresses: readonly string[] }
  | { readonly t: 'failed'; readonly error: string }
  | { readonly t: 'reloaded'; readonly seq: number; readonly ok: boolean; readonly errors: readonly string[] }
  | { readonly t: 'status'; readonly seq: number; readonly sessions: number; readonly upstreams: readonly UpstreamStatus[] }
  /** The worker's runtime and gateway series; null when admin.metrics is off. */
  | { readonly t: 'metrics'; readonly seq: number; readonly metrics: MetricJson[] | null }
  | { readonly t: 'connections'; readonly seq: number; readonly page: ConnectionPage }
  | { readonly t: 'closed'; readonly seq: number; readonly ok: boolean };

export type ToWorker =
  | { readonly t: 'config'; readonly text: string; readonly baseDir: string }
  | { readonly t: 'answers'; readonly a: readonly AnswerWire[] }
  | { readonly t: 'reload'; readonly seq: number; readonly text: string; readonly baseDir: string }
  | { readonly t: 'drain'; readonly cmd: DrainCommand }
  | { readonly t: 'health'; readonly verdict: HealthVerdict }
  | { readonly t: 'status'; readonly seq: number }
  | { readonly t: 'metrics'; readonly seq: number }
  /** `after`: the session number to list after (this worker's part of the cursor), 0 for all. */
  | { readonly t: 'connections'; readonly seq: number; readonly query: ConnectionQuery; readonly after: number }
  | { readonly t: 'close'; readonly seq: number; readonly id: number; readonly code: number; readonly reason: string }
  /** Reopen the log file (the primary got SIGUSR1: logrotate renamed it). */
  | { readonly t: 'reopen' }
  | { readonly t: 'stop' };
