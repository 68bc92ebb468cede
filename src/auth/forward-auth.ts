import type { IncomingHttpHeaders } from 'node:http';
import type { Pool } from 'undici';
import type { AuthConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import type { AuthResources } from './auth-resources.js';
import type { AuthGrant, AuthRequest, Authenticator } from './authenticator.js';
import { HOP_BY_HOP } from '../http/hop-by-hop.js';

type ForwardConfig = NonNullable<AuthConfig['forward']>;

/** A denial's body is passed on to the client up to this size. */
const MAX_BODY_BYTES = 64 * 1024;
// Never copied to or from the auth service; its body is not relayed, so neither is its length.
const NOT_FORWARDED = new Set([...HOP_BY_HOP, 'content-length']);

/**
 * Forward auth: a GET to an HTTP service for each handshake, over a
 * keep-alive pool. 2xx allows, and copies `responseHeaders` onto the
 * upstream request; any other answer goes back to the client with its
 * status, headers and body. No answer within `timeout`, or no service at
 * all, is a 503: it never fails open.
 *
 * The call carries the listed client headers and X-Forwarded-For/-Proto/
 * -Host/-Uri/-Method, so the service can judge the original request.
 */
export class ForwardAuthenticator implements Authenticator {
  readonly kind = 'forward';
  readonly #config: ForwardConfig;
  readonly #pool: Pool;
  readonly #path: string;

  constructor(config: ForwardConfig, resources: AuthResources) {
    this.#config = config;
    const url = new URL(config.url);
    this.#pool = resources.pool(url);
    this.#path = url.pathname + url.search;
  }

  /** Names of the upstream headers this authenticator sets (always removed from the client's request). */
  get headerNames(): readonly string[] {
    return this.#config.responseHeaders;
  }

  async authenticate(request: AuthRequest): Promise<AuthGrant> {
    const { req } = request;
    const timeout = this.#config.timeout;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeout);
    const onClientGone = (): void => abort.abort();
    request.signal?.addEventListener('abort', onClientGone, { once: true });
    try {
      const answer = await this.#pool.request({
        method: 'GET',
        path: this.#path,
        headers: this.#requestHeaders(req.headers, request),
        signal: abort.signal,
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
      if (answer.statusCode >= 200 && answer.statusCode < 300) {
        await answer.body.dump({ limit: MAX_BODY_BYTES });
        return { headers: this.#grantHeaders(answer.headers), claims: undefined, protocol: undefined };
      }
      const body = await readCapped(answer.body);
      throw new GatewayError('AUTH_DENIED', `forward auth answered ${answer.statusCode}`, {
        answer: { status: answer.statusCode, headers: passOn(answer.headers), body },
      });
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      const why = abort.signal.aborted && request.signal?.aborted !== true ? `no answer within ${timeout}ms` : (err as Error).message;
      throw new GatewayError('AUTH_UNAVAILABLE', `forward auth ${this.#config.url}: ${why}`, { cause: err });
    } finally {
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', onClientGone);
    }
  }

  #requestHeaders(headers: IncomingHttpHeaders, request: AuthRequest): Record<string, string> {
    const out: Record<string, string> = {};
    for (const name of this.#config.headers) {
      const value = headers[name];
      if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    out['x-forwarded-for'] = request.client;
    out['x-forwarded-proto'] = request.secure ? 'https' : 'http';
    out['x-forwarded-host'] = headers.host ?? '';
    out['x-forwarded-uri'] = request.req.url ?? '/';
    out['x-forwarded-method'] = request.req.method ?? 'GET';
    return out;
  }

  #grantHeaders(headers: Record<string, string | string[] | undefined>): (readonly [string, string])[] | undefined {
    const names = this.#config.responseHeaders;
    if (names.length === 0) return undefined;
    const out: (readonly [string, string])[] = [];
    for (const name of names) {
      const value = headers[name];
      if (value === undefined) continue;
      const s = Array.isArray(value) ? value.join(', ') : value;
      if (!/[\r\n\0]/.test(s)) out.push([name, s]);
    }
    return out;
  }
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): unknown }): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const room = MAX_BODY_BYTES - size;
    chunks.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
    size += Math.min(chunk.length, room);
    if (size >= MAX_BODY_BYTES) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks);
}

/** The auth service's headers as lines for the client (Location, WWW-Authenticate, Set-Cookie…), hop-by-hop ones left out. */
function passOn(headers: Record<string, string | string[] | undefined>): string[] {
  const lines: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || NOT_FORWARDED.has(name)) continue;
    for (const v of Array.isArray(value) ? value : [value]) {
      if (!/[\r\n\0]/.test(v)) lines.push(`${name}: ${v}`);
    }
  }
  return lines;
}
