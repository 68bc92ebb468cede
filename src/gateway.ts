import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { DestinationStream } from 'pino';
import type { Config } from './config/types.js';
import { ConfigError, loadConfig } from './config/load.js';
import { ConfigWatcher } from './config/watch.js';
import { createLogger, type Logger } from './observability/logger.js';
import { reloadRejected } from './observability/reload-log.js';
import { logTargetEvent } from './observability/target-log.js';
import { Listener } from './listener/listener.js';
import { AuthResources } from './auth/auth-resources.js';
import { Gatekeeper } from './policy/gatekeeper.js';
import { securityWarnings } from './policy/security-warnings.js';
import { IdleSweeper } from './relay/idle-sweeper.js';
import { HANDLE_IO, SHARED_READS } from './relay/handle-io.js';
import { nativeModule } from './relay/native-module.js';
import { NATIVE_RELAY, NATIVE_RELAY_MISSING } from './relay/native-tunnel.js';
import { NATIVE_INSPECT } from './relay/native-inspect.js';
import type { Relay } from './relay/relay.js';
import type { Session } from './session/upgrade.js';
import { FrontDoor, type FrontDoorHost } from './session/front-door.js';
import { buildSnapshot, prepareSnapshot, type Snapshot } from './snapshot.js';
import { ListenerSet } from './listener-set.js';
import { TargetRegistry } from './upstream/target-registry.js';
import type { TargetEvent, TargetState } from './upstream/target-state.js';
import { HealthMonitor, applyHealthVerdict, type HealthVerdict } from './health/health-monitor.js';
import type { SharedState } from './cluster/shared-state.js';
import { LocalState } from './cluster/local-state.js';
import { RedisLimits } from './cluster/redis-state.js';
import { InstanceBus, instanceId, type ClusterStatus } from './cluster/instance-bus.js';
import type { InstanceRecord } from './cluster/redis-bus.js';
import { restartOnly } from './cluster/cluster-settings.js';
import { AdminServer, type AdminHost } from './admin/admin-server.js';
import { targetStatus, upstreamStatus, type TargetStatus, type UpstreamStatus } from './admin/status.js';
import { listConnections, splitId } from './admin/connections.js';
import { redactConfig } from './admin/redact.js';
import type { ConnectionPage, ConnectionQuery, StatsSnapshot } from './admin/stats.js';
import { statsSnapshot } from './admin/stats-snapshot.js';
import { GatewayMetrics, metricsText, type MetricJson } from './observability/metrics.js';
import { certificateViews, relayedSessions, targetViews } from './observability/live-view.js';
import { version } from './version.js';

export interface GatewayOptions {
  /** Where log lines go (default stdout); tests and embedders capture them here. */
  readonly logDestination?: DestinationStream;
  readonly logger?: Logger;
  /** The file the config came from: reload() without a config re-reads it, and `watch: true` watches it. */
  readonly configFile?: string;
  /** Where the gateway-wide limits live (a cluster worker's primary, Redis); default: this process, or Redis when `cluster.redis` is set. */
  readonly shared?: SharedState;
  /**
   * A cluster worker: its primary runs the admin listener, the active health
   * checks and the config watch for the whole instance, and tells it what
   * they decide (applyHealth, drainTarget, reload).
   */
  readonly worker?: boolean;
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
  /** Operator drain or undrain by the target's stable id (`upstream/url`): false when there is no such target. */
  drainTarget(id: string, drained: boolean): boolean;
  /** Takes on a health verdict reached by the instance's checker (a cluster primary). */
  applyHealth(verdict: HealthVerdict): void;
  /** The instance as GET /api/cluster shows it. */
  cluster(): Promise<ClusterStatus>;
  /** The gateway's series (prom-client's JSON form), undefined when admin.metrics is off. */
  metricsJson(): Promise<MetricJson[] | undefined>;
  /** One page of the relayed connections; `worker` prefixes the ids, `after` is a session number. */
  connections(query: ConnectionQuery, worker?: number, after?: number): ConnectionPage;
  /** Ends session `id` (close frames with `code` in inspect mode, a cut in tunnel mode); false when there is no such connection. */
  closeConnection(id: number, code: number, reason: string): boolean;
}

export function createGateway(config: Config, options: GatewayOptions = {}): Gateway {
  return new WsGateway(config, options);
}

