import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { DestinationStream } from 'pino';
import type { Config } from './config/types.js';
import { ConfigError, loadConfig } from './config/load.js';
import { ConfigWatcher } from './config/watch.js';
import { GatewayError, type ErrorCode } from './errors.js';
import { createLogger, type Logger } from './observability/logger.js';
import { logTargetEvent } from './observability/target-log.js';
import { Listener } from './listener/listener.js';
import { looksLikeUpgrade, validateUpgrade } from './handshake/validate-upgrade.js';
import { reject, rejectError } from './handshake/reject.js';
import type { UpgradeRequest } from './handshake/request-head.js';
import { peerAddress } from './listener/peer-address.js';
import { AuthResources } from './auth/auth-resources.js';
import type { AuthResult } from './auth/route-auth.js';
import { Gatekeeper } from './policy/gatekeeper.js';
import { securityWarnings } from './policy/security-warnings.js';
import { IdleSweeper } from './relay/idle-sweeper.js';
import type { Relay } from './relay/relay.js';
import { Session } from './session/upgrade.js';
import type { SessionHost } from './session/session-host.js';
import { fail, passThrough } from './session/http-passthrough.js';
import { buildSnapshot, prepareSnapshot, type Snapshot } from './snapshot.js';
import { ListenerSet } from './listener-set.js';
import { TargetRegistry } from './upstream/target-registry.js';
import type { TargetEvent, TargetState } from './upstream/target-state.js';
import { HealthMonitor } from './health/health-monitor.js';
import { AdminServer, type AdminHost } from './admin/admin-server.js';
import { targetStatus, upstreamStatus, type TargetStatus, type UpstreamStatus } from './admin/status.js';

export interface GatewayOptions {
  /** Where log lines go (default stdout); tests and embedders capture them here. */
  readonly logDestination?: DestinationStream;
  readonly logger?: Logger;
  /** The file the config came from: reload() without a config re-reads it, and `watch: true` watches it. */
  readonly configFile?: string;
}

/** What a reload did, or why it did nothing. */
export type ReloadResult =
  | {
      readonly ok: true;
      readonly listenersAdded: readonly string[];
      readonly listenersRemoved: readonly string[];
      readonly targetsAdded: readonly string[];
      readonly targetsRemoved: readonly string[];
    }
  | { readonly ok: false; readonly errors: readonly string[] };

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
  /**
   * Applies a new config (or re-reads options.configFile) to new connections:
   * routes, upstreams, limits, listeners. Open connections keep going. An
   * invalid config, or a new address that cannot be bound, changes nothing;
   * every problem is logged and returned. Never rejects.
   */
  reload(config?: Config): Promise<ReloadResult>;
  /** The admin listener's address (after start), when `admin` is configured. */
  readonly adminAddress: AddressInfo | undefined;
  upstreamStatus(): readonly UpstreamStatus[];
  /** Operator drain (true) or undrain of a target; undefined when there is no such target. */
  setTargetDrained(upstream: string, index: number, drained: boolean): TargetStatus | undefined;
}

export function createGateway(config: Config, options: GatewayOptions = {}): Gateway {
  return new WsGateway(config, options);
}

class WsGateway implements Gateway, SessionHost, AdminHost {
  readonly log: Logger;
  accessLog: boolean;
  readonly sweeper: IdleSweeper<Relay>;
  readonly #listeners: ListenerSet;
  readonly #registry: TargetRegistry;
  readonly #monitor = new HealthMonitor();
  readonly #configFile: string | undefined;
  /** The logger is ours (not an embedder's): a reload may change its level. */
  readonly #ownLogger: boolean;
  #admin: AdminServer | undefined;
  #adminAddress: AddressInfo | undefined;
  #watcher: ConfigWatcher | undefined;
  /** Reloads run one after the other. */
  #reloading: Promise<unknown> = Promise.resolve();
  #started = false;
  readonly #sessions = new Set<Session>();
  readonly #perRoute = new Map<string, number>();
  /** Forward-auth pools and JWKS caches, kept across reloads. */
  readonly #auth = new AuthResources();
  /** Per-address limit state and the rejection-log throttle, kept across reloads. */
  readonly #gate: Gatekeeper;
  #snap: Snapshot;
  #addresses: AddressInfo[] = [];
  #draining = false;
  #lastId = 0;

