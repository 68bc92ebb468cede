import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Pool, errors as undiciErrors } from 'undici';
import type { RouteConfig } from '../config/types.js';
import { GatewayError, upstreamErrorCode, type ErrorCode } from '../errors.js';
import { forwardHeaders } from '../handshake/forward.js';
import { upstreamPath } from '../routing/route-table.js';
import { hashKeyOf } from '../balancer/hash-key.js';
import type { Target, UpstreamPool } from '../upstream/pool.js';
import type { Snapshot } from '../snapshot.js';
import type { Logger } from '../observability/logger.js';
import type { AuthResult } from '../auth/route-auth.js';
import { peerAddress } from '../listener/peer-address.js';
import { traceOf } from '../observability/trace-context.js';
import { upstreamSecureContext } from '../upstream/upstream-tls.js';
import { HOP_BY_HOP } from '../http/hop-by-hop.js';
import { dialFailed, dialSucceeded } from '../health/outlier.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/**
 * undici refusing the request itself (a header it will not send, a body
 * shorter than its Content-Length): the client's doing, answered 400, and
 * no mark against the target.
 */
const REFUSED_REQUEST = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH']);

/**
 * A plain HTTP request on a route: sent to a target over a keep-alive pool,
 * bodies streamed both ways. Failed connects are retried on other targets
 * only for requests without a body that are safe to repeat, and feed the
 * target's passive ejection as failed WebSocket dials do.
 */
export async function passThrough(
  log: Logger,
  snap: Snapshot,
  route: RouteConfig,
  pool: UpstreamPool,
  req: IncomingMessage,
  res: ServerResponse,
  secure: boolean,
  granted?: AuthResult,
): Promise<void> {
  const peer = peerAddress(req.socket);
  const client = snap.trusted.clientAddress(peer, req);
  const key = pool.config.hash === undefined ? undefined : hashKeyOf(pool.config.hash, { headers: req.headers, url: req.url ?? '/' }, client, granted?.claims);
  const hasBody =
    (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') ||
    req.headers['transfer-encoding'] !== undefined ||
    // HTTP/2 frames a body without either field: there is one unless the request's HEADERS ended the stream.
    (req.httpVersionMajor === 2 && !(req as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders);
  const headers = withoutExpect(
    forwardHeaders(req, { path: '', peer, trusted: snap.trusted.trusts(peer), secure, extra: granted?.headers, trace: traceOf(req) }),
  );
  const abort = new AbortController();
  res.once('close', () => abort.abort());
  let attempts = hasBody || !IDEMPOTENT.has(req.method ?? '') ? 1 : 1 + pool.config.retries;
  let tried: Set<Target> | undefined;
  let lastError: GatewayError | undefined;
  for (;;) {
    const target = pool.pick(key, tried);
    if (target === undefined) return fail(log, res, lastError ?? new GatewayError('NO_TARGET', `upstream ${pool.name}: no available target`));
    target.active++;
    let answered = false;
    try {
      target.http ??= new Pool(`${target.config.secure ? 'https' : 'http'}://${target.config.host}:${target.config.port}`, {
        connect: {
          timeout: pool.config.connectTimeout,
          rejectUnauthorized: pool.config.tls?.verify ?? true,
          secureContext: upstreamSecureContext(pool.config.tls),
          servername: pool.config.tls?.servername,
        },
      });
      const answer = await target.http.request({
        method: req.method as 'GET',
        path: target.config.basePath + upstreamPath(route, req.url ?? '/'),
        headers,
        body: hasBody ? bodyOf(req) : null,
        signal: abort.signal,
        // Not connectTimeout: a long poll (socket.io, SockJS) holds its answer for tens of seconds.
        // An upstream silent for the route's idleTimeout, before or within its answer, is cut (504
        // before the answer), as a WebSocket silent both ways is closed.
        headersTimeout: route.limits.idleTimeout,
        bodyTimeout: route.limits.idleTimeout,
      });
      answered = true;
      dialSucceeded(target.state);
      const out: string[] = [];
      for (const [name, value] of Object.entries(answer.headers)) {
        if (value === undefined || HOP_BY_HOP.has(name)) continue;
        if (Array.isArray(value)) for (const v of value) out.push(name, v);
        else out.push(name, value);
      }
      res.writeHead(answer.statusCode, out);
      await pipeline(answer.body, res);
      return;
    } catch (err) {
      if (abort.signal.aborted) return;
      if (REFUSED_REQUEST.has((err as { code?: string }).code ?? '')) {
        return fail(log, res, new GatewayError('HANDSHAKE_MALFORMED', `request not sent upstream: ${(err as Error).message}`, { cause: err }));
      }
      const gw = new GatewayError(undiciErrorCode(err), `${target.config.url}: ${(err as Error).message}`, { cause: err });
      log.warn({ target: target.id, code: gw.code, err: gw.message }, 'http passthrough attempt failed');
      // Like a failed WebSocket dial, a target that could not be reached or gave no answer counts towards its ejection.
      if (!answered && gw.spec.source === 'upstream') dialFailed(target.state);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (!gw.spec.retryable || --attempts <= 0) return fail(log, res, gw);
      (tried ??= new Set()).add(target);
      lastError = gw;
    } finally {
      target.active--;
    }
  }
}

/**
 * The request's body as undici gets it: through a PassThrough, because on a
 * failed attempt undici destroys the body it was given, and the request
 * itself would take the client's connection with it, and with it the 502.
 */
function bodyOf(req: IncomingMessage): PassThrough {
  const body = new PassThrough();
  body.on('error', noop);
  return req.pipe(body);
}

function noop(): void {}

/**
 * Expect: 100-continue was Node's server's to answer, and it has (it sends
 * the 100 itself); undici refuses to send the header, and the request would
 * fail on every target.
 */
function withoutExpect(headers: string[]): string[] {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length === 6 && headers[i]!.toLowerCase() === 'expect') {
      headers.splice(i, 2);
      i -= 2;
    }
  }
  return headers;
}