class WsGateway implements Gateway, FrontDoorHost, AdminHost {
  readonly log: Logger;
  accessLog: boolean;
  readonly sweeper: IdleSweeper<Relay>;
  /** undefined when admin.metrics is off (or there is no admin section): nothing is counted. */
  metrics: GatewayMetrics | undefined;
  readonly #listeners: ListenerSet;
  readonly #registry: TargetRegistry;
  readonly #monitor = new HealthMonitor();
  readonly #configFile: string | undefined;
  readonly #worker: boolean;
  /** Drains and the instance registry across instances (cluster.redis, single process). */
  #bus: InstanceBus | undefined;
  /** The logger is ours (not an embedder's): a reload may change its level. */
  readonly #ownLogger: boolean;
  #admin: AdminServer | undefined;
  #adminAddress: AddressInfo | undefined;
  #watcher: ConfigWatcher | undefined;
  /** Reloads run one after the other. */
  #reloading: Promise<unknown> = Promise.resolve();
  #started = false;
  readonly #door: FrontDoor;
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
    this.#worker = options.worker === true;
    this.#gate = new Gatekeeper(this.log, options.shared ?? sharedState(config, this.log));
    this.accessLog = config.log.accessLog;
    this.#configFile = options.configFile;
    this.#ownLogger = options.logger === undefined;
    this.#registry = new TargetRegistry(this.#onTargetEvent);
    this.#registry.sync(config.upstreams);
    this.#snap = buildSnapshot(config, this.#registry, prepareSnapshot(config, this.#auth));
    this.sweeper = new IdleSweeper(sweepTick(config));
    this.metrics = metricsOn(config) ? this.#newMetrics() : undefined;
    const door = (this.#door = new FrontDoor(this, this.#gate));
    this.#listeners = new ListenerSet((l, limits) => new Listener(l, limits, door));
  }

  get adminAddress(): AddressInfo | undefined {
    return this.#adminAddress;
  }

  get addresses(): readonly AddressInfo[] {
    return this.#addresses;
  }

  get snapshot(): Snapshot {
    return this.#snap;
  }

  get draining(): boolean {
    return this.#draining;
  }

