import { randomFillSync } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

// W3C Trace Context (https://www.w3.org/TR/trace-context/) and X-Request-Id
// for one session, read once from the client's request head. No regular
// expressions and no JSON: the handshake path is benchmarked, so the parser
// is one pass over at most 55 characters, and random ids are hex slices of a
// pooled buffer refilled 4 KiB at a time: the ids a request needs come from
// one hex conversion (each is a call into Node's C++, a thousand
// instructions whatever its length).

/** A session's place in a distributed trace, and its request id. */
export class TraceContext {
  /** The first upstream request's parent id, made with the others. */
  #parentId: string | undefined;

  constructor(
    /** 32 lowercase hex digits: the client's trace id, or a new one. */
    readonly traceId: string,
    /** 2 lowercase hex digits: the client's trace-flags, or `01` when wsgate started the trace. */
    readonly flags: string,
    /** The client's traceparent was valid: the trace is continued and its tracestate passes through. */
    readonly continued: boolean,
    /** The client's X-Request-Id when it is a sane token, else a new 32-hex-digit id. */
    readonly requestId: string,
    parentId?: string,
  ) {
    this.#parentId = parentId;
  }

  /** The traceparent for one upstream request: version 00, this trace, a new parent (span) id, the same flags. */
  traceparent(): string {
    const parentId = this.#parentId ?? randomHex(8);
    this.#parentId = undefined;
    return `00-${this.traceId}-${parentId}-${this.flags}`;
  }
}

/** Client headers that the gateway replaces on the upstream request (tracestate only when the trace is not continued). */
export const TRACE_HEADERS: ReadonlySet<string> = new Set(['traceparent', 'tracestate', 'x-request-id']);

/** The longest X-Request-Id kept as the client sent it. */
export const MAX_REQUEST_ID = 200;

const TRACE = Symbol('wsgate.trace');

interface Traced {
  readonly headers: IncomingHttpHeaders;
  [TRACE]?: TraceContext;
}

/**
 * The request's trace context, computed on first use and cached on the
 * request: the front door's rejection line and the session's upstream
 * requests and access-log line all see the same ids.
 */
export function traceOf(req: { readonly headers: IncomingHttpHeaders }): TraceContext {
  const r = req as Traced;
  return (r[TRACE] ??= readTrace(r.headers));
}

/** The trace context of a request's headers (uncached: traceOf() is the one to use per request). */
export function readTrace(headers: IncomingHttpHeaders): TraceContext {
  // 16 bytes of request id, 16 of trace id, 8 of parent id, for whichever of them the client did not send.
  const hex = randomHex(40);
  const given = headers['x-request-id'];
  const requestId = typeof given === 'string' && isRequestId(given) ? given : hex.slice(0, 32);
  const parentId = nonZero(hex.slice(64), 8);
  const parent = headers.traceparent;
  if (typeof parent === 'string' && parent.length >= 55) {
    const traceId = parseTraceparent(parent);
    if (traceId !== undefined) return new TraceContext(traceId, parent.slice(53, 55), true, requestId, parentId);
  }
  return new TraceContext(nonZero(hex.slice(32, 64), 16), '01', false, requestId, parentId);
}

/** `id` (hex for `bytes` bytes), or another when it is all zeros, which the spec forbids for trace and parent ids. */
function nonZero(id: string, bytes: number): string {
  for (let i = 0; i < id.length; i++) if (id.charCodeAt(i) !== ZERO) return id;
  return randomHex(bytes);
}

/**
 * The trace id of a valid traceparent, else undefined. Version 00 must be
 * exactly `00-<32 hex>-<16 hex>-<2 hex>`; a higher version (ff excepted) is
 * read by the spec's forward-compatible rule: the same prefix, followed by
 * the end of the value or a dash. Hex is lowercase only; an all-zero trace
 * id or parent id is invalid.
 */
export function parseTraceparent(value: string): string | undefined {
  const n = value.length;
  if (n < 55) return undefined;
  const v0 = value.charCodeAt(0);
  const v1 = value.charCodeAt(1);
  if (!isHex(v0) || !isHex(v1) || value.charCodeAt(2) !== DASH) return undefined;
  if (v0 === F && v1 === F) return undefined;
  if (v0 === ZERO && v1 === ZERO ? n !== 55 : n > 55 && value.charCodeAt(55) !== DASH) return undefined;
  if (!hexRun(value, 3, 35) || value.charCodeAt(35) !== DASH) return undefined;
  if (!hexRun(value, 36, 52) || value.charCodeAt(52) !== DASH) return undefined;
  if (!isHex(value.charCodeAt(53)) || !isHex(value.charCodeAt(54))) return undefined;
  return value.slice(3, 35);
}

/** A request id worth keeping: 1 to 200 visible ASCII characters (no spaces, no control or non-ASCII bytes). */
export function isRequestId(value: string): boolean {
  const n = value.length;
  if (n === 0 || n > MAX_REQUEST_ID) return false;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

const DASH = 0x2d;
const ZERO = 0x30;
const F = 0x66;

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66);
}

/** value[from, to) is lowercase hex and not all zeros. */
function hexRun(value: string, from: number, to: number): boolean {
  let nonZero = false;
  for (let i = from; i < to; i++) {
    const c = value.charCodeAt(i);
    if (!isHex(c)) return false;
    if (c !== ZERO) nonZero = true;
  }
  return nonZero;
}

const POOL_SIZE = 4096;
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let used = POOL_SIZE;

/**
 * `bytes` random bytes as lowercase hex, never all zeros (the spec forbids
 * such trace and parent ids): a slice of a pool that randomFillSync refills
 * when it runs out, so that one system call serves a hundred sessions.
 */
export function randomHex(bytes: number): string {
  for (;;) {
    if (used + bytes > POOL_SIZE) {
      randomFillSync(pool);
      used = 0;
    }
    const start = used;
    used += bytes;
    for (let i = start; i < used; i++) if (pool[i] !== 0) return pool.toString('hex', start, used);
  }
}
