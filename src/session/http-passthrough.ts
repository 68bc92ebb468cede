import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Pool, errors as undiciErrors } from 'undici';
import type { RouteConfig } from '../config/types.js';
import { GatewayError, type ErrorCode } from '../errors.js';
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
  const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
  const headers = forwardHeaders(req, { path: '', peer, trusted: snap.trusted.trusts(peer), secure, extra: granted?.headers, trace: traceOf(req) });
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
        body: hasBody ? req : null,
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

function undiciErrorCode(err: unknown): ErrorCode {
  if (err instanceof undiciErrors.ConnectTimeoutError || err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError) {
    return 'UPSTREAM_TIMEOUT';
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH') return 'UPSTREAM_REFUSED';
  return 'UPSTREAM_RESET';
}

/** Answers a non-upgrade request with the catalogue's status and text (or the answer the error carries). */
export function fail(log: Logger, res: ServerResponse, err: GatewayError): void {
  const url = res.req.url ?? '/';
  const q = url.indexOf('?');
  // The query may carry a token: it is never logged.
  const path = q === -1 ? url : url.slice(0, q);
  const trace = traceOf(res.req);
  log.info(
    {
      client: peerAddress(res.req.socket),
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
  if (err.answer !== undefined) {
    res.writeHead(err.answer.status, [...headers, 'connection', 'close']);
    res.end(err.answer.body);
    return;
  }
  res.writeHead(err.spec.httpStatus, [...headers, 'content-type', 'text/plain; charset=utf-8', 'connection', 'close']);
  res.end(err.spec.text + '\n');
}
