import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { DestinationStream } from 'pino';
import type { Config } from './config/types.js';
import { GatewayError, type ErrorCode } from './errors.js';
import { createLogger, type Logger } from './observability/logger.js';
import { Listener } from './listener/listener.js';
import { looksLikeUpgrade, validateUpgrade } from './handshake/validate-upgrade.js';
import { reject } from './handshake/reject.js';
import { IdleSweeper } from './relay/idle-sweeper.js';
import type { Relay } from './relay/relay.js';
import { Session } from './session/upgrade.js';
import type { SessionHost } from './session/session-host.js';
import { fail, passThrough } from './session/http-passthrough.js';
import { buildSnapshot, type Snapshot } from './snapshot.js';

export interface GatewayOptions {
  /** Where log lines go (default stdout); tests and embedders capture them here. */
  readonly logDestination?: DestinationStream;
  readonly logger?: Logger;
}

export interface GatewayStats {
  /** Sessions from admission to close, handshakes in flight included. */
  readonly sessions: number;
  readonly draining: boolean;
}

export interface Gateway {
  /** Binds every listener; rejects if one cannot be bound. */
  start(): Promise<void>;
  /** Stops accepting, lets sessions run up to shutdown.drainTimeout, then cuts them. */
  stop(): Promise<void>;
  /** Bound addresses, in the order of config.listeners (after start). */
  readonly addresses: readonly AddressInfo[];
  readonly log: Logger;
  stats(): GatewayStats;
}

export function createGateway(config: Config, options: GatewayOptions = {}): Gateway {
  return new WsGateway(config, options);
}

class WsGateway implements Gateway, SessionHost {
  readonly log: Logger;
  readonly accessLog: boolean;
  readonly sweeper: IdleSweeper<Relay>;
  readonly #listeners: Listener[];
  readonly #sessions = new Set<Session>();
  readonly #perRoute = new Map<string, number>();
  #snap: Snapshot;
  #addresses: AddressInfo[] = [];
  #draining = false;
  #lastId = 0;

  constructor(config: Config, options: GatewayOptions) {
    this.log = options.logger ?? createLogger(config.log, options.logDestination);
    this.accessLog = config.log.accessLog;
    this.#snap = buildSnapshot(config);
    this.sweeper = new IdleSweeper(sweepTick(config));
    const handlers = {
      upgrade: this.#onUpgrade,
      request: this.#onRequest,
      clientError: this.#onClientError,
    };
    this.#listeners = config.listeners.map((l) => new Listener(l, config.limits, handlers));
  }

  get addresses(): readonly AddressInfo[] {
    return this.#addresses;
  }

  get draining(): boolean {
    return this.#draining;
  }

