import type { UpgradeRequest } from '../handshake/request-head.js';

/** What an authenticator sees of a handshake (or of a plain HTTP request on the route). */
export interface AuthRequest {
  readonly req: UpgradeRequest;
  /** The client address the gateway uses (PROXY protocol or trusted forwarding applied). */
  readonly client: string;
  /** The client reached the gateway over TLS. */
  readonly secure: boolean;
  /** Aborted when the client goes away; only forward auth listens to it. */
  readonly signal: AbortSignal | undefined;
}

/** What a successful check adds to the upstream request. */
export interface AuthGrant {
  /** Headers to set upstream (lower-case names); each replaces what the client sent under that name. */
  readonly headers: readonly (readonly [string, string])[] | undefined;
  /** Verified JWT claims (for forwardClaims and a `claim:` hash key). */
  readonly claims: Readonly<Record<string, unknown>> | undefined;
  /** The Sec-WebSocket-Protocol to forward instead of the client's ("" removes it): the token entry taken out. */
  readonly protocol: string | undefined;
}

export const EMPTY_GRANT: AuthGrant = Object.freeze({ headers: undefined, claims: undefined, protocol: undefined });

/**
 * One way of checking a client. A failure is thrown (or rejected) as a
 * GatewayError: AUTH_MISSING / AUTH_INVALID (401, with WWW-Authenticate),
 * AUTH_FORBIDDEN (403), AUTH_DENIED (forward auth's own answer) or
 * AUTH_UNAVAILABLE (503). Anything else thrown also means "no": the chain
 * turns it into AUTH_UNAVAILABLE, never into a pass.
 *
 * A check that needs no I/O returns synchronously, so a route that uses only
 * API keys allocates no promise per handshake.
 */
export interface Authenticator {
  readonly kind: 'jwt' | 'apiKeys' | 'forward';
  authenticate(request: AuthRequest): AuthGrant | Promise<AuthGrant>;
}
