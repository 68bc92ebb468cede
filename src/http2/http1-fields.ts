import type { IncomingHttpHeaders } from 'node:http2';

/**
 * An HTTP/2 request's header fields as an HTTP/1.1 request would carry them,
 * flat [name, value…] like rawHeaders: the pseudo-headers left out, `Host`
 * first (from :authority, RFC 9113 §8.3.1), and the cookie fields, which
 * HTTP/2 may split, joined into one (RFC 9113 §8.2.3: an HTTP/1.1 hop must
 * not see several). A Host field the client sent beside :authority stays
 * only when it names something else: the front door then refuses the
 * request for a repeated Host (400), as RFC 9113 §8.3.1 asks.
 *
 * `skip` is a lower-case field name to leave out (an h2 client's own
 * Sec-WebSocket-Key means nothing: the gateway makes one for the upstream).
 */
export function http1Fields(headers: IncomingHttpHeaders, rawHeaders: readonly string[], skip?: string): string[] {
  const authority = headers[':authority'];
  const out: string[] = [];
  if (authority !== undefined) out.push('Host', authority);
  let cookie = -1;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    // HTTP/2 field names are lower-case on the wire (nghttp2 refuses others).
    if (name.charCodeAt(0) === COLON || name === skip) continue;
    const value = rawHeaders[i + 1]!;
    if (name === 'host' && authority !== undefined && value.toLowerCase() === authority.toLowerCase()) continue;
    if (name === 'cookie') {
      if (cookie !== -1) {
        out[cookie] = `${out[cookie]}; ${value}`;
        continue;
      }
      cookie = out.length + 1;
    }
    out.push(name, value);
  }
  return out;
}

const COLON = 0x3a;
