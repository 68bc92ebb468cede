import type { PerIpLimits } from '../config/types.js';
import { GatewayError, type ErrorCode } from '../errors.js';

/**
 * One handshake's claim on the limits that must hold for the whole gateway
 * (every worker of every instance): the per-address handshake rate and
 * session count, the route's and the gateway's session caps.
 */
export interface AdmitRequest {
  /** "" for the top-level perIp limits, else the name of the route whose perIp overrides them. */
  readonly scope: string;
  /** limitKey() of the client address. */
  readonly key: string;
  readonly perIp: PerIpLimits;
  readonly route: string;
  /** The route's limits.maxConnections. */
  readonly routeMax: number;
  /** The top-level limits.maxConnections. */
  readonly globalMax: number;
}

/** What an admitted session holds until it is released: exactly one release() per ticket. */
export interface Ticket {
  readonly scope: string;
  readonly key: string;
  readonly route: string;
}

export type Admission = Ticket | GatewayError;

/** An operator drain or undrain of one target (by its stable id, `upstream/url`). */
export interface DrainCommand {
  readonly target: string;
  readonly drained: boolean;
}

/**
 * Where the gateway-wide limits are kept: in this process (LocalState), in
 * the instance's primary (PrimaryState, for a worker) or in Redis
 * (RedisState, across instances). Only the front door (admit, release) and
 * the admin side (drains) talk to it, once per handshake or command; the
 * relay never does. admit() answers synchronously when it can, so the
 * single-process handshake path stays what it was.
 */
export interface SharedState {
  admit(req: AdmitRequest): Admission | Promise<Admission>;
  release(ticket: Ticket): void;
  /** Sessions this member holds (admitted, not yet released). */
  readonly held: number;
  /** Resolves once the state can answer (a first connection to Redis made, or given up on); the gateway waits for it before listening. */
  ready?(): Promise<unknown>;
  close(): Promise<void>;
}

/** A refusal as it crosses a process boundary (IPC, a Redis reply) and back into a GatewayError. */
export interface Refusal {
  readonly code: ErrorCode;
  readonly detail: string;
  /** Seconds, for Retry-After. */
  readonly retryAfter?: number | undefined;
}

export function refusalError(r: Refusal): GatewayError {
  return new GatewayError(r.code, r.detail, r.retryAfter === undefined ? undefined : { headers: [`Retry-After: ${r.retryAfter}`] });
}

export function toRefusal(err: GatewayError): Refusal {
  const header = err.headers?.find((h) => h.startsWith('Retry-After: '));
  return { code: err.code, detail: err.message, retryAfter: header === undefined ? undefined : Number(header.slice(13)) };
}

export function isTicket(a: Admission): a is Ticket {
  return !(a instanceof GatewayError);
}
