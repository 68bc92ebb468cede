import type { HealthVerdict } from '../health/health-monitor.js';
import type { UpstreamStatus } from '../admin/status.js';
import type { AdmitRequest, DrainCommand, Refusal } from './shared-state.js';

// What a cluster primary and its workers say to each other over the IPC
// channel: small plain objects, one message per handshake at most (admit),
// the rest per command.

export type ToPrimary =
  /** The worker listens for messages: the primary may send its config (sent earlier, it would be lost). */
  | { readonly t: 'hello' }
  | { readonly t: 'admit'; readonly id: number; readonly req: AdmitRequest }
  | { readonly t: 'release'; readonly n: number }
  | { readonly t: 'ready'; readonly addresses: readonly string[] }
  | { readonly t: 'failed'; readonly error: string }
  | { readonly t: 'reloaded'; readonly seq: number; readonly ok: boolean; readonly errors: readonly string[] }
  | { readonly t: 'status'; readonly seq: number; readonly sessions: number; readonly upstreams: readonly UpstreamStatus[] };

export type ToWorker =
  | { readonly t: 'config'; readonly text: string; readonly baseDir: string }
  | { readonly t: 'admitted'; readonly id: number; readonly n?: number; readonly refusal?: Refusal }
  | { readonly t: 'reload'; readonly seq: number; readonly text: string; readonly baseDir: string }
  | { readonly t: 'drain'; readonly cmd: DrainCommand }
  | { readonly t: 'health'; readonly verdict: HealthVerdict }
  | { readonly t: 'status'; readonly seq: number }
  | { readonly t: 'stop' };