function undiciErrorCode(err: unknown): ErrorCode {
  if (err instanceof undiciErrors.ConnectTimeoutError || err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
    return 'UPSTREAM_TIMEOUT';
  }
  if (err instanceof undiciErrors.HTTPParserError || err instanceof undiciErrors.HeadersOverflowError) return 'UPSTREAM_BAD_RESPONSE';
  // Socket errors map as a WebSocket dial's do, so both count the same towards ejection.
  return upstreamErrorCode(err as NodeJS.ErrnoException);
}

/** Answers a non-upgrade request with the catalogue's status and text (or the answer the error carries). */
export function fail(log: Logger, res: ServerResponse, err: GatewayError): void {
  const url = res.req.url ?? '/';
  const q = url.indexOf('?');
  // The query may carry a token: it is never logged.
  const path = q === -1 ? url : url.slice(0, q);
  const trace = traceOf(res.req);
  // A request whose connection is gone has no socket left to name.
  const socket = res.req.socket as Socket | null;
  log.info(
    {
      client: socket === null ? undefined : peerAddress(socket),
      method: res.req.method,
      path,
      status: err.status,
      code: err.code,
      reason: err.message,
      trace: trace.traceId,
      requestId: trace.requestId,
    },
    'request rejected',
  );
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: string[] = [];
  for (const line of err.answer?.headers ?? err.headers ?? []) {
    const colon = line.indexOf(':');
    headers.push(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  // HTTP/2 has no Connection field (RFC 9113 §8.2.2): the stream ends with the answer anyway.
  if (res.req.httpVersionMajor === 2) dropHopByHop(headers);
  else headers.push('connection', 'close');
  if (err.answer !== undefined) {
    res.writeHead(err.answer.status, headers);
    res.end(err.answer.body);
    return;
  }
  headers.push('content-type', 'text/plain; charset=utf-8');
  res.writeHead(err.spec.httpStatus, headers);
  res.end(err.spec.text + '\n');
}

/** Takes the fields an HTTP/2 answer must not carry out of flat [name, value…] headers. */
function dropHopByHop(headers: string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) if (HOP_BY_HOP.has(headers[i]!.toLowerCase())) headers.splice(i, 2);
}
