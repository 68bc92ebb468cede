import { Redis } from 'ioredis';
import type { Logger } from '../observability/logger.js';

/** A Redis command that did not answer within its bound: it may still run (or have run) on the server. */
export class RedisTimeoutError extends Error {
  readonly code = 'REDIS_TIMEOUT';

  constructor(ms: number) {
    super(`redis did not answer within ${ms}ms`);
    this.name = 'RedisTimeoutError';
  }
}

/** Reconnect backoff: 100ms doubling to a 2s cap, forever (a gateway outlives its Redis outages). */
function retryDelay(attempt: number): number {
  return Math.min(100 * 2 ** Math.min(attempt - 1, 5), 2_000);
}

/**
 * A client that never makes a handshake wait on a missing Redis: no offline
 * queue (a command while disconnected fails at once), commands bounded by
 * `timeout`, and no resend of unanswered commands after a reconnect — the
 * callers resync from their own state instead, so a half-known command never
 * runs twice. `onError` is attached before any event can fire.
 */
export function createRedisClient(url: string, timeout: number, name: string, onError: (err: Error) => void): Redis {
  const client = new Redis(url, {
    connectionName: name,
    commandTimeout: timeout,
    connectTimeout: Math.max(1_000, timeout * 4),
    enableOfflineQueue: false,
    // 0: the commands in flight when a connection drops fail right away (not after N reconnects).
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: retryDelay,
  });
  client.on('error', onError);
  return client;
}

/**
 * `p`, or a RedisTimeoutError after `ms`. ioredis' commandTimeout bounds one
 * command, but a script's first call on a connection may take two (EVALSHA,
 * then EVAL on NOSCRIPT): this bounds what the caller waits for as a whole.
 */
export function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new RedisTimeoutError(ms)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/**
 * Resolves when `client` is connected; waits up to `ms` for a connection
 * being made (a command sent before then would fail at once: no offline queue).
 */
export function whenReady(client: Redis, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  if (client.status === 'end') return Promise.reject(new Error('connection to redis closed'));
  return new Promise<void>((resolve, reject) => {
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new RedisTimeoutError(ms));
    }, ms);
    client.once('ready', onReady);
  });
}

/** Closes a client politely when it answers, else drops it; never rejects. */
export async function quitClient(client: Redis, timeout: number): Promise<void> {
  if (client.status === 'end') return;
  try {
    if (client.status !== 'ready') throw new Error('not ready');
    await bounded(client.quit(), timeout);
  } catch {
    client.disconnect(false);
  }
}

/**
 * An outage's life as the logs tell it: one line when it starts (with the
 * error), one when it ends (with how long it lasted and what was done
 * meanwhile) — not one per failed command or reconnect attempt.
 */
export class OutageLog {
  readonly #log: Logger;
  readonly #what: string;
  #since = 0;
  #count = 0;

  constructor(log: Logger, what: string) {
    this.#log = log;
    this.#what = what;
  }

  /** Outages so far (each counted when it starts). */
  get count(): number {
    return this.#count;
  }

  get down(): boolean {
    return this.#since !== 0;
  }

  /** Returns true when this starts an outage. */
  start(err: Error): boolean {
    if (this.#since !== 0) return false;
    this.#since = Date.now();
    this.#count++;
    this.#log.warn({ err, shared: this.#what }, 'redis unreachable');
    return true;
  }

  /** Returns true when this ends an outage; `during` says what was done meanwhile. */
  end(during: Record<string, number> = {}): boolean {
    if (this.#since === 0) return false;
    const downMs = Date.now() - this.#since;
    this.#since = 0;
    this.#log.info({ shared: this.#what, downMs, ...during }, 'redis reachable again');
    return true;
  }
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
