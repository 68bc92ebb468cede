import { hostname } from 'node:os';
import type { Logger } from '../observability/logger.js';
import { RedisBus, type InstanceRecord } from './redis-bus.js';
import type { DrainCommand } from './shared-state.js';

/** How often an instance writes its record; a record older than the member TTL (30 s) counts as gone. */
const HEARTBEAT = 5_000;

/** This instance's id: the primary's (or the single process's) host and PID, handed to its workers. */
export function instanceId(): string {
  return process.env.WSGATE_INSTANCE ?? `${hostname()}-${process.pid}`;
}

/** What GET /api/cluster answers. */
export interface ClusterStatus {
  /** Where the gateway-wide limits live: this instance only, or Redis across instances. */
  readonly shared: 'instance' | 'redis';
  readonly redisConnected?: boolean;
  /** Outages of this instance's link to Redis since it started (each counted once, when it began). */
  readonly redisOutages?: number;
  readonly instances: readonly InstanceRecord[];
}

/**
 * An instance's link to the others through Redis (one per instance: the
 * cluster primary, or the gateway when it runs as one process): operator
 * drains heard and published, and the instance registry kept fresh.
 */
export class InstanceBus {
  readonly #bus: RedisBus;
  readonly #log: Logger;
  readonly #applyDrain: (cmd: DrainCommand) => void;
  readonly #record: () => InstanceRecord | Promise<InstanceRecord>;
  #timer: NodeJS.Timeout | undefined;

  constructor(url: string, log: Logger, applyDrain: (cmd: DrainCommand) => void, record: () => InstanceRecord | Promise<InstanceRecord>) {
    this.#bus = new RedisBus({ url, log, id: instanceId() });
    this.#log = log;
    this.#applyDrain = applyDrain;
    this.#record = record;
  }

  /** Hears the other instances' drains, those made before this one started included. */
  start(): void {
    this.#bus.onDrain((cmd, origin) => {
      this.#log.info({ target: cmd.target, origin }, cmd.drained ? 'target drained by another instance' : 'target undrained by another instance');
      this.#applyDrain(cmd);
    });
    this.#beat();
  }

  #beat = (): void => {
    void Promise.resolve(this.#record())
      .then((r) => this.#bus.register(r))
      .catch(noop);
    this.#timer = setTimeout(this.#beat, HEARTBEAT);
    this.#timer.unref();
  };

  publish(cmd: DrainCommand): void {
    this.#bus.publishDrain(cmd).catch((err: unknown) => this.#log.warn({ err, target: cmd.target }, 'drain not published to the other instances'));
  }

  async status(): Promise<ClusterStatus> {
    const mine = await this.#record();
    let instances: InstanceRecord[];
    try {
      // This instance's own line as of now; the others' as of their last heartbeat.
      await this.#bus.register(mine);
      instances = await this.#bus.instances();
    } catch {
      instances = [mine];
    }
    return { shared: 'redis', redisConnected: this.#bus.connected, redisOutages: this.#bus.outages, instances };
  }

  async close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#bus.unregister().catch(noop);
    await this.#bus.close();
  }
}

function noop(): void {}
