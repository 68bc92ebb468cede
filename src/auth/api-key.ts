import { createHash, timingSafeEqual } from 'node:crypto';
import { GatewayError } from '../errors.js';
import { EMPTY_GRANT, type AuthGrant, type AuthRequest, type Authenticator } from './authenticator.js';

/**
 * Static API keys in a request header. Keys are compared as SHA-256 digests
 * with timingSafeEqual, against every configured key without stopping at a
 * match: the time taken says nothing about how much of a key was right,
 * nor which key matched. Synchronous: no promise per handshake.
 */
export class ApiKeyAuthenticator implements Authenticator {
  readonly kind = 'apiKeys';
  readonly #header: string;
  readonly #digests: readonly Buffer[];
  readonly #challenge: string;

  constructor(config: { readonly header: string; readonly keys: readonly string[] }) {
    this.#header = config.header;
    this.#digests = config.keys.map(digest);
    this.#challenge = `WWW-Authenticate: ApiKey realm="wsgate", header="${config.header}"`;
  }

  authenticate(request: AuthRequest): AuthGrant {
    const raw = request.req.headers[this.#header];
    const key = Array.isArray(raw) ? raw[0] : raw;
    if (key === undefined || key === '') {
      throw new GatewayError('AUTH_MISSING', `apiKeys: no ${this.#header} header`, { headers: [this.#challenge] });
    }
    const presented = digest(key);
    let match = false;
    for (const d of this.#digests) match = timingSafeEqual(presented, d) || match;
    if (!match) throw new GatewayError('AUTH_INVALID', `apiKeys: unknown key in ${this.#header}`, { headers: [this.#challenge] });
    return EMPTY_GRANT;
  }
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}
