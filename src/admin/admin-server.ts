import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AdminConfig } from '../config/types.js';
import { serveDashboard } from './dashboard-assets.js';
import type { Logger } from '../observability/logger.js';
import type { TargetStatus, UpstreamStatus } from './status.js';
import type { ConnectionPage, ConnectionQuery, StatsSnapshot } from './stats.js';
import { parseConnectionQuery, validCloseCode } from './connections.js';
import { METRICS_CONTENT_TYPE } from '../observability/metrics.js';

/** A reload's outcome, as the admin API reports it. */
export type AdminReloadResult = { readonly ok: true; readonly [key: string]: unknown } | { readonly ok: false; readonly errors: readonly string[] };

type MaybePromise<T> = T | Promise<T>;

/** What the admin API needs from the gateway, or from a cluster primary answering for its workers. */
export interface AdminHost {
  /** Shutdown has begun: /readyz answers 503. */
  readonly draining: boolean;
  upstreamStatus(): MaybePromise<readonly UpstreamStatus[]>;
  /** undefined when there is no such upstream or index. */
  setTargetDrained(upstream: string, index: number, drained: boolean): MaybePromise<TargetStatus | undefined>;
  /** Re-reads the config file and applies it. */
  reload(): Promise<AdminReloadResult>;
  /** The instances of the gateway and their workers (GET /api/cluster). */
  cluster(): Promise<unknown>;
  /** The Prometheus text for /metrics; undefined when admin.metrics is off. */
  metricsText(): Promise<string | undefined>;
  statsSnapshot(): Promise<StatsSnapshot>;
  connections(query: ConnectionQuery): MaybePromise<ConnectionPage>;
  /** false when there is no such connection. */
  closeConnection(id: string, code: number, reason: string): MaybePromise<boolean>;
  /** The running configuration, secrets redacted. */
  config(): unknown;
}

const TARGET_ACTION = /^\/api\/upstreams\/([^/]+)\/targets\/(\d{1,6})\/(drain|undrain)$/;
const UPSTREAM = /^\/api\/upstreams\/([^/]+)$/;
const CONNECTION = /^\/api\/connections\/([0-9.]{1,24})$/;
const STREAM_INTERVAL_MS = 1_000;

/**
 * The admin listener: liveness, readiness, /metrics, a JSON API and the
 * dashboard. Health, readiness, metrics and the upstreams' state are open
 * (the listener is meant for loopback or a private network; Prometheus
 * scrapes without a token); every mutating call, and every read that shows
 * client addresses or the config, needs `Authorization: Bearer <admin.token>`
 * when a token is set.
 */
export class AdminServer {
  readonly server: Server;
  readonly #host: AdminHost;
  readonly #log: Logger;
  #config: AdminConfig;
  #tokenDigest: Buffer | undefined;

