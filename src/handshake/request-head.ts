import type { IncomingHttpHeaders } from 'node:http';
import type { RelaySocket } from '../relay/handle-io.js';
import { FieldNames, TCHAR, UPPER } from '../http/field-names.js';

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
  /** rawHeaders' names lower-case, in order, when the parser kept them (RequestHead). */
  readonly lowerNames?: readonly string[] | undefined;
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
    readonly lowerNames: readonly string[],
  ) {}
}

// Node keeps the first of these when a request repeats them and drops the
// others unseen (IncomingMessage's list). The fast path leaves such requests
// to Node's parser, and the front door refuses them (repeatedField).
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
  // Kept for forwardHeaders(), which would lower-case every name again.
  const lowers: string[] = [];
  // llhttp sees an upgrade only in an Upgrade field with a value: two empty ones join into ", ".
  let upgrade = false;
  let start = eol + 2;
  while (start < head.length) {
    let end = head.indexOf('\r\n', start);
    if (end === -1) end = head.length;
    if (raw.length >= 2 * MAX_FIELDS) return undefined;
    const lower = readField(head, start, end, raw);
    if (lower === undefined) return undefined;
    lowers.push(lower);
    const value = raw[raw.length - 1]!;
    if (lower === 'upgrade' && value !== '') upgrade = true;
    if (!addField(headers, lower, value)) return undefined;
    start = end + 2;
  }
  if (headers['content-length'] !== undefined || headers['transfer-encoding'] !== undefined) return undefined;
  if (!upgrade || !connectionUpgrade(headers.connection)) return undefined;
  return new RequestHead(url, headers, raw, socket, lowers);
}

const names = new FieldNames();

const COLON = 0x3a;
const SP = 0x20;
const HTAB = 0x09;
const DEL = 0x7f;

/**
 * Reads the field line head[start, end) into raw (its name and value) and
 * returns the name lower-cased, or undefined when the line is not one that
 *
 *   /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?) *$/
 *
 * matches (name and value its two groups): RFC 9110 §5.1 field-name ":" OWS
 * field-value OWS, value bytes as llhttp's strict mode takes them. Trailing
 * whitespace is spaces only: llhttp drops a trailing tab from the value too,
 * but a tab after "upgrade" hides that token of Connection from it
 * (differential fuzzing found it). Scanned by hand in one pass, with a slice
 * for the name and one for the value: running that regex on each line cost
 * a slice of the line, a match array and most of the parse's instructions.
 */
function readField(head: string, start: number, end: number, raw: string[]): string | undefined {
  let colon = start;
  let kinds = 0;
  for (; colon < end; colon++) {
    const c = head.charCodeAt(colon);
    if (c === COLON) break;
    const kind = c < 0x80 ? TCHAR[c]! : 0;
    if (kind === 0) return undefined;
    kinds |= kind;
  }
  if (colon === start || colon === end) return undefined;
  let from = colon + 1;
  while (from < end && isOws(head.charCodeAt(from))) from++;
  const to = valueEnd(head, from, end);
  if (to === -1) return undefined;
  const name = head.slice(start, colon);
  raw.push(name, head.slice(from, to));
  return names.lower(name, (kinds & UPPER) !== 0, (raw.length >> 1) - 1);
}

function isOws(c: number): boolean {
  return c === SP || c === HTAB;
}

/**
 * The end of the value that starts at `from` (past the OWS) and runs to
 * `end`, without its trailing spaces; -1 when a tab ends it or it holds a
 * char outside the grammar's ranges: a control but the tab, DEL, or (in no
 * latin1 head, but a string that is not one must not slip past) one above 0xff.
 */
function valueEnd(head: string, from: number, end: number): number {
  let to = end;
  while (to > from && head.charCodeAt(to - 1) === SP) to--;
  if (to > from && head.charCodeAt(to - 1) === HTAB) return -1;
  for (let i = from; i < to; i++) {
    const c = head.charCodeAt(i);
    if (c < SP ? c !== HTAB : c === DEL || c > 0xff) return -1;
  }
  return to;
}

/**
 * "upgrade" among Connection's tokens, read no more loosely than llhttp
 * does: it ignores spaces around a token but not tabs, and sees no upgrade
 * in "upgrade\t" or "upgrade\xa0" (then Node's server takes the request as
 * a plain one, which the gateway refuses). A value it might read another
 * way is left to it.
 */
const CONNECTION = /^ *[!#$%&'*+\-.^_`|~0-9A-Za-z]+ *(?:, *[!#$%&'*+\-.^_`|~0-9A-Za-z]+ *)*$/;
const UPGRADE_TOKEN = /(?:^|,) *upgrade *(?:,|$)/i;

function connectionUpgrade(value: string | undefined): boolean {
  if (value === undefined) return false;
  if (value.length === 7) return value.toLowerCase() === 'upgrade';
  return CONNECTION.test(value) && UPGRADE_TOKEN.test(value);
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

/** Bit i: the request has a field named SINGLE's i-th name. */
const SINGLE_BIT = new Map([...SINGLE].map((name, i) => [name, 1 << i]));
/** The longest name in SINGLE ("proxy-authorization"): longer names need no lower-casing. */
const SINGLE_LONGEST = 19;

/**
 * The first single-valued field (SINGLE) a request repeats, lower-case, or
 * undefined. Node's IncomingMessage keeps only the first of them while
 * the raw lines all go on to the backend (forwardHeaders), so routing,
 * auth and hashing would read one Host or Authorization and the backend
 * perhaps another: RFC 9110 §5.3 forbids repeating such a field, RFC 9112
 * §3.2 asks for a 400 on a repeated Host. A RequestHead never repeats one
 * (parseUpgradeHead declines them), so only heads Node parsed are scanned.
 */
export function repeatedField(req: UpgradeRequest): string | undefined {
  if (req instanceof RequestHead) return undefined;
  const raw = req.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length > SINGLE_LONGEST) continue;
    const lower = name.toLowerCase();
    const bit = SINGLE_BIT.get(lower);
    if (bit === undefined) continue;
    if ((seen & bit) !== 0) return lower;
    seen |= bit;
  }
  return undefined;
}
