import type { IncomingHttpHeaders } from 'node:http';
import type { RelaySocket } from '../relay/handle-io.js';
import { tokenListHas } from './validate-upgrade.js';

/**
 * What the handshake path reads of a request. Node's IncomingMessage has all
 * of it, and so does the gateway's own RequestHead below, which the listener
 * builds for WebSocket upgrades without an HTTP parser, an IncomingMessage
 * or their bookkeeping (the cheaper half of every handshake).
 */
export interface UpgradeRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly httpVersion: string;
  readonly httpVersionMajor: number;
  readonly httpVersionMinor: number;
  /** Lower-case names, repeated fields combined the way Node's IncomingMessage does. */
  readonly headers: IncomingHttpHeaders;
  /** [name, value, name, value…] as received. */
  readonly rawHeaders: string[];
  readonly socket: RelaySocket;
}

export class RequestHead implements UpgradeRequest {
  readonly method = 'GET';
  readonly httpVersion = '1.1';
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor = 1;
  constructor(
    readonly url: string,
    readonly headers: IncomingHttpHeaders,
    readonly rawHeaders: string[],
    readonly socket: RelaySocket,
  ) {}
}

// Node keeps the first of these when a request repeats them; the fast path
// leaves such requests to Node's parser so both paths agree on every request.
const SINGLE = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

/** An origin-form target of visible ASCII. */
const TARGET = /^\/[\x21-\x7e]*$/;
/** RFC 9110 §5.1 field-name ":" OWS field-value OWS, value bytes as llhttp's strict mode takes them. */
const FIELD = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*$/;
const MAX_FIELDS = 1_000;

/**
 * Parses a complete request head (latin1, up to but without the blank line)
 * when it is a WebSocket upgrade in the plainest form: `GET /target HTTP/1.1`,
 * CRLF line ends, well-formed fields, `Upgrade` present and `upgrade` in
 * `Connection`, no body, no repeated single-valued field. Anything else
 * returns undefined and goes to Node's HTTP parser, which then answers it
 * (passthrough, or an error) exactly as it would have without this path.
 * This parser may only ever be stricter than llhttp, never more lenient.
 */
export function parseUpgradeHead(head: string, socket: RelaySocket): RequestHead | undefined {
  let eol = head.indexOf('\r\n');
  if (eol === -1) eol = head.length;
  const line = head.slice(0, eol);
  if (!line.startsWith('GET ') || !line.endsWith(' HTTP/1.1')) return undefined;
  const url = line.slice(4, -9);
  if (!TARGET.test(url)) return undefined;
  const headers: IncomingHttpHeaders = {};
  const raw: string[] = [];
  let start = eol + 2;
  while (start < head.length) {
    let end = head.indexOf('\r\n', start);
    if (end === -1) end = head.length;
    const m = FIELD.exec(head.slice(start, end));
    if (m === null || raw.length >= 2 * MAX_FIELDS) return undefined;
    const name = m[1]!;
    const value = m[2]!;
    raw.push(name, value);
    if (!addField(headers, name.toLowerCase(), value)) return undefined;
    start = end + 2;
  }
  if (headers['content-length'] !== undefined || headers['transfer-encoding'] !== undefined) return undefined;
  if (headers.upgrade === undefined || !tokenListHas(headers.connection, 'upgrade')) return undefined;
  return new RequestHead(url, headers, raw, socket);
}

/** Combines a repeated field as IncomingMessage does; false for a repeated single-valued one. */
function addField(headers: IncomingHttpHeaders, name: string, value: string): boolean {
  const bag = headers as Record<string, string | string[] | undefined>;
  const prev = bag[name];
  if (prev === undefined) {
    bag[name] = name === 'set-cookie' ? [value] : value;
    return true;
  }
  if (SINGLE.has(name)) return false;
  if (Array.isArray(prev)) prev.push(value);
  else bag[name] = `${prev}${name === 'cookie' ? '; ' : ', '}${value}`;
  return true;
}
