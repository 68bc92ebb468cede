import { GatewayError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { OutageLog, asError, bounded, createRedisClient, quitClient } from './redis-client.js';
import { defineLimitsCommands, type LimitsCommands } from './redis-scripts.js';
import type { Redis } from 'ioredis';
import { isTicket, refusalError, type Admission, type AdmitRequest, type SharedState, type Ticket } from './shared-state.js';

export { RedisBus, RESYNC_ORIGIN, type DrainListener, type InstanceRecord, type RedisBusOptions } from './redis-bus.js';

export interface RedisLimitsOptions {
  readonly url: string;
  /** Redis cannot answer: `allow` admits through `fallback`, `deny` refuses (503 SHARED_STATE_UNAVAILABLE). */
  readonly onRedisError: 'allow' | 'deny';
  /** Answers admits while Redis cannot (onRedisError: allow). Not closed by close(): the caller owns it. */
  readonly fallback: SharedState;
  /** This process's id among all that share the Redis, e.g. `host-pid/w1`. */
  readonly member: string;
  readonly log: Logger;
  /** ms; a member that stops heart-beating for this long has its sessions dropped from the counts. Default 30s. */
  readonly memberTtl?: number;
  /** ms; the longest a handshake ever waits on Redis. Default 250. */
  readonly timeout?: number;
  /** Key prefix. Default 'wsgate'. */
  readonly prefix?: string;
}

class RedisTicket implements Ticket {
  released = false;

  constructor(
    readonly scope: string,
    readonly key: string,
    readonly route: string,
    /** The count fields this session holds: per address, route, gateway. */
    readonly fields: readonly string[],
    /** Set when the fallback admitted it: the release goes there too. */
    readonly inner: Ticket | undefined,
  ) {}
}

type Phase = 'connecting' | 'up' | 'down';

/** Fields per resync command: a few ms of Redis time each, whatever the member holds. */
const SYNC_CHUNK = 500;

/**
 * The gateway-wide limits kept in one Redis shared by every member (each
 * process that admits handshakes). One script call per admit; see
 * redis-scripts.ts for the keys.
 *
 * The member's own map of what it holds is the truth; Redis holds a copy.
 * The copy is replaced whole (a resync) on every (re)connect, after any
 * command whose outcome is unknown, and when the member finds it was reaped
 * as dead. Between resyncs every change that Redis did not make itself is
 * sent as a delta, in order on the one connection: a delta that arrives
 * while a resync is in flight waits for it (the resync's snapshot was taken
 * before it), so the copy is always snapshot + the deltas sent after it.
 *
 * While Redis cannot answer (down), admits go to the fallback or are refused
 * without waiting on Redis; a probe resyncs every second until one succeeds.
 */
export class RedisLimits implements SharedState {
  readonly #client: Redis & LimitsCommands;
  readonly #fallback: SharedState;
  readonly #deny: boolean;
  readonly #member: string;
  readonly #log: Logger;
  readonly #ttl: number;
  readonly #timeout: number;
  readonly #prefix: string;
  /** members ZSET, aggregate hash, this member's hash. */
  readonly #keys: readonly [string, string, string];
  readonly #memberPrefix: string;
  readonly #outage: OutageLog;
  /** What this member holds, field -> count: the truth that resyncs send. */
  readonly #holds = new Map<string, number>();
  #phase: Phase = 'connecting';
  /** A full resync is needed (a change Redis may not have, or may have twice). */
  #dirty = true;
  /** Resyncs sent: an admit that a later resync overtook must send its own delta. */
  #epoch = 0;
  /** Present while a resync is in flight: the deltas to send once it has landed. */
  #pending: Map<string, number> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Handshakes answered by the fallback / refused as unavailable since the outage began. */
  #fallbackAnswers = 0;
  #denied = 0;
  #readyWaiters: ((up: boolean) => void)[] = [];

  constructor(options: RedisLimitsOptions) {
    this.#fallback = options.fallback;
    this.#deny = options.onRedisError === 'deny';
    this.#member = options.member;
    this.#log = options.log;
    this.#ttl = options.memberTtl ?? 30_000;
    this.#timeout = options.timeout ?? 250;
    this.#prefix = options.prefix ?? 'wsgate';
    this.#memberPrefix = `${this.#prefix}:m:`;
    this.#keys = [`${this.#prefix}:members`, `${this.#prefix}:agg`, `${this.#memberPrefix}${this.#member}`];
    this.#outage = new OutageLog(this.#log, 'limits');
    const client = createRedisClient(options.url, this.#timeout, `wsgate-limits:${this.#member}`, (err) => this.#down(err));
    client.on('ready', () => this.#needResync());
    client.on('close', () => this.#down(new Error('connection to redis closed')));
    this.#client = defineLimitsCommands(client);
    this.#schedule(this.#probeInterval);
  }

  get held(): number {
    return this.#holds.get('g') ?? 0;
  }

  /** Redis answers and holds this member's counts. */
  get connected(): boolean {
    return this.#phase === 'up';
  }

  /** Outages so far. */
  get outages(): number {
    return this.#outage.count;
  }

  /** True once Redis answers; false if it could not be reached first (admits go to the fallback meanwhile). */
  ready(): Promise<boolean> {
    if (this.#phase === 'up') return Promise.resolve(true);
    if (this.#phase === 'down' || this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  admit(req: AdmitRequest): Admission | Promise<Admission> {
    if (this.#phase !== 'up' || this.#closed) return this.#unavailable(req);
    const ipField = `i:${req.scope} ${req.key}`;
    const routeField = `r:${req.route}`;
    const epoch = this.#epoch;
    const rate = req.perIp.handshakeRate.perSecond;
    const bucket = `${this.#prefix}:b:${req.scope} ${req.key}`;
    const [members, agg, mine] = this.#keys;
    const reply = this.#client.wsgateAdmit(
      ...[members, agg, mine, bucket, this.#member, this.#memberPrefix, this.#ttl],
      ...[rate, req.perIp.handshakeBurst, ipField, req.perIp.maxConnections, routeField, req.routeMax, req.globalMax],
    );
    return bounded(reply, this.#timeout).then(
      ([outcome, detail, missing]) => {
        let answer: Admission;
        if (outcome === 0) {
          const fields = [ipField, routeField, 'g'];
          this.#add(fields, 1);
          // A resync sent after this admit replaced the copy without it.
          if (epoch !== this.#epoch) this.#reflect(fields, 1);
          answer = new RedisTicket(req.scope, req.key, req.route, fields, undefined);
        } else {
          answer = refusal(req, outcome, detail);
        }
        if (missing === 1) this.#needResync();
        return answer;
      },
      (err: unknown) => {
        this.#failed(err);
        return this.#unavailable(req);
      },
    );
  }

  release(ticket: Ticket): void {
    if (!(ticket instanceof RedisTicket) || ticket.released) return;
    ticket.released = true;
    if (ticket.inner !== undefined) this.#fallback.release(ticket.inner);
    this.#add(ticket.fields, -1);
    if (!this.#closed) this.#reflect(ticket.fields, -1);
  }

  /** Takes this member out of Redis (its sessions leave the counts) and closes the connection. Never rejects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#settleReady(false);
    if (this.#client.status === 'ready') {
      try {
        await bounded(this.#client.wsgateSync(...this.#keys, this.#member, this.#memberPrefix, this.#ttl, 'leave'), this.#timeout);
      } catch {
        // It will be reaped as dead within memberTtl.
      }
    }
    await quitClient(this.#client, this.#timeout);
  }

  /**
   * For tests: stops heart-beating and drops the connection without leaving,
   * as a crashed process would. Its counts stay in Redis until reaped.
   */
  abandon(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#settleReady(false);
    this.#client.disconnect(false);
  }

  #unavailable(req: AdmitRequest): Admission | Promise<Admission> {
    if (this.#deny) {
      this.#denied++;
      return new GatewayError('SHARED_STATE_UNAVAILABLE', `redis unreachable: cannot check the shared limits (route ${req.route})`);
    }
    this.#fallbackAnswers++;
    const a = this.#fallback.admit(req);
    return a instanceof Promise ? a.then((b) => this.#fromFallback(req, b)) : this.#fromFallback(req, a);
  }

  #fromFallback(req: AdmitRequest, a: Admission): Admission {
    if (!isTicket(a)) return a;
    const fields = [`i:${req.scope} ${req.key}`, `r:${req.route}`, 'g'];
    // Counted in Redis too once it is back: the session is as real as any other.
    this.#add(fields, 1);
    this.#reflect(fields, 1);
    return new RedisTicket(req.scope, req.key, req.route, fields, a);
  }

  #add(fields: readonly string[], d: number): void {
    for (const f of fields) {
      const n = (this.#holds.get(f) ?? 0) + d;
      if (n > 0) this.#holds.set(f, n);
      else this.#holds.delete(f);
    }
  }

  /** A local change that Redis does not have yet. */
  #reflect(fields: readonly string[], d: number): void {
    const pending = this.#pending;
    if (pending !== undefined) {
      for (const f of fields) pending.set(f, (pending.get(f) ?? 0) + d);
    } else if (this.#phase === 'up') {
      this.#move(fields.map((f) => [f, d]));
    } else {
      this.#dirty = true;
    }
  }

  #move(deltas: Iterable<[string, number]>): void {
    const args: (string | number)[] = [];
    for (const [f, d] of deltas) if (d !== 0) args.push(f, d);
    if (args.length === 0) return;
    const reply = this.#client.wsgateMove(...this.#keys, this.#member, this.#memberPrefix, this.#ttl, ...args);
    bounded(reply, this.#timeout).then(
      (missing) => {
        if (missing === 1) this.#needResync();
      },
      (err: unknown) => this.#failed(err),
    );
  }

  #needResync(): void {
    this.#dirty = true;
    this.#resync();
  }

  #resync(): void {
    if (this.#pending !== undefined || this.#closed || this.#client.status !== 'ready') return;
    void this.#sendResync(new Map<string, number>());
  }

  /**
   * The snapshot goes in chunks, one command each, so that a member holding
   * many addresses never keeps Redis (and the admits queued behind it) busy
   * for long. The first chunk replaces the member's hash, the others add to
   * it: an admit that lands between chunks adds to the snapshot, and its
   * count survives. Never rejects.
   */
  async #sendResync(pending: Map<string, number>): Promise<void> {
    this.#pending = pending;
    this.#dirty = false;
    this.#epoch++;
    const counts = [...this.#holds].flat();
    try {
      for (let i = 0; i === 0 || i < counts.length; i += SYNC_CHUNK * 2) {
        const chunk = counts.slice(i, i + SYNC_CHUNK * 2);
        const mode = i === 0 ? 'reset' : 'add';
        const reply = this.#client.wsgateSync(...this.#keys, this.#member, this.#memberPrefix, this.#ttl, mode, ...chunk);
        if ((await bounded(reply, this.#timeout)) === 1) throw new Error('member reaped in the middle of a resync');
        if (this.#closed) return;
      }
    } catch (err) {
      this.#pending = undefined;
      this.#failed(err);
      return;
    }
    this.#pending = undefined;
    this.#up();
    this.#move(pending);
    if (this.#dirty) this.#resync();
  }

  #heartbeat(): void {
    const reply = this.#client.wsgateHeartbeat(...this.#keys, this.#member, this.#memberPrefix, this.#ttl);
    bounded(reply, this.#timeout).then(
      (missing) => {
        if (missing === 1) this.#needResync();
      },
      (err: unknown) => this.#failed(err),
    );
  }

  /** Every memberTtl/6 while up (heartbeat); every probe interval while not (a resync, when connected). */
  #tick(): void {
    if (this.#closed) return;
    if (this.#phase === 'up') {
      if (this.#dirty) this.#resync();
      else if (this.#pending === undefined) this.#heartbeat();
    } else {
      this.#resync();
    }
    this.#schedule(this.#phase === 'up' ? this.#ttl / 6 : this.#probeInterval);
  }

  get #probeInterval(): number {
    return Math.min(1_000, this.#ttl / 6);
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tick(), ms);
    this.#timer.unref();
  }

  /** A command failed or timed out: it may have run, so only a resync can tell what Redis holds. */
  #failed(err: unknown): void {
    this.#dirty = true;
    this.#down(asError(err));
  }

  #down(err: Error): void {
    if (this.#closed) return;
    this.#log.debug({ err }, 'redis (limits): command or connection failed');
    if (this.#phase === 'down') return;
    this.#phase = 'down';
    this.#outage.start(err);
    this.#settleReady(false);
    this.#schedule(this.#probeInterval);
  }

  #up(): void {
    if (this.#phase === 'up') return;
    const first = this.#phase === 'connecting';
    this.#phase = 'up';
    if (!this.#outage.end({ fallbackAnswers: this.#fallbackAnswers, denied: this.#denied }) && first) {
      this.#log.info({ member: this.#member }, 'shared limits in redis');
    }
    this.#fallbackAnswers = 0;
    this.#denied = 0;
    this.#settleReady(true);
    this.#schedule(this.#ttl / 6);
  }

  #settleReady(up: boolean): void {
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const w of waiters) w(up);
  }
}

function refusal(req: AdmitRequest, outcome: number, detail: number): GatewayError {
  const { key, perIp } = req;
  if (outcome === 1) {
    const rate = perIp.handshakeRate.perSecond;
    return refusalError({
      code: 'PER_IP_RATE',
      detail: `${key}: over ${rate}/s handshakes (burst ${perIp.handshakeBurst})`,
      retryAfter: Math.max(1, Math.ceil(detail / 1000)),
    });
  }
  if (outcome === 2) {
    return refusalError({ code: 'PER_IP_CONNECTIONS', detail: `${key}: ${detail} open connections (limit ${perIp.maxConnections})`, retryAfter: 1 });
  }
  return refusalError({ code: 'OVER_CAPACITY', detail: `maxConnections reached (route ${req.route})` });
}