  stats(): GatewayStats {
    return { sessions: this.#sessions.size, draining: this.#draining };
  }

  nextId(): number {
    return ++this.#lastId;
  }

  async start(): Promise<void> {
    for (const path of this.#snap.config.inert) {
      this.log.warn({ key: path }, `${path}: not implemented yet; this setting has no effect`);
    }
    try {
      this.#addresses = await Promise.all(this.#listeners.map((l) => l.listen()));
    } catch (err) {
      await Promise.all(this.#listeners.map((l) => l.close()));
      throw err;
    }
    this.log.info({ listeners: this.#addresses.map((a) => `${a.address}:${a.port}`), relay: this.#snap.relay.mode }, 'wsgate started');
  }

  async stop(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    const drainTimeout = this.#snap.config.shutdown.drainTimeout;
    this.log.info({ sessions: this.#sessions.size, drainTimeout }, 'draining');
    const closed = Promise.all(this.#listeners.map((l) => l.close()));
    await this.#waitForSessions(drainTimeout);
    for (const s of this.#sessions) s.close('shutdown');
    for (const l of this.#listeners) l.server.closeAllConnections();
    await closed;
    this.sweeper.stop();
    await Promise.all([...this.#snap.pools.values()].map((p) => p.close()));
    this.log.info('wsgate stopped');
  }

  #waitForSessions(ms: number): Promise<void> {
    if (this.#sessions.size === 0 || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const poll = setInterval(() => this.#sessions.size === 0 && done(), 50);
      function done(): void {
        clearTimeout(timer);
        clearInterval(poll);
        resolve();
      }
    });
  }

  sessionEnded(session: Session): void {
    this.#sessions.delete(session);
    const name = session.route.name;
    this.#perRoute.set(name, (this.#perRoute.get(name) ?? 1) - 1);
  }

  #onUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer, secure: boolean): void => {
    // Node's HTTP server drops its own error listener on upgrade.
    socket.on('error', destroySocket);
    const snap = this.#snap;
    if (this.#draining) return this.#reject(req, socket, new GatewayError('SHUTTING_DOWN', 'gateway is draining'));
    const invalid = validateUpgrade(req);
    if (invalid !== undefined) return this.#reject(req, socket, invalid);
    const route = snap.routes.match(req.headers.host, pathOf(req.url), req.headers);
    if (route === undefined) return this.#reject(req, socket, new GatewayError('NO_ROUTE', `no route for ${req.headers.host ?? ''}${req.url ?? ''}`));
    const inRoute = this.#perRoute.get(route.name) ?? 0;
    if (this.#sessions.size >= snap.limits.maxConnections || inRoute >= route.limits.maxConnections) {
      return this.#reject(req, socket, new GatewayError('OVER_CAPACITY', `maxConnections reached (route ${route.name})`));
    }
    const session = new Session(this, snap, route, snap.pools.get(route.upstream)!, req, socket, head, secure);
    this.#sessions.add(session);
    this.#perRoute.set(route.name, inRoute + 1);
    session.watchClient();
    session.connect();
  };

  #reject(req: IncomingMessage, socket: Socket, err: GatewayError): void {
    this.log.info(
      { client: socket.remoteAddress, url: req.url, status: err.spec.httpStatus, code: err.code, reason: err.message },
      'handshake rejected',
    );
    reject(socket, err.spec.httpStatus, err.spec.text, err.code === 'VERSION_UNSUPPORTED' ? ['Sec-WebSocket-Version: 13'] : undefined);
  }

  #onRequest = (req: IncomingMessage, res: ServerResponse, secure: boolean): void => {
    const snap = this.#snap;
    if (looksLikeUpgrade(req)) {
      // An upgrade attempt the HTTP parser did not treat as one (no Connection: upgrade).
      const err = validateUpgrade(req) ?? new GatewayError('HANDSHAKE_MALFORMED', 'not a valid upgrade request');
      return this.#failRequest(res, err);
    }
    if (this.#draining) return this.#failRequest(res, new GatewayError('SHUTTING_DOWN', 'gateway is draining'));
    const route = snap.routes.match(req.headers.host, pathOf(req.url), req.headers);
    if (route === undefined) return this.#failRequest(res, new GatewayError('NO_ROUTE', `no route for ${req.headers.host ?? ''}${req.url ?? ''}`));
    passThrough(this.log, snap, route, snap.pools.get(route.upstream)!, req, res, secure).catch((err: unknown) => {
      this.log.error({ err }, 'http passthrough failed');
      res.destroy();
    });
  };

  #failRequest(res: ServerResponse, err: GatewayError): void {
    if (err.code === 'VERSION_UNSUPPORTED') res.setHeader('Sec-WebSocket-Version', '13');
    fail(this.log, res, err);
  }

  #onClientError = (err: NodeJS.ErrnoException, socket: Socket): void => {
    socket.on('error', destroySocket);
    const code: ErrorCode | undefined =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? 'HEADERS_TOO_LARGE'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? 'HANDSHAKE_TIMEOUT'
          : err.code === 'ECONNRESET' || err.code === 'EPIPE'
            ? undefined
            : 'HANDSHAKE_MALFORMED';
    if (code === undefined) {
      socket.destroy();
      return;
    }
    const spec = new GatewayError(code, err.message).spec;
    this.log.info({ client: socket.remoteAddress, status: spec.httpStatus, code, reason: err.code ?? err.message }, 'request rejected');
    reject(socket, spec.httpStatus, spec.text);
  };
}

function destroySocket(this: Socket): void {
  this.destroy();
}

function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** One sweep tick serves every idle timeout: fine enough for the shortest, never busier than 20/s. */
function sweepTick(config: Config): number {
  let shortest = Infinity;
  for (const t of [config.limits.idleTimeout, ...config.routes.map((r) => r.limits.idleTimeout)]) {
    if (t > 0 && t < shortest) shortest = t;
  }
  return shortest === Infinity ? 1_000 : Math.max(50, Math.min(1_000, Math.floor(shortest / 10)));
}