  constructor(config: Config, options: GatewayOptions) {
    this.log = options.logger ?? createLogger(config.log, options.logDestination);
    this.#gate = new Gatekeeper(this.log);
    this.accessLog = config.log.accessLog;
    this.#configFile = options.configFile;
    this.#ownLogger = options.logger === undefined;
    this.#registry = new TargetRegistry(this.#onTargetEvent);
    this.#registry.sync(config.upstreams);
    this.#snap = buildSnapshot(config, this.#registry, prepareSnapshot(config, this.#auth));
    this.sweeper = new IdleSweeper(sweepTick(config));
    const handlers = {
      upgrade: this.#onUpgrade,
      request: this.#onRequest,
      clientError: this.#onClientError,
      accept: (socket: Socket): boolean => this.#gate.acceptSocket(socket, this.#snap),
      log: this.log,
    };
    this.#listeners = new ListenerSet((l, limits) => new Listener(l, limits, handlers));
  }

  get adminAddress(): AddressInfo | undefined {
    return this.#adminAddress;
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
    for (const w of securityWarnings(this.#snap.config)) this.log.warn({ key: w.key }, w.message);
    for (const path of this.#snap.config.inert) {
      this.log.warn({ key: path }, `${path}: not implemented yet; this setting has no effect`);
    }
    const config = this.#snap.config;
    this.#addresses = await this.#listeners.start(config.listeners, config.limits);
    if (config.admin !== undefined) {
      const admin = new AdminServer(config.admin, this, this.log);
      try {
        this.#adminAddress = await admin.listen();
      } catch (err) {
        await this.#listeners.close();
        throw err;
      }
      this.#admin = admin;
    }
    this.#started = true;
    this.#monitor.apply(config.upstreams, this.#registry);
    this.#applyWatch();
    this.log.info(
      {
        listeners: this.#addresses.map((a) => `${a.address}:${a.port}`),
        admin: this.#adminAddress && `${this.#adminAddress.address}:${this.#adminAddress.port}`,
        relay: this.#snap.relay.mode,
      },
      'wsgate started',
    );
  }

  async stop(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    const drainTimeout = this.#snap.config.shutdown.drainTimeout;
    this.log.info({ sessions: this.#sessions.size, drainTimeout }, 'draining');
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#monitor.stop();
    // Reloads stop here: a drain in progress must not be undone by a new config.
    await this.#reloading;
    const closed = this.#listeners.close();
    // Inspect mode says goodbye at once (1001 both ways) and waits for the
    // close handshakes; tunnel mode cannot, so its sessions run until the end.
    if (this.#snap.relay.mode === 'inspect') for (const s of this.#sessions) s.close('shutdown');
    await this.#waitForSessions(drainTimeout);
    this.#registry.stopTimers();
    for (const s of this.#sessions) s.close('shutdown');
    this.#listeners.closeAllConnections();
    await closed;
    this.sweeper.stop();
    await this.#registry.close();
    await this.#admin?.close();
    await this.#auth.close();
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

  reload(config?: Config): Promise<ReloadResult> {
    const run = this.#reloading.then(() => this.#reload(config));
    this.#reloading = run.catch(noop);
    return run.catch((err: unknown) => this.#reloadFailed([`reload failed: ${(err as Error).message}`]));
  }

  async #reload(given: Config | undefined): Promise<ReloadResult> {
    if (!this.#started || this.#draining) return this.#reloadFailed(['the gateway is not running']);
    let config = given;
    if (config === undefined) {
      if (this.#configFile === undefined) return this.#reloadFailed(['no config file to re-read']);
      try {
        config = await loadConfig(this.#configFile);
      } catch (err) {
        return this.#reloadFailed(err instanceof ConfigError ? err.problems : [(err as Error).message]);
      }
    }
    // Everything that can fail comes first (key files, binding new addresses); then the switch, which cannot.
    let prepared;
    try {
      prepared = prepareSnapshot(config, this.#auth);
    } catch (err) {
      return this.#reloadFailed([(err as Error).message]);
    }
    let plan;
    try {
      plan = await this.#listeners.prepare(config.listeners, config.limits);
    } catch (err) {
      return this.#reloadFailed([(err as Error).message]);
    }
    let admin: AdminServer | undefined;
    let adminAddress: AddressInfo | undefined;
    const oldAdmin = this.#admin;
    const adminMoves = config.admin !== undefined && (oldAdmin === undefined || !sameAddress(oldAdmin.config, config.admin));
    if (adminMoves) {
      admin = new AdminServer(config.admin!, this, this.log);
      try {
        adminAddress = await admin.listen();
      } catch (err) {
        await plan.rollback();
        return this.#reloadFailed([(err as Error).message]);
      }
    }
    if (this.#draining) {
      await plan.rollback();
      await admin?.close();
      return this.#reloadFailed(['the gateway is shutting down']);
    }
    const targets = this.#registry.sync(config.upstreams);
    this.#snap = buildSnapshot(config, this.#registry, prepared);
    this.sweeper.retune(sweepTick(config));
    this.#monitor.apply(config.upstreams, this.#registry);
    const listeners = plan.commit();
    this.#addresses = listeners.addresses;
    if (adminMoves) {
      this.#admin = admin;
      this.#adminAddress = adminAddress;
      void oldAdmin?.close();
    } else if (config.admin === undefined) {
      this.#admin = undefined;
      this.#adminAddress = undefined;
      void oldAdmin?.close();
    } else {
      oldAdmin!.update(config.admin);
    }
    if (this.#ownLogger) this.log.level = config.log.level;
    this.accessLog = config.log.accessLog;
    this.#applyWatch();
    for (const path of config.inert) this.log.warn({ key: path }, `${path}: not implemented yet; this setting has no effect`);
    for (const w of securityWarnings(config)) this.log.warn({ key: w.key }, w.message);
    const result = {
      ok: true as const,
      listenersAdded: listeners.added,
      listenersRemoved: listeners.removed,
      targetsAdded: targets.added.map((t) => t.id),
      targetsRemoved: targets.removed.map((t) => t.id),
    };
    this.log.info({ ...result, ok: undefined }, 'config reloaded');
    return result;
  }

  #reloadFailed(errors: readonly string[]): ReloadResult {
    for (const problem of errors) this.log.error({ problem }, `reload rejected: ${problem}`);
    this.log.error({ problems: errors.length }, 'reload rejected; the running configuration stays in place');
    return { ok: false, errors };
  }

  /** Watches the config file while `watch: true` (and there is a file). */
  #applyWatch(): void {
    const want = this.#snap.config.watch && this.#configFile !== undefined && !this.#draining;
    if (!want) {
      this.#watcher?.close();
      this.#watcher = undefined;
      return;
    }
    if (this.#watcher !== undefined) return;
    this.#watcher = new ConfigWatcher(
      this.#configFile!,
      () => {
        this.log.info({ file: this.#configFile }, 'config file changed; reloading');
        void this.reload();
      },
      (err) => this.log.error({ err }, 'config file watch failed'),
    );
  }

  upstreamStatus(): readonly UpstreamStatus[] {
    const now = Date.now();
    return [...this.#snap.pools.values()].map((pool) => upstreamStatus(pool, this.#registry.removedStates(pool.name), now));
  }

  setTargetDrained(upstream: string, index: number, drained: boolean): TargetStatus | undefined {
    const target = this.#snap.pools.get(upstream)?.targets[index];
    if (target === undefined) return undefined;
    if (drained) target.state.drain('operator');
    else target.state.undrain('operator');
    return targetStatus(target, index);
  }

  #onTargetEvent = (state: TargetState, event: TargetEvent): void => logTargetEvent(this.log, state, event);

  sessionEnded(session: Session): void {
    this.#sessions.delete(session);
    const ipEntry = session.admission.ipEntry;
    if (ipEntry !== undefined) this.#gate.release(ipEntry);
    const name = session.route.name;
    this.#perRoute.set(name, (this.#perRoute.get(name) ?? 1) - 1);
  }

  #onUpgrade = (req: UpgradeRequest, socket: Socket, head: Buffer, secure: boolean): void => {
    // Node's HTTP server drops its own error listener on upgrade.
    socket.on('error', destroySocket);
    const snap = this.#snap;
    if (this.#draining) return this.#reject(req, socket, new GatewayError('SHUTTING_DOWN', 'gateway is draining'));
    const invalid = validateUpgrade(req);
    if (invalid !== undefined) return this.#reject(req, socket, invalid);
    const path = pathOf(req.url);
    const route = snap.routes.match(req.headers.host, path, req.headers);
    if (route === undefined) return this.#reject(req, socket, new GatewayError('NO_ROUTE', `no route for ${req.headers.host ?? ''}${path}`));
    // Policy, cheapest first; nothing here touches an upstream (docs/security.md).
    const guard = snap.guards.get(route);
    const client = snap.trusted.clientAddress(peerAddress(socket), req);
    const ipEntry = this.#gate.admitHandshake(guard, req, client);
    if (ipEntry instanceof GatewayError) return this.#reject(req, socket, ipEntry, client);
    const inRoute = this.#perRoute.get(route.name) ?? 0;
    if (this.#sessions.size >= snap.limits.maxConnections || inRoute >= route.limits.maxConnections) {
      this.#gate.release(ipEntry);
      return this.#reject(req, socket, new GatewayError('OVER_CAPACITY', `maxConnections reached (route ${route.name})`), client);
    }
    const admission = { client, ipEntry, auth: guard.auth };
    const session = new Session(this, snap, route, snap.pools.get(route.upstream)!, req, socket, head, secure, admission);
    this.#sessions.add(session);
    this.#perRoute.set(route.name, inRoute + 1);
    session.watchClient();
    session.begin();
  };

  /** Logs (at most 100 lines a second, with a count of those left out) and answers a refused handshake. */
  #reject(req: UpgradeRequest, socket: Socket, err: GatewayError, client = peerAddress(socket)): void {
    this.logRejected({ client, path: pathOf(req.url), status: err.status, code: err.code, reason: err.message });
    if (err.code === 'VERSION_UNSUPPORTED') reject(socket, err.spec.httpStatus, err.spec.text, ['Sec-WebSocket-Version: 13']);
    else rejectError(socket, err);
  }

  logRejected(fields: Record<string, unknown>): void {
    this.#gate.logRejected(fields);
  }

  #onRequest = (req: IncomingMessage, res: ServerResponse, secure: boolean): void => {
    const snap = this.#snap;
    if (looksLikeUpgrade(req)) {
      // An upgrade attempt the HTTP parser did not treat as one (no Connection: upgrade).
      const err = validateUpgrade(req) ?? new GatewayError('HANDSHAKE_MALFORMED', 'not a valid upgrade request');
      return this.#failRequest(res, err);
    }
    if (this.#draining) return this.#failRequest(res, new GatewayError('SHUTTING_DOWN', 'gateway is draining'));
    const path = pathOf(req.url);
    const route = snap.routes.match(req.headers.host, path, req.headers);
    if (route === undefined) return this.#failRequest(res, new GatewayError('NO_ROUTE', `no route for ${req.headers.host ?? ''}${path}`));
    // Plain requests pass the route's IP lists and authentication too: a route's backend is never reachable around them.
    const client = snap.trusted.clientAddress(peerAddress(req.socket), req);
    this.#gate.admitRequest(
      snap.guards.get(route),
      req,
      res,
      { client, secure },
      (granted: AuthResult | undefined) => {
        passThrough(this.log, snap, route, snap.pools.get(route.upstream)!, req, res, secure, granted).catch((err: unknown) => {
          this.log.error({ err }, 'http passthrough failed');
          res.destroy();
        });
      },
      (err: GatewayError) => this.#failRequest(res, err),
    );
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
    this.log.info({ client: peerAddress(socket), status: spec.httpStatus, code, reason: err.code ?? err.message }, 'request rejected');
    reject(socket, spec.httpStatus, spec.text);
  };
}

function sameAddress(a: { host: string; port: number }, b: { host: string; port: number }): boolean {
  return a.host === b.host && a.port === b.port;
}

function noop(): void {}

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