  constructor(config: AdminConfig, host: AdminHost, log: Logger) {
    this.#config = config;
    this.#host = host;
    this.#log = log;
    this.#tokenDigest = digestOf(config.token);
    this.server = createServer({ requestTimeout: 10_000, headersTimeout: 10_000 }, this.#onRequest);
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  get config(): AdminConfig {
    return this.#config;
  }

  /** A reload may change the token; the address needs a new server. */
  update(config: AdminConfig): void {
    this.#config = config;
    this.#tokenDigest = digestOf(config.token);
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`admin: cannot listen on ${this.#config.address}: ${err.message}`, { cause: err }));
      this.server.once('error', onError);
      this.server.listen({ host: this.#config.host, port: this.#config.port }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.#log.error({ err }, 'admin listener error'));
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  #onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const method = req.method ?? 'GET';
    const read = method === 'GET' || method === 'HEAD';
    if (path === '/healthz') {
      if (!read) return methodNotAllowed(res, 'GET, HEAD');
      return send(res, 200, { status: 'ok' });
    }
    if (path === '/readyz') {
      if (!read) return methodNotAllowed(res, 'GET, HEAD');
      return this.#host.draining ? send(res, 503, { ready: false, reason: 'draining' }) : send(res, 200, { ready: true });
    }
    if (path === '/api/upstreams') {
      if (!read) return methodNotAllowed(res, 'GET, HEAD');
      return answer(res, this.#host.upstreamStatus(), (upstreams) => send(res, 200, { upstreams }));
    }
    if (path === '/api/cluster') {
      if (!read) return methodNotAllowed(res, 'GET, HEAD');
      return answer(res, this.#host.cluster(), (cluster) => send(res, 200, cluster));
    }
    const one = UPSTREAM.exec(path);
    if (one !== null) {
      if (!read) return methodNotAllowed(res, 'GET, HEAD');
      const name = decode(one[1]!);
      return answer(res, this.#host.upstreamStatus(), (all) => {
        const upstream = all.find((u) => u.name === name);
        if (upstream === undefined) send(res, 404, { error: `no upstream named "${name}"` });
        else send(res, 200, upstream);
      });
    }
    const action = TARGET_ACTION.exec(path);
    if (action !== null) {
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      if (!this.#authorized(req, res)) return;
      const name = decode(action[1]!);
      const index = Number(action[2]);
      const drained = action[3] === 'drain';
      return answer(res, this.#host.setTargetDrained(name, index, drained), (target) => {
        if (target === undefined) return send(res, 404, { error: `no target ${index} in upstream "${name}"` });
        this.#log.info({ target: target.id, client: req.socket.remoteAddress }, drained ? 'admin: target drained' : 'admin: target undrained');
        send(res, 200, { target });
      });
    }
    if (path === '/api/reload') {
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      if (!this.#authorized(req, res)) return;
      this.#log.info({ client: req.socket.remoteAddress }, 'admin: reload requested');
      this.#host.reload().then(
        (result) => send(res, result.ok ? 200 : 422, result),
        (err: unknown) => send(res, 500, { ok: false, errors: [(err as Error).message] }),
      );
      return;
    }
    if (path === '/metrics') {
      if (!read) return methodNotAllowed(res, 'GET, HEAD');
      return answer(res, this.#host.metricsText(), (text) => {
        if (text === undefined) return send(res, 404, { error: 'metrics are off (admin.metrics: false)' });
        res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
        res.end(method === 'HEAD' ? undefined : text);
      });
    }
    if (path === '/api/stats') {
      if (!read) return methodNotAllowed(res, 'GET, HEAD');
      if (!this.#authorized(req, res)) return;
      return answer(res, this.#host.statsSnapshot(), (stats) => send(res, 200, stats));
    }
    if (path === '/api/stats/stream') {
      if (method !== 'GET') return methodNotAllowed(res, 'GET');
      if (!this.#authorized(req, res)) return;
      return this.#streamStats(res);
    }
    if (path === '/api/config') {
      if (!read) return methodNotAllowed(res, 'GET, HEAD');
      if (!this.#authorized(req, res)) return;
      return send(res, 200, this.#host.config());
    }
    if (path === '/api/connections') {
      if (!read) return methodNotAllowed(res, 'GET, HEAD');
      if (!this.#authorized(req, res)) return;
      const query = parseConnectionQuery(new URL(req.url ?? '/', 'http://admin').searchParams);
      if (typeof query === 'string') return send(res, 400, { error: query });
      return answer(res, this.#host.connections(query), (page) => send(res, 200, page));
    }
    const conn = CONNECTION.exec(path);
    if (conn !== null) {
      if (method !== 'DELETE') return methodNotAllowed(res, 'DELETE');
      if (!this.#authorized(req, res)) return;
      return void readCloseRequest(req).then(
        (close) => {
          if (typeof close === 'string') return send(res, 400, { error: close });
          const id = conn[1]!;
          answer(res, this.#host.closeConnection(id, close.code, close.reason), (closed) => {
            if (!closed) return send(res, 404, { error: `no connection ${id}` });
            this.#log.info({ connection: id, code: close.code, client: req.socket.remoteAddress }, 'admin: connection closed');
            send(res, 200, { closed: id, code: close.code });
          });
        },
        // The client went away while its body was being read: no one is left to answer.
        () => res.destroy(),
      );
    }
    if (read && serveDashboard(path, res)) return;
    send(res, 404, { error: 'not found' });
  };

  /** Server-sent events: a stats snapshot now and every second, until the viewer leaves. */
  #streamStats(res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    let busy = false;
    const push = (): void => {
      if (busy) return;
      busy = true;
      this.#host.statsSnapshot().then(
        (stats) => {
          busy = false;
          if (!res.destroyed) res.write(`data: ${JSON.stringify(stats)}\n\n`);
        },
        (err: unknown) => {
          busy = false;
          if (!res.destroyed) res.write(`event: error\ndata: ${JSON.stringify({ error: (err as Error).message })}\n\n`);
        },
      );
    };
    const timer = setInterval(push, STREAM_INTERVAL_MS);
    res.once('close', () => clearInterval(timer));
    push();
  }

  /** Bearer token check for mutating calls; answers 401 itself when it fails. */
  #authorized(req: IncomingMessage, res: ServerResponse): boolean {
    const expected = this.#tokenDigest;
    if (expected === undefined) return true;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    // Digests of equal length make the comparison constant-time whatever the token's length.
    if (match !== null && timingSafeEqual(digestOf(match[1]!)!, expected)) return true;
    this.#log.warn({ client: req.socket.remoteAddress, url: req.url }, 'admin: unauthorized request');
    res.setHeader('WWW-Authenticate', 'Bearer realm="wsgate"');
    send(res, 401, { error: 'a valid bearer token is required' });
    return false;
  }
}

/** Answers with `value` once it is there; a failure becomes a 503 with its message. */
function answer<T>(res: ServerResponse, value: MaybePromise<T>, reply: (v: T) => void): void {
  if (!(value instanceof Promise)) return reply(value);
  value.then(reply, (err: unknown) => send(res, 503, { error: (err as Error).message }));
}

/** DELETE /api/connections/ID: code and reason from a JSON body or the query (default 1000, ""). */
async function readCloseRequest(req: IncomingMessage): Promise<{ code: number; reason: string } | string> {
  const params = new URL(req.url ?? '/', 'http://admin').searchParams;
  let body: { code?: unknown; reason?: unknown } = {};
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 4096) return 'the body is larger than 4 KiB';
    chunks.push(chunk);
  }
  if (size > 0) {
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
    } catch {
      return 'the body is not JSON';
    }
    if (typeof body !== 'object' || body === null) return 'the body must be a JSON object';
  }
  const code = body.code ?? (params.has('code') ? Number(params.get('code')) : 1000);
  const reason = body.reason ?? params.get('reason') ?? '';
  if (typeof code !== 'number' || !validCloseCode(code)) return 'code: must be 1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999';
  if (typeof reason !== 'string' || Buffer.byteLength(reason) > 123) return 'reason: must be a string of at most 123 bytes';
  return { code, reason };
}

function digestOf(token: string): Buffer | undefined {
  return token === '' ? undefined : createHash('sha256').update(token).digest();
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  res.setHeader('Allow', allow);
  send(res, 405, { error: 'method not allowed' });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}
