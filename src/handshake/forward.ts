import type { UpgradeRequest } from './request-head.js';
import { forwardedNode } from './forwarded.js';
import { HOP_BY_HOP } from '../http/hop-by-hop.js';
import { TRACE_HEADERS, type TraceContext } from '../observability/trace-context.js';

// Rebuilt by the gateway; copied from the client only when it is a trusted proxy.
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']);

export interface ForwardContext {
  /** Request target for the upstream: path and query. */
  readonly path: string;
  /** The socket peer (the client, or the proxy in front of us). */
  readonly peer: string;
  /** The peer is in trustedProxies: keep the forwarding headers it sent. */
  readonly trusted: boolean;
  /** The client reached us over TLS. */
  readonly secure: boolean;
  /**
   * Headers to add (e.g. from auth), names lower-case; they replace
   * client-sent ones. A name mapped to undefined only removes the client's.
   */
  readonly extra?: ReadonlyMap<string, string | undefined> | undefined;
  /** Replaces the client's Sec-WebSocket-Protocol ("" removes it): auth took its token entry out. */
  readonly protocol?: string | undefined;
  /**
   * The request's trace (traceOf): its traceparent (a new parent id on every
   * call) and X-Request-Id replace the client's, and the client's tracestate
   * goes only with a trace it continues. These win over `extra`.
   */
  readonly trace?: TraceContext | undefined;
}

/**
 * The client's request headers as the upstream should see them, flat
 * [name, value, name, value…]: hop-by-hop fields removed, forwarding fields
 * set, everything else (Sec-WebSocket-Key, -Protocol, -Extensions included)
 * passed through untouched so the upstream's answer is valid for the client.
 */
export function forwardHeaders(req: UpgradeRequest, ctx: ForwardContext): string[] {
  const raw = req.rawHeaders;
  const lowers = req.lowerNames;
  const named = connectionTokens(req.headers.connection);
  const out: string[] = [];
  let xff: string | undefined;
  let forwarded: string | undefined;
  let proto: string | undefined;
  let fwdHost: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = lowers !== undefined ? lowers[i >> 1]! : name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || (named !== undefined && named.has(lower))) continue;
    if (ctx.extra !== undefined && ctx.extra.has(lower)) continue;
    if (ctx.protocol !== undefined && lower === 'sec-websocket-protocol') continue;
    if (ctx.trace !== undefined && TRACE_HEADERS.has(lower) && (lower !== 'tracestate' || !ctx.trace.continued)) continue;
    if (FORWARDING.has(lower)) {
      if (!ctx.trusted) continue;
      if (lower === 'x-forwarded-for') xff = xff === undefined ? value : `${xff}, ${value}`;
      else if (lower === 'forwarded') forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`;
      else if (lower === 'x-forwarded-proto') proto ??= value;
      else fwdHost ??= value;
      continue;
    }
    out.push(name, value);
  }
  const scheme = ctx.secure ? 'https' : 'http';
  const host = req.headers.host ?? '';
  const node = `for=${forwardedNode(ctx.peer)};host="${host}";proto=${scheme}`;
  out.push(
    'X-Forwarded-For',
    xff === undefined ? ctx.peer : `${xff}, ${ctx.peer}`,
    'X-Forwarded-Proto',
    proto ?? scheme,
    'X-Forwarded-Host',
    fwdHost ?? host,
    'Forwarded',
    forwarded === undefined ? node : `${forwarded}, ${node}`,
  );
  if (ctx.protocol !== undefined && ctx.protocol !== '') out.push('Sec-WebSocket-Protocol', ctx.protocol);
  const trace = ctx.trace;
  if (trace !== undefined) out.push('traceparent', trace.traceparent(), 'X-Request-Id', trace.requestId);
  if (ctx.extra !== undefined) {
    for (const [name, value] of ctx.extra) if (value !== undefined && (trace === undefined || !TRACE_HEADERS.has(name))) out.push(name, value);
  }
  return out;
}

/** The upstream's opening handshake as one string, ready to write to the dialed socket. */
export function buildUpstreamHandshake(req: UpgradeRequest, ctx: ForwardContext): string {
  const headers = forwardHeaders(req, ctx);
  let head = `GET ${ctx.path} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return head + 'Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
}

/** Header names listed in Connection (besides "upgrade"/"keep-alive"), which are hop-by-hop too. */
function connectionTokens(value: string | undefined): Set<string> | undefined {
  if (value === undefined || value === 'Upgrade' || value === 'upgrade') return undefined;
  const set = new Set<string>();
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase();
    if (t !== '' && t !== 'upgrade' && t !== 'close' && t !== 'keep-alive') set.add(t);
  }
  return set.size === 0 ? undefined : set;
}
