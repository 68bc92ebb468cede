import type { Redis } from 'ioredis';
import { GatewayError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { OutageLog, asError, bounded, createRedisClient, quitClient, whenReady } from './redis-client.js';
import { defineBusCommands, type BusCommands } from './redis-scripts.js';
import type { DrainCommand } from './shared-state.js';

/** One wsgate instance as the registry shows it to every other. */
export type InstanceRecord = {
  id: string;
  host: string;
  pid: number;
  startedAt: string;
  /** Epoch ms of the last register(), by Redis's clock. */
  heartbeat: number;
  connections: number;
  workers: { id: number; pid: number; connections: number }[];
};

export type DrainListener = (cmd: DrainCommand, origin: string) => void;

/** The origin given to drains found by re-reading the drains hash (on subscribing, after a reconnect), not heard. */
export const RESYNC_ORIGIN = '(resync)';

export interface RedisBusOptions {
  readonly url: string;
  /** This instance's id: the origin of what it publishes, so it can ignore its own messages. */
  readonly id: string;
  readonly log: Logger;
  /** ms; a registry record not refreshed for this long is pruned. Default 30s. */
  readonly memberTtl?: number;
  /** ms; the bound on every command. Default 250. */
  readonly timeout?: number;
  /** Key prefix. Default 'wsgate'. */
  readonly prefix?: string;
}

interface DrainMessage {
  readonly origin: string;
  readonly target: string;
  readonly drained: boolean;
}

/**
 * What one process per instance (the cluster primary, or a single-process
 * gateway) shares with the other instances: operator drains (a hash that
 * late joiners read, and a channel for the news) and a registry of
 * instances kept alive by heartbeats. Reads and publishes reject with a
 * GatewayError SHARED_STATE_UNAVAILABLE when Redis cannot answer within
 * `timeout`; register() and unregister() never reject (they are called from
 * timers); nothing here throws from an event.
 */
export class RedisBus {
  readonly #client: Redis & BusCommands;
  #subscriber: Redis | undefined;
  readonly #id: string;
  readonly #log: Logger;
  readonly #ttl: number;
  readonly #timeout: number;
  readonly #url: string;
  readonly #drainsKey: string;
  readonly #channel: string;
  readonly #registryKeys: readonly [string, string];
  readonly #outage: OutageLog;
  readonly #listeners: DrainListener[] = [];
  /** Drained targets as this bus last knew them, to tell what a reconnect missed. */
  readonly #known = new Set<string>();
  #registered: string | undefined;
  #failedCalls = 0;
  /** Messages heard from other instances, to tell a reconcile that its read may be stale. */
  #heardCount = 0;
  #closed = false;
  #subscribed: Promise<void> | undefined;

  constructor(options: RedisBusOptions) {
    this.#id = options.id;
    this.#log = options.log;
    this.#ttl = options.memberTtl ?? 30_000;
    this.#timeout = options.timeout ?? 250;
    this.#url = options.url;
    const prefix = options.prefix ?? 'wsgate';
    this.#drainsKey = `${prefix}:drains`;
    this.#channel = `${prefix}:drain`;
    this.#registryKeys = [`${prefix}:instances`, `${prefix}:heartbeats`];
    this.#outage = new OutageLog(this.#log, 'bus');
    const client = createRedisClient(this.#url, this.#timeout, `wsgate-bus:${this.#id}`, (err) => this.#down(err));
    client.on('close', () => this.#down(new Error('connection to redis closed')));
    client.on('ready', () => this.#up());
    this.#client = defineBusCommands(client);
  }

  get connected(): boolean {
    return this.#client.status === 'ready' && !this.#outage.down;
  }

  get outages(): number {
    return this.#outage.count;
  }

  /** Records a drain or undrain for late joiners and tells the other instances now. */
  async publishDrain(cmd: DrainCommand): Promise<void> {
    const message: DrainMessage = { origin: this.#id, target: cmd.target, drained: cmd.drained };
    await this.#call(() => this.#client.wsgateDrain(this.#drainsKey, this.#channel, cmd.target, cmd.drained ? '1' : '0', JSON.stringify(message)));
    if (cmd.drained) this.#known.add(cmd.target);
    else this.#known.delete(cmd.target);
  }

  /** The targets drained now, across all instances. */
  async drains(): Promise<DrainCommand[]> {
    const targets = await this.#call(() => this.#client.hkeys(this.#drainsKey));
    return targets.map((target) => ({ target, drained: true }));
  }

  /**
   * Hears the other instances' drains (never this one's own). On every
   * (re)subscription the drains hash is read again and the drains not heard
   * yet are delivered with origin RESYNC_ORIGIN: what a late joiner or a
   * reconnect missed. An undrain missed while Redis was unreachable is not
   * replayed (an empty hash may only mean Redis lost its data). The
   * subscription is made in the background: subscribed() tells when it is in place.
   */
  onDrain(listener: DrainListener): void {
    this.#listeners.push(listener);
    if (!this.#closed) this.#subscribed ??= this.#subscribe();
  }

  /** Resolves once the drain subscription is in place (at once when onDrain() was never called). Never rejects. */
  subscribed(): Promise<void> {
    return this.#subscribed ?? Promise.resolve();
  }

  /** Writes or refreshes this instance's record (its heartbeat is stamped by Redis); prunes stale ones. */
  async register(record: InstanceRecord): Promise<boolean> {
    const { heartbeat: _stamped, ...rest } = record;
    try {
      await this.#call(() => this.#client.wsgateRegistry(...this.#registryKeys, this.#ttl, record.id, JSON.stringify(rest)));
      this.#registered = record.id;
      return true;
    } catch {
      return false;
    }
  }

  /** The live instances (stale records pruned first). */
  async instances(): Promise<InstanceRecord[]> {
    const flat = await this.#call(() => this.#client.wsgateRegistry(...this.#registryKeys, this.#ttl));
    const out: InstanceRecord[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3) {
      try {
        const rest = JSON.parse(flat[i + 1]!) as Omit<InstanceRecord, 'heartbeat'>;
        out.push({ ...rest, heartbeat: Number(flat[i + 2]) });
      } catch (err) {
        this.#log.warn({ err, instance: flat[i] }, 'redis: unreadable instance record skipped');
      }
    }
    return out;
  }

  /** Removes this instance's record (graceful close). Never rejects. */
  async unregister(): Promise<void> {
    const id = this.#registered;
    if (id === undefined) return;
    this.#registered = undefined;
    try {
      await this.#call(() => this.#client.multi().hdel(this.#registryKeys[0], id).zrem(this.#registryKeys[1], id).exec());
    } catch {
      // Pruned within memberTtl anyway.
    }
  }

  /** Unregisters and closes both connections. Never rejects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#client.status === 'ready') await this.unregister();
    this.#closed = true;
    const sub = this.#subscriber;
    await Promise.all([quitClient(this.#client, this.#timeout), sub === undefined ? undefined : quitClient(sub, this.#timeout)]);
  }

  /** Sends `command` once connected (waiting up to `timeout` for a connection being made), bounded by `timeout`. */
  async #call<T>(command: () => Promise<T>): Promise<T> {
    try {
      await whenReady(this.#client, this.#timeout);
      const result = await bounded(command(), this.#timeout);
      this.#up();
      return result;
    } catch (err) {
      const e = asError(err);
      this.#down(e);
      this.#failedCalls++;
      throw new GatewayError('SHARED_STATE_UNAVAILABLE', `redis: ${e.message}`, { cause: e });
    }
  }

  #subscribe(): Promise<void> {
    return new Promise<void>((resolve) => {
      const sub = createRedisClient(this.#url, this.#timeout, `wsgate-bus-sub:${this.#id}`, (err) => {
        this.#log.debug({ err }, 'redis (drain subscriber): connection failed');
      });
      this.#subscriber = sub;
      sub.on('message', (channel: string, text: string) => this.#heard(channel, text));
      // ioredis resubscribes by itself after a reconnect; 'ready' comes first, the reconcile after it.
      sub.on('ready', () => {
        if (this.#closed) return;
        sub.subscribe(this.#channel).then(
          () => void this.#reconcile().then(resolve),
          (err: unknown) => this.#log.debug({ err }, 'redis (drain subscriber): subscribe failed'),
        );
      });
    });
  }

  #heard(channel: string, text: string): void {
    if (channel !== this.#channel) return;
    let msg: DrainMessage;
    try {
      msg = JSON.parse(text) as DrainMessage;
    } catch {
      return;
    }
    if (msg.origin === this.#id || typeof msg.target !== 'string') return;
    this.#heardCount++;
    const drained = msg.drained === true;
    // Already known (a reconcile read it first): said once is enough.
    if (this.#known.has(msg.target) === drained) return;
    if (drained) this.#known.add(msg.target);
    else this.#known.delete(msg.target);
    this.#emit({ target: msg.target, drained }, msg.origin);
  }

  /** Delivers the drains in the hash that this bus has not heard of. Never rejects. */
  async #reconcile(): Promise<void> {
    let now: DrainCommand[] | undefined;
    // A message heard while the read was in flight may be newer than what the read saw: read again.
    for (let attempt = 0; attempt < 3 && now === undefined; attempt++) {
      const heard = this.#heardCount;
      try {
        now = await this.drains();
      } catch {
        return;
      }
      if (this.#heardCount !== heard) now = undefined;
    }
    if (now === undefined) return;
    // Drains only: a target missing from the hash may have been undrained, or Redis may have
    // restarted without its data; undraining a target taken out for maintenance is the worse mistake.
    for (const { target } of now) {
      if (this.#known.has(target)) continue;
      this.#known.add(target);
      this.#emit({ target, drained: true }, RESYNC_ORIGIN);
    }
  }

  #emit(cmd: DrainCommand, origin: string): void {
    for (const listener of this.#listeners) {
      try {
        listener(cmd, origin);
      } catch (err) {
        this.#log.error({ err, target: cmd.target }, 'drain listener threw');
      }
    }
  }

  #down(err: Error): void {
    if (this.#closed) return;
    this.#log.debug({ err }, 'redis (bus): command or connection failed');
    if (this.#outage.start(err)) this.#failedCalls = 0;
  }

  #up(): void {
    if (this.#closed) return;
    this.#outage.end({ failedCalls: this.#failedCalls });
  }
}