  stats(): GatewayStats {
    return { sessions: this.#door.sessions.size, draining: this.#draining };
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
    await this.#gate.shared.ready?.();
    this.#addresses = await this.#listeners.start(config.listeners, config.limits);
    if (config.admin !== undefined && !this.#worker) {
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
    if (!this.#worker) {
      this.#monitor.apply(config.upstreams, this.#registry);
      if (config.cluster.redis !== '') {
        this.#bus = new InstanceBus(
          config.cluster.redis,
          this.log,
          (cmd) => this.drainTarget(cmd.target, cmd.drained),
          () => this.#record(),
        );
        this.#bus.start();
      }
    }
    this.#applyWatch();
    this.log.info(
      {
        listeners: this.#addresses.map((a) => `${a.address}:${a.port}`),
        admin: this.#adminAddress && `${this.#adminAddress.address}:${this.#adminAddress.port}`,
        relay: this.#snap.relay.mode,
        relayIo: relayIo(this.#snap.config),
      },
      // A worker is one part of the instance: its primary says 'wsgate started' once every worker listens.
      this.#worker ? 'worker listening' : 'wsgate started',
    );
    if (this.#snap.relay.mode === 'tunnel' && NATIVE_RELAY_MISSING !== undefined) {
      this.log.warn(
        { reason: NATIVE_RELAY_MISSING },
        'the native relay core is not available: tunnel mode relays in JavaScript, at a higher CPU cost per message',
      );
    } else if (this.#snap.relay.mode === 'inspect' && HANDLE_IO && !SHARED_READS) {
      const native = nativeModule();
      const reason = typeof native === 'string' ? native : 'it is older than this code: run npm ci';
      this.log.warn({ reason }, 'the native module is not available: every read takes a buffer of its own, at a higher CPU cost per message');
    }
  }

  async stop(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    const drainTimeout = this.#snap.config.shutdown.drainTimeout;
    this.log.info({ sessions: this.#door.sessions.size, drainTimeout }, 'draining');
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#monitor.stop();
    // Reloads stop here: a drain in progress must not be undone by a new config.
    await this.#reloading;
    const closed = this.#listeners.close();
    // Inspect mode says goodbye at once (1001 both ways) and waits for the
    // close handshakes; tunnel mode cannot, so its sessions run until the end.
    if (this.#snap.relay.mode === 'inspect') for (const s of this.#door.sessions) s.close('shutdown');
    await this.#waitForSessions(drainTimeout);
    this.#registry.stopTimers();
    for (const s of this.#door.sessions) s.close('shutdown');
    this.#listeners.closeAllConnections();
    await closed;
    this.sweeper.stop();
    await this.#registry.close();
    await this.#admin?.close();
    await this.#auth.close();
    await this.#bus?.close();
    this.#gate.close();
    await this.#gate.shared.close();
    this.log.info('wsgate stopped');
  }

  #waitForSessions(ms: number): Promise<void> {
    if (this.#door.sessions.size === 0 || ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const poll = setInterval(() => this.#door.sessions.size === 0 && done(), 50);
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
    const fixed = restartOnly(this.#snap.config, config);
    if (fixed.length > 0) return this.#reloadFailed(fixed);
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
    const adminMoves = config.admin !== undefined && !this.#worker && (oldAdmin === undefined || !sameAddress(oldAdmin.config, config.admin));
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
    if (!this.#worker) this.#monitor.apply(config.upstreams, this.#registry);
    const listeners = plan.commit();
    this.#addresses = listeners.addresses;
    if (adminMoves) {
      this.#admin = admin;
      this.#adminAddress = adminAddress;
      void oldAdmin?.close();
    } else if (config.admin === undefined || this.#worker) {
      this.#admin = undefined;
      this.#adminAddress = undefined;
      void oldAdmin?.close();
    } else {
      oldAdmin!.update(config.admin);
    }
    if (this.#ownLogger) this.log.level = config.log.level;
    this.accessLog = config.log.accessLog;
    if (!metricsOn(config)) this.metrics = undefined;
    else this.metrics ??= this.#newMetrics();
    this.metrics?.reloaded(true);
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
    this.metrics?.reloaded(false);
    return reloadRejected(this.log, errors);
  }

  /** Watches the config file while `watch: true` (and there is a file). */
  #applyWatch(): void {
    const want = this.#snap.config.watch && this.#configFile !== undefined && !this.#draining && !this.#worker;
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
    this.drainTarget(target.state.id, drained);
    this.#bus?.publish({ target: target.state.id, drained });
    return targetStatus(target, index);
  }

  drainTarget(id: string, drained: boolean): boolean {
    const state = this.#registry.get(id);
    if (state === undefined || state.removed) return false;
    if (drained) state.drain('operator');
    else state.undrain('operator');
    return true;
  }

  applyHealth(verdict: HealthVerdict): void {
    const state = this.#registry.get(verdict.id);
    if (state !== undefined) applyHealthVerdict(state, verdict);
  }

  cluster(): Promise<ClusterStatus> {
    return this.#bus?.status() ?? Promise.resolve({ shared: 'instance', instances: [this.#record()] });
  }

  #newMetrics(): GatewayMetrics {
    return new GatewayMetrics(
      {
        relayIo: () => relayIo(this.#snap.config),
        liveSessions: () => relayedSessions(this.#door.sessions),
        targets: () => targetViews(this.#snap.pools.values(), (upstream) => this.#registry.removedStates(upstream)),
        certificates: () => certificateViews(this.#listeners.listeners),
      },
      version(),
    );
  }

  async metricsText(): Promise<string | undefined> {
    return this.metrics === undefined ? undefined : metricsText(this.metrics);
  }

  async metricsJson(): Promise<MetricJson[] | undefined> {
    return this.metrics?.json();
  }

  async statsSnapshot(): Promise<StatsSnapshot> {
    return statsSnapshot(await this.metricsJson(), this.upstreamStatus(), 1, this.#door.sessions.size);
  }

  connections(query: ConnectionQuery, worker?: number, after?: number): ConnectionPage {
    return listConnections(relayedSessions(this.#door.sessions), query, worker, after ?? (query.after === undefined ? 0 : (splitId(query.after)?.[1] ?? 0)));
  }

  /** `id`: a session number (from the primary), or the admin API's id ("17"; a worker-prefixed "2.17" is not this process's). */
  closeConnection(id: number | string, code: number, reason: string): boolean {
    const parsed = typeof id === 'number' ? [0, id] : splitId(id);
    if (parsed === undefined || parsed[0] !== 0) return false;
    for (const s of this.#door.sessions) {
      if (s.id !== parsed[1] || s.relay === undefined) continue;
      s.close(reason, code);
      return true;
    }
    return false;
  }

  config(): unknown {
    return redactConfig(this.#snap.config);
  }

  #record(): InstanceRecord {
    const sessions = this.#door.sessions.size;
    return { id: instanceId(), host: hostname(), pid: process.pid, startedAt: STARTED_AT, heartbeat: Date.now(), connections: sessions, workers: [] };
  }

  #onTargetEvent = (state: TargetState, event: TargetEvent): void => logTargetEvent(this.log, state, event);

  sessionEnded(session: Session): void {
    this.#door.ended(session);
  }

  logRejected(fields: Record<string, unknown>): void {
    this.#gate.logRejected(fields);
  }
}

const STARTED_AT = new Date().toISOString();

/** This process's own limits, shared through Redis when `cluster.redis` is set. */
function sharedState(config: Config, log: Logger): SharedState {
  const local = new LocalState();
  if (config.cluster.redis === '') return local;
  return new RedisLimits({ url: config.cluster.redis, onRedisError: config.cluster.onRedisError, fallback: local, member: `${instanceId()}/w0`, log });
}

/** Counting needs somewhere to be read: an admin listener with metrics on. */
function metricsOn(config: Config): boolean {
  return config.admin !== undefined && config.admin.metrics;
}

/** How the relay moves bytes: the native cores, libuv handles beneath Node's streams, or the streams. */
function relayIo(config: Config): string {
  return (config.relay.mode === 'tunnel' ? NATIVE_RELAY : NATIVE_INSPECT) ? 'native' : HANDLE_IO ? 'handle' : 'stream';
}

function sameAddress(a: { host: string; port: number }, b: { host: string; port: number }): boolean {
  return a.host === b.host && a.port === b.port;
}

function noop(): void {}

/** One sweep tick serves every idle timeout: fine enough for the shortest, never busier than 20/s. */
function sweepTick(config: Config): number {
  let shortest = Infinity;
  for (const t of [config.limits.idleTimeout, ...config.routes.map((r) => r.limits.idleTimeout)]) {
    if (t > 0 && t < shortest) shortest = t;
  }
  return shortest === Infinity ? 1_000 : Math.max(50, Math.min(1_000, Math.floor(shortest / 10)));
}
