import type { AuthConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { ApiKeyAuthenticator } from './api-key.js';
import type { AuthResources } from './auth-resources.js';
import type { AuthGrant, AuthRequest, Authenticator } from './authenticator.js';
import { ForwardAuthenticator } from './forward-auth.js';
import { JwtAuthenticator } from './jwt.js';

/** The outcome of a route's checks, ready for the upstream request. */
export interface AuthResult {
  /**
   * Upstream headers by lower-case name. Every name the route's auth can set
   * is present — undefined when this client got no value — so the client's
   * own header of that name is always removed and can never be spoofed.
   */
  readonly headers: ReadonlyMap<string, string | undefined> | undefined;
  readonly claims: Readonly<Record<string, unknown>> | undefined;
  /** Replacement Sec-WebSocket-Protocol ("" = remove), when the token came from there. */
  readonly protocol: string | undefined;
}

/**
 * A route's authentication: every configured method must pass, cheapest
 * first (API keys, then JWT, then forward auth), so a request without a
 * valid key never costs a call to the auth service. Stays synchronous while
 * its methods are (API keys alone allocate no promise).
 */
export class RouteAuth {
  readonly #chain: readonly Authenticator[];
  readonly #headerNames: readonly string[];
  /** Forward auth listens for the client going away; only then is an AbortSignal worth making. */
  readonly needsSignal: boolean;

  constructor(config: AuthConfig, resources: AuthResources) {
    const chain: Authenticator[] = [];
    const names: string[] = [];
    if (config.apiKeys !== undefined) chain.push(new ApiKeyAuthenticator(config.apiKeys));
    if (config.jwt !== undefined) {
      const jwt = new JwtAuthenticator(config.jwt, resources);
      chain.push(jwt);
      names.push(...jwt.headerNames);
    }
    if (config.forward !== undefined) {
      const forward = new ForwardAuthenticator(config.forward, resources);
      chain.push(forward);
      names.push(...forward.headerNames);
    }
    this.#chain = chain;
    this.#headerNames = [...new Set(names)];
    this.needsSignal = config.forward !== undefined;
  }

  /** Throws or rejects with a GatewayError when the request may not pass; never with anything else. */
  run(request: AuthRequest): AuthResult | Promise<AuthResult> {
    const grants: AuthGrant[] = [];
    for (let i = 0; i < this.#chain.length; i++) {
      let out: AuthGrant | Promise<AuthGrant>;
      try {
        out = this.#chain[i]!.authenticate(request);
      } catch (err) {
        throw asAuthError(err);
      }
      if (out instanceof Promise) return this.#rest(out, i, request, grants);
      grants.push(out);
    }
    return this.#merge(grants);
  }

  async #rest(pending: Promise<AuthGrant>, index: number, request: AuthRequest, grants: AuthGrant[]): Promise<AuthResult> {
    try {
      grants.push(await pending);
      for (let i = index + 1; i < this.#chain.length; i++) grants.push(await this.#chain[i]!.authenticate(request));
    } catch (err) {
      throw asAuthError(err);
    }
    return this.#merge(grants);
  }

  #merge(grants: readonly AuthGrant[]): AuthResult {
    let headers: Map<string, string | undefined> | undefined;
    let claims: Readonly<Record<string, unknown>> | undefined;
    let protocol: string | undefined;
    if (this.#headerNames.length > 0) {
      headers = new Map();
      for (const name of this.#headerNames) headers.set(name, undefined);
    }
    for (const g of grants) {
      if (g.headers !== undefined) for (const [name, value] of g.headers) headers!.set(name, value);
      claims ??= g.claims;
      protocol ??= g.protocol;
    }
    return { headers, claims, protocol };
  }
}

/** Whatever went wrong, the answer is no: an unexpected failure is a 503, not a pass. */
function asAuthError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('AUTH_UNAVAILABLE', `auth failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
