import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { IncomingHttpHeaders as Http2Headers } from 'node:http2';
import { GatewayError } from '../errors.js';
import type { UpgradeRequest } from '../handshake/request-head.js';
import type { RelaySocket } from '../relay/handle-io.js';
import { http1Fields } from './http1-fields.js';

/** An origin-form target of visible ASCII, as the HTTP/1.1 fast path takes it (request-head.ts). */
const TARGET = /^\/[\x21-\x7e]*$/;
/** host[:port], or [v6]:port: nothing that could end a request line or header in the upstream request. */
const AUTHORITY = /^(?:[A-Za-z0-9._~%!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * RFC 8441 §4-5 (and RFC 9113 §8.5): what makes an HTTP/2 CONNECT a
 * WebSocket opening handshake, beyond what nghttp2 checks itself (it resets
 * an extended CONNECT without :scheme or :path, and a :protocol on another
 * method, before the gateway sees the stream). Returns the 400 to answer,
 * or undefined; Sec-WebSocket-Version is left to validateUpgrade (426),
 * as for HTTP/1.1.
 */
export function extendedConnectError(headers: Http2Headers): GatewayError | undefined {
  const protocol = headers[':protocol'];
  if (protocol === undefined) return malformed('CONNECT without :protocol (only WebSockets, RFC 8441, are served over CONNECT)');
  if (protocol.toLowerCase() !== 'websocket') return malformed(`:protocol ${JSON.stringify(protocol.slice(0, 64))} is not websocket`);
  if (headers[':scheme'] !== 'https') return malformed(`:scheme ${JSON.stringify(String(headers[':scheme']).slice(0, 16))} is not https`);
  const path = headers[':path'];
  if (path === undefined || !TARGET.test(path)) return malformed(':path is missing or not an absolute path');
  const authority = headers[':authority'];
  if (authority === undefined || !AUTHORITY.test(authority)) return malformed(':authority is missing or not host[:port]');
  return undefined;
}

function malformed(detail: string): GatewayError {
  return new GatewayError('HANDSHAKE_MALFORMED', detail);
}

/**
 * An extended CONNECT as the rest of the pipeline reads a WebSocket
 * upgrade: the request the upstream gets, an ordinary HTTP/1.1 GET upgrade.
 * `Host` comes from :authority, the target from :path, the other fields as
 * the client sent them; Upgrade, Connection and a fresh Sec-WebSocket-Key
 * (an HTTP/2 client sends none, RFC 8441 §5) are the gateway's, so the
 * upstream's Sec-WebSocket-Accept is checked against the gateway's own key.
 * Built only once extendedConnectError() found nothing; it then passes
 * validateUpgrade() unless the version is not 13 or a field repeats.
 */
export class ExtendedConnect implements UpgradeRequest {
  readonly method = 'GET';
  readonly httpVersion = '1.1';
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor = 1;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly socket: RelaySocket;

  constructor(stream: RelaySocket, h2: Http2Headers, rawHeaders: readonly string[]) {
    const key = randomBytes(16).toString('base64');
    this.socket = stream;
    this.url = h2[':path'] ?? '/';
    const raw = http1Fields(h2, rawHeaders, 'sec-websocket-key');
    raw.push('Sec-WebSocket-Key', key);
    this.rawHeaders = raw;
    const headers: Record<string, string | string[] | undefined> = {};
    for (const name of Object.keys(h2)) if (name.charCodeAt(0) !== COLON) headers[name] = h2[name];
    headers.host = h2[':authority'];
    headers.upgrade = 'websocket';
    headers.connection = 'Upgrade';
    headers['sec-websocket-key'] = key;
    this.headers = headers as IncomingHttpHeaders;
  }
}

const COLON = 0x3a;
