import { createRemoteJWKSet, type JWTVerifyGetKey } from 'jose';
import { Pool } from 'undici';

/** Keep-alive connections to one forward-auth service: enough for bursts, bounded for floods. */
const FORWARD_CONNECTIONS = 128;
/** Cached JWKS keys are re-fetched after this long even when every kid is known. */
const JWKS_MAX_AGE_MS = 10 * 60_000;
const JWKS_FETCH_TIMEOUT_MS = 5_000;

/**
 * What authenticators share and keep across config reloads: one keep-alive
 * pool per forward-auth origin and one key cache per JWKS URL, so a reload
 * neither drops warm connections nor re-fetches every key set. Closed with
 * the gateway.
 */
export class AuthResources {
  readonly #pools = new Map<string, Pool>();
  readonly #jwks = new Map<string, JWTVerifyGetKey>();
  #closed = false;

  /** The pool for `url`'s origin. */
  pool(url: URL): Pool {
    const origin = url.origin;
    let pool = this.#pools.get(origin);
    if (pool === undefined) {
      if (this.#closed) throw new Error('auth resources are closed');
      pool = new Pool(origin, { connections: FORWARD_CONNECTIONS, pipelining: 1, keepAliveTimeout: 4_000 });
      this.#pools.set(origin, pool);
    }
    return pool;
  }

  /**
   * The key resolver for a JWKS URL. An unknown kid re-fetches the set, but
   * not sooner than `cooldown` ms after the last fetch, so tokens with made-up
   * kids cannot turn the gateway into a flood against the identity provider.
   */
  jwks(url: string, cooldown: number): JWTVerifyGetKey {
    const key = `${cooldown} ${url}`;
    let set = this.#jwks.get(key);
    if (set === undefined) {
      set = createRemoteJWKSet(new URL(url), {
        cooldownDuration: cooldown,
        cacheMaxAge: JWKS_MAX_AGE_MS,
        timeoutDuration: JWKS_FETCH_TIMEOUT_MS,
      });
      this.#jwks.set(key, set);
    }
    return set;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    this.#jwks.clear();
    await Promise.all(pools.map((p) => p.close()));
  }
}
