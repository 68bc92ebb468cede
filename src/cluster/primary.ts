import cluster, { type Worker } from 'node:cluster';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { AdminServer, type AdminHost, type AdminReloadResult } from '../admin/admin-server.js';
import type { TargetStatus, UpstreamStatus } from '../admin/status.js';
import { AuthResources } from '../auth/auth-resources.js';
import { ConfigError, readConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { ConfigWatcher } from '../config/watch.js';
import { HealthMonitor, healthVerdict } from '../health/health-monitor.js';
import { createLogger, reopenLogFile, type Logger } from '../observability/logger.js';
import { reloadRejected } from '../observability/reload-log.js';
import { logTargetEvent } from '../observability/target-log.js';
import { prepareSnapshot } from '../snapshot.js';
import { TargetRegistry, targetId } from '../upstream/target-registry.js';
import { InstanceBus, instanceId, type ClusterStatus } from './instance-bus.js';
import { LocalState } from './local-state.js';
import { admitFromWire, type AdmitWire, type AnswerWire, type ToPrimary, type ToWorker } from './messages.js';
import type { InstanceRecord } from './redis-bus.js';
import { isTicket, toRefusal, type DrainCommand, type Ticket } from './shared-state.js';
import { mergeUpstreams } from './status-merge.js';
import { restartOnly, workerCount } from './cluster-settings.js';
import { mergePages, splitId } from '../admin/connections.js';
import { redactConfig } from '../admin/redact.js';
import type { ConnectionPage, ConnectionQuery, StatsSnapshot } from '../admin/stats.js';
import { statsSnapshot } from '../admin/stats-snapshot.js';
import { aggregate, aggregateJson, PrimaryMetrics, runtimeRegistry, type MetricJson, type TargetView } from '../observability/metrics.js';
import { targetView } from '../observability/live-view.js';

/** A worker that lived this long before dying is restarted at once; quicker deaths back off, doubling up to MAX_BACKOFF. */
const STABLE_AFTER = 30_000;
const FIRST_BACKOFF = 250;
const MAX_BACKOFF = 30_000;
/** How long the primary waits for its workers' answers (status, reload). */
const ANSWER_TIMEOUT = 5_000;
const STARTED_AT = new Date().toISOString();

interface Slot {
  readonly n: number;
  worker: Worker | undefined;
  /** The tickets its sessions hold in the instance-wide limits: given back at once if it dies. */
  readonly tickets: Map<number, Ticket>;
  ready: boolean;
  startedAt: number;
  crashes: number;
  restartTimer: NodeJS.Timeout | undefined;
  sessions: number;
  /** Its counts at the last scrape: kept in the instance's totals when it dies. */
  lastMetrics: MetricJson[] | undefined;
}

type Waiter = (m: ToPrimary, slot: Slot) => void;

/**
 * The supervising process of `cluster.workers > 1`: forks the workers (each a
 * whole gateway on the shared listeners), replaces any that dies, keeps the
 * instance-wide limits for them, runs the instance's one set of health checks,
 * its admin listener and its config watch, and turns SIGHUP into a reload of
 * every worker and SIGTERM into a drain of every worker. It holds no client
 * connection, and its PID is the instance's for as long as it runs.
 */
export class Primary implements AdminHost {
  readonly log: Logger;
  readonly #file: string;
  #config: Config;
  #text: string;
  readonly #slots: Slot[] = [];
  readonly #limits = new LocalState();
  readonly #registry: TargetRegistry;
  readonly #monitor: HealthMonitor;
  /** Its own series (health checks, reloads); undefined when admin.metrics is off. */
  readonly #metrics: PrimaryMetrics | undefined;
  /** Dead workers' counters (as of their last scrape), so the instance's counters never go down. */
  #retired: MetricJson[] = [];
  #admin: AdminServer | undefined;
  #watcher: ConfigWatcher | undefined;
  #bus: InstanceBus | undefined;
  #nextTicket = 0;
  #seq = 0;
  readonly #waiters = new Map<number, Waiter>();
  /** Operator drains, replayed to a worker that (re)starts. */
  readonly #drains = new Map<string, boolean>();
  #draining = false;
  #reloading: Promise<unknown> = Promise.resolve();
  #addresses: readonly string[] = [];
  /** Date.now() of the last log reopen (0: none). */
  #reopenedAt = 0;

  constructor(file: string, config: Config, text: string) {
    this.#file = file;
    this.#config = config;
    this.#text = text;
    this.log = createLogger(config.log);
    this.#registry = new TargetRegistry((state, event) => logTargetEvent(this.log, state, event));
    this.#registry.sync(config.upstreams);
    this.#monitor = new HealthMonitor((state) => this.#broadcast({ t: 'health', verdict: healthVerdict(state) }));
    this.#metrics = config.admin?.metrics === true ? new PrimaryMetrics(() => this.#targets()) : undefined;
    for (let n = 1; n <= workerCount(config); n++) {
      this.#slots.push({
        n,
        worker: undefined,
        tickets: new Map(),
        ready: false,
        startedAt: 0,
        crashes: 0,
        restartTimer: undefined,
        sessions: 0,
        lastMetrics: undefined,
      });
    }
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Forks every worker and waits until each listens; rejects (having stopped them) if one cannot start. */
  async start(): Promise<void> {
    process.env.WSGATE_INSTANCE = instanceId();
    // Every worker accepts on the shared socket, the kernel picks which: measured here against
    // Node's default (the primary accepts and hands each connection over), 0.69x the CPU per
    // handshake, 1.22x the handshakes/s, and as even a spread of long-lived connections
    // (bench/README.md, "Scale-out"). NODE_CLUSTER_SCHED_POLICY=rr still chooses Node's default.
    if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.on('exit', this.#onExit);
    const started = this.#slots.map((slot) => this.#fork(slot));
    // Only the first failure is reported; the others (every worker may fail alike) must not go unhandled.
    for (const p of started) p.catch(noop);
    try {
      await Promise.all(started);
    } catch (err) {
      await this.#stopWorkers(0);
      throw err;
    }
    const admin = this.#config.admin;
    if (admin !== undefined) {
      this.#admin = new AdminServer(admin, this, this.log);
      try {
        await this.#admin.listen();
      } catch (err) {
        await this.#stopWorkers(0);
        throw err;
      }
    }
    this.#monitor.apply(this.#config.upstreams, this.#registry);
    if (this.#config.cluster.redis !== '') {
      this.#bus = new InstanceBus(this.#config.cluster.redis, this.log, this.#applyDrain, () => this.#record());
      this.#bus.start();
    }
    this.#applyWatch();
    const a = this.#admin?.server.address() as AddressInfo | null | undefined;
    this.log.info(
      { listeners: this.#addresses, admin: a ? `${a.address}:${a.port}` : undefined, workers: this.#slots.length, pid: process.pid },
      'wsgate started',
    );
  }

  #fork(slot: Slot): Promise<void> {
    const worker = cluster.fork({ WSGATE_WORKER: String(slot.n) });
    slot.worker = worker;
    slot.ready = false;
    slot.startedAt = Date.now();
    worker.on('error', (err) => this.log.warn({ err, worker: slot.n }, 'worker IPC error'));
    worker.on('message', (m: ToPrimary) => this.#onMessage(slot, m));
    return new Promise((resolve, reject) => {
      this.#waiters.set(-slot.n, (m) => {
        this.#waiters.delete(-slot.n);
        if (m.t === 'ready') resolve();
        else reject(new Error(m.t === 'failed' ? m.error : `worker ${slot.n} exited while starting`));
      });
    });
  }

  #onMessage(slot: Slot, m: ToPrimary): void {
    switch (m.t) {
      case 'hello':
        return this.#send(slot, { t: 'config', text: this.#text, baseDir: dirname(resolve(this.#file)) });
      case 'limits':
        for (const n of m.r) this.#release(slot, n);
        if (m.a.length > 0) this.#send(slot, { t: 'answers', a: m.a.map((w) => this.#admit(slot, w)) });
        return;
      case 'ready':
        slot.ready = true;
        this.#addresses = m.addresses;
        this.#catchUp(slot);
        this.log.info({ worker: slot.n, pid: slot.worker?.process.pid }, 'worker ready');
        return this.#waiters.get(-slot.n)?.(m, slot);
      case 'failed':
        this.log.error({ worker: slot.n, error: m.error }, 'worker cannot start');
        return this.#waiters.get(-slot.n)?.(m, slot);
      case 'reloaded':
      case 'status':
      case 'metrics':
      case 'connections':
      case 'closed':
        return this.#waiters.get(m.seq)?.(m, slot);
    }
  }

  #admit(slot: Slot, w: AdmitWire): AnswerWire {
    const a = this.#limits.admit(admitFromWire(w));
    if (!isTicket(a)) return [w[0], 0, toRefusal(a)];
    const n = ++this.#nextTicket;
    slot.tickets.set(n, a);
    return [w[0], n];
  }

  #release(slot: Slot, n: number): void {
    const ticket = slot.tickets.get(n);
    if (ticket === undefined) return;
    slot.tickets.delete(n);
    this.#limits.release(ticket);
  }

  /** A (re)started worker learns what the instance decided before it: health verdicts and operator drains. */
  #catchUp(slot: Slot): void {
    for (const upstream of Object.keys(this.#config.upstreams)) {
      for (const t of this.#config.upstreams[upstream]!.targets) {
        const state = this.#registry.get(targetId(upstream, t.url));
        if (state?.checked === true) this.#send(slot, { t: 'health', verdict: healthVerdict(state) });
      }
    }
    for (const [target, drained] of this.#drains) this.#send(slot, { t: 'drain', cmd: { target, drained } });
    // Started before a reopen it could not hear yet: it may still hold the renamed file.
    if (this.#reopenedAt >= slot.startedAt) this.#send(slot, { t: 'reopen' });
  }

  /**
   * SIGUSR1 (logrotate renamed the log file): reopens the primary's own file
   * and tells every worker to reopen theirs. Nothing to do when logging to stdout.
   */
  reopenLog(signal?: string): void {
    if (this.#config.log.file === '') return;
    reopenLogFile(this.log, signal);
    this.#reopenedAt = Date.now();
    this.#broadcast({ t: 'reopen' });
  }

  #onExit = (worker: Worker, code: number | null, signal: string | null): void => {
    const slot = this.#slots.find((s) => s.worker === worker);
    if (slot === undefined) return;
    slot.worker = undefined;
    slot.ready = false;
    // Its clients are gone with it: their places in the limits are free again.
    for (const ticket of slot.tickets.values()) this.#limits.release(ticket);
    slot.tickets.clear();
    slot.sessions = 0;
    if (slot.lastMetrics !== undefined) this.#retire(slot.lastMetrics);
    slot.lastMetrics = undefined;
    this.#waiters.get(-slot.n)?.({ t: 'failed', error: `worker ${slot.n} exited (code ${code}, signal ${signal})` }, slot);
    if (this.#draining) return;
    slot.crashes = Date.now() - slot.startedAt > STABLE_AFTER ? 1 : slot.crashes + 1;
    const wait = slot.crashes <= 1 ? 0 : Math.min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (slot.crashes - 2));
    this.log.error({ worker: slot.n, pid: worker.process.pid, code, signal, restartIn: wait }, 'worker died; restarting it');
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (!this.#draining) this.#fork(slot).catch((err: unknown) => this.log.error({ worker: slot.n, err: (err as Error).message }, 'worker restart failed'));
    }, wait);
  };

  #send(slot: Slot, m: ToWorker): void {
    const w = slot.worker;
    if (w !== undefined && w.isConnected()) w.send(m);
  }

  #broadcast(m: ToWorker): void {
    for (const slot of this.#slots) if (slot.ready) this.#send(slot, m);
  }

  /** Asks every ready worker (or those given); resolves with the answers that came within ANSWER_TIMEOUT. */
  #ask(make: (seq: number) => ToWorker, asked = this.#slots.filter((s) => s.ready)): Promise<Array<{ m: ToPrimary; slot: Slot }>> {
    const seq = ++this.#seq;
    const answers: Array<{ m: ToPrimary; slot: Slot }> = [];
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(seq);
        resolve(answers);
      };
      const timer = setTimeout(done, ANSWER_TIMEOUT);
      this.#waiters.set(seq, (m, slot) => {
        answers.push({ m, slot });
        if (answers.length === asked.length) done();
      });
      if (asked.length === 0) return done();
      for (const slot of asked) this.#send(slot, make(seq));
    });
  }

  async upstreamStatus(): Promise<readonly UpstreamStatus[]> {
    const answers = await this.#ask((seq) => ({ t: 'status', seq }));
    const lists: Array<readonly UpstreamStatus[]> = [];
    for (const { m, slot } of answers) {
      if (m.t !== 'status') continue;
      slot.sessions = m.sessions;
      lists.push(m.upstreams);
    }
    if (lists.length === 0) throw new Error('no worker is running');
    return mergeUpstreams(lists);
  }

  async setTargetDrained(upstream: string, index: number, drained: boolean): Promise<TargetStatus | undefined> {
    const url = this.#config.upstreams[upstream]?.targets[index]?.url;
    if (url === undefined) return undefined;
    const cmd = { target: targetId(upstream, url), drained };
    this.#applyDrain(cmd);
    this.#bus?.publish(cmd);
    const all = await this.upstreamStatus();
    return all.find((u) => u.name === upstream)?.targets[index];
  }

  #applyDrain = (cmd: DrainCommand): void => {
    if (cmd.drained) this.#drains.set(cmd.target, true);
    else this.#drains.delete(cmd.target);
    const state = this.#registry.get(cmd.target);
    if (state !== undefined && !state.removed) {
      if (cmd.drained) state.drain('operator');
      else state.undrain('operator');
    }
    this.#broadcast({ t: 'drain', cmd });
  };

  async #record(): Promise<InstanceRecord> {
    await this.#ask((seq) => ({ t: 'status', seq })).then((answers) => {
      for (const { m, slot } of answers) if (m.t === 'status') slot.sessions = m.sessions;
    });
    const workers = this.#slots.map((s) => ({ id: s.n, pid: s.worker?.process.pid ?? 0, connections: s.sessions }));
    const connections = workers.reduce((n, w) => n + w.connections, 0);
    return { id: instanceId(), host: hostname(), pid: process.pid, startedAt: STARTED_AT, heartbeat: Date.now(), connections, workers };
  }

  async cluster(): Promise<ClusterStatus> {
    if (this.#bus !== undefined) return this.#bus.status();
    return { shared: 'instance', instances: [await this.#record()] };
  }

  reload(): Promise<AdminReloadResult> {
    const run = this.#reloading.then(() => this.#reload());
    this.#reloading = run.catch(noop);
    return run;
  }

  async #reload(): Promise<AdminReloadResult> {
    if (this.#draining) return this.#rejected(['the gateway is shutting down']);
    const path = resolve(this.#file);
    let text: string;
    let config: Config;
    try {
      ({ text, config } = await readConfig(path));
      const auth = new AuthResources();
      try {
        prepareSnapshot(config, auth);
      } finally {
        await auth.close();
      }
    } catch (err) {
      return this.#rejected(err instanceof ConfigError ? err.problems : [(err as Error).message]);
    }
    const fixed = restartOnly(this.#config, config);
    if (fixed.length > 0) return this.#rejected(fixed);
    const answers = await this.#ask((seq) => ({ t: 'reload', seq, text, baseDir: dirname(path) }));
    const errors: string[] = [];
    for (const { m, slot } of answers) if (m.t === 'reloaded' && !m.ok) errors.push(...m.errors.map((e) => `worker ${slot.n}: ${e}`));
    if (errors.length > 0) return this.#rejected(errors);
    this.#config = config;
    this.#text = text;
    this.#registry.sync(config.upstreams);
    this.#monitor.apply(config.upstreams, this.#registry);
    await this.#applyAdmin(config);
    this.log.level = config.log.level;
    this.#applyWatch();
    this.#metrics?.reloaded(true);
    this.log.info({ workers: answers.length }, 'config reloaded');
    return { ok: true, workers: answers.length };
  }

  #rejected(errors: readonly string[]): AdminReloadResult {
    this.#metrics?.reloaded(false);
    return reloadRejected(this.log, errors);
  }

  *#targets(): Generator<TargetView> {
    for (const [upstream, u] of Object.entries(this.#config.upstreams)) {
      for (const t of u.targets) {
        const state = this.#registry.get(targetId(upstream, t.url));
        if (state !== undefined) yield targetView(upstream, t.url, state);
      }
    }
  }

  /** Every worker's series and the primary's own, each list a part of the sum; undefined when metrics are off. */
  async #metricParts(): Promise<MetricJson[][] | undefined> {
    if (this.#metrics === undefined) return undefined;
    const answers = await this.#ask((seq) => ({ t: 'metrics', seq }));
    const parts: MetricJson[][] = [[...(await runtimeRegistry().getMetricsAsJSON()), ...(await this.#metrics.registry.getMetricsAsJSON())] as MetricJson[]];
    for (const { m, slot } of answers) {
      if (m.t !== 'metrics' || m.metrics === null) continue;
      parts.push(m.metrics);
      slot.lastMetrics = m.metrics;
    }
    if (this.#retired.length > 0) parts.push(this.#retired);
    return parts;
  }

  /** Adds a dead worker's counters and histograms (not its gauges: what it held is gone) to the retired sums. */
  #retire(last: MetricJson[]): void {
    const kept = last.filter((m) => String(m.type) === 'counter' || String(m.type) === 'histogram');
    this.#retired = this.#retired.length === 0 ? kept : aggregateJson([this.#retired, kept]);
  }

  async metricsText(): Promise<string | undefined> {
    const parts = await this.#metricParts();
    return parts === undefined ? undefined : aggregate(parts);
  }

  async statsSnapshot(): Promise<StatsSnapshot> {
    const parts = await this.#metricParts();
    const upstreams = await this.upstreamStatus();
    const sessions = this.#slots.reduce((n, s) => n + s.sessions, 0);
    return statsSnapshot(parts === undefined ? undefined : aggregateJson(parts), upstreams, this.#slots.filter((s) => s.ready).length, sessions);
  }

  /** Workers in order, each listing after its part of the cursor ("2.17": worker 1 is past, worker 2 after 17, the rest from the start). */
  async connections(query: ConnectionQuery): Promise<ConnectionPage> {
    const [cursorWorker, cursorId] = query.after === undefined ? [0, 0] : (splitId(query.after) ?? [0, 0]);
    const asked = this.#slots.filter((s) => s.ready && s.n >= cursorWorker);
    const answers = await Promise.all(
      asked.map((slot) => this.#ask((seq) => ({ t: 'connections', seq, query, after: slot.n === cursorWorker ? cursorId : 0 }), [slot])),
    );
    const pages: ConnectionPage[] = [];
    for (const [answer] of answers) if (answer?.m.t === 'connections') pages.push(answer.m.page);
    return mergePages(pages, query.limit);
  }

  async closeConnection(id: string, code: number, reason: string): Promise<boolean> {
    const parsed = splitId(id);
    const slot = this.#slots.find((s) => s.ready && s.n === parsed?.[0]);
    if (parsed === undefined || slot === undefined) return false;
    const [answer] = await this.#ask((seq) => ({ t: 'close', seq, id: parsed[1], code, reason }), [slot]);
    return answer?.m.t === 'closed' && answer.m.ok;
  }

  config(): unknown {
    return redactConfig(this.#config);
  }

  async #applyAdmin(config: Config): Promise<void> {
    const old = this.#admin;
    const want = config.admin;
    if (want !== undefined && old !== undefined && old.config.host === want.host && old.config.port === want.port) return old.update(want);
    if (want !== undefined) {
      const fresh = new AdminServer(want, this, this.log);
      try {
        await fresh.listen();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'the admin listener stays where it was');
        return;
      }
      this.#admin = fresh;
    } else {
      this.#admin = undefined;
    }
    await old?.close();
  }

  #applyWatch(): void {
    if (!this.#config.watch || this.#draining) {
      this.#watcher?.close();
      this.#watcher = undefined;
      return;
    }
    this.#watcher ??= new ConfigWatcher(
      this.#file,
      () => {
        this.log.info({ file: this.#file }, 'config file changed; reloading');
        void this.reload();
      },
      (err) => this.log.error({ err }, 'config file watch failed'),
    );
  }

  /** Drains every worker (each sends its clients 1001 and waits up to shutdown.drainTimeout), then stops. */
  async stop(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    this.log.info({ workers: this.#slots.filter((s) => s.worker !== undefined).length }, 'draining every worker');
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#monitor.stop();
    await this.#reloading;
    await this.#stopWorkers(this.#config.shutdown.drainTimeout + ANSWER_TIMEOUT);
    this.#registry.stopTimers();
    await this.#registry.close();
    await this.#admin?.close();
    await this.#bus?.close();
    cluster.off('exit', this.#onExit);
    this.log.info('wsgate stopped');
  }

  /** Tells every worker to stop and waits for them to exit; past `grace`, kills them. */
  async #stopWorkers(grace: number): Promise<void> {
    this.#draining = true;
    const exits: Array<Promise<unknown>> = [];
    for (const slot of this.#slots) {
      clearTimeout(slot.restartTimer);
      const w = slot.worker;
      if (w === undefined) continue;
      exits.push(new Promise((resolve) => (w.isDead() ? resolve(undefined) : w.once('exit', resolve))));
      this.#send(slot, { t: 'stop' });
    }
    const kill = setTimeout(() => {
      for (const slot of this.#slots) slot.worker?.process.kill('SIGKILL');
    }, grace);
    await Promise.all(exits);
    clearTimeout(kill);
  }

  /** Last resort (a second signal): every worker killed at once. */
  kill(): void {
    for (const slot of this.#slots) slot.worker?.process.kill('SIGKILL');
  }
}

function noop(): void {}
