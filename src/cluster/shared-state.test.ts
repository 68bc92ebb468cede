import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { startRedis, type RedisServer } from '../../test/redis-fixture.js';
import { GatewayError, type ErrorCode } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { LocalState } from './local-state.js';
import { RESYNC_ORIGIN, RedisBus, type InstanceRecord } from './redis-bus.js';
import { RedisLimits, type RedisLimitsOptions } from './redis-state.js';
import { isTicket, type Admission, type AdmitRequest, type DrainCommand, type SharedState, type Ticket } from './shared-state.js';

// ---------------------------------------------------------------------------------------------
// Helpers

interface ReqOptions {
  scope?: string;
  key?: string;
  route?: string;
  maxConnections?: number;
  rate?: number;
  burst?: number;
  routeMax?: number;
  globalMax?: number;
}

function req(o: ReqOptions = {}): AdmitRequest {
  return {
    scope: o.scope ?? '',
    key: o.key ?? '10.0.0.1',
    route: o.route ?? 'chat',
    perIp: { maxConnections: o.maxConnections ?? 100, handshakeRate: { perSecond: o.rate ?? 0 }, handshakeBurst: o.burst ?? 0 },
    routeMax: o.routeMax ?? 1_000,
    globalMax: o.globalMax ?? 1_000,
  };
}

async function admitted(state: SharedState, r: AdmitRequest): Promise<Ticket> {
  const a = await state.admit(r);
  if (!isTicket(a)) assert.fail(`refused: ${a.code} ${a.message}`);
  return a;
}

async function refused(state: SharedState, r: AdmitRequest, code: ErrorCode): Promise<GatewayError> {
  const a: Admission = await state.admit(r);
  assert.ok(a instanceof GatewayError, `admitted, expected ${code}`);
  assert.equal(a.code, code, a.message);
  return a;
}

function retryAfter(err: GatewayError): number {
  const h = err.headers?.find((x) => x.startsWith('Retry-After: '));
  assert.ok(h !== undefined, `no Retry-After in ${String(err.headers)}`);
  return Number(h.slice('Retry-After: '.length));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

function captureLog(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

const silent = pino({ level: 'silent' });

/** A plain client, to look at or meddle with the keys; close() quits it. */
function rawClient(url: string): Redis & { close(): Promise<void> } {
  const client = new Redis(url, { lazyConnect: false });
  client.on('error', () => {});
  return Object.assign(client, { close: () => client.quit().then(() => undefined) });
}

/** Closes what a test opened, whatever its outcome. */
class Closer {
  readonly #items: { close(): Promise<void> }[] = [];

  add<T extends { close(): Promise<void> }>(item: T): T {
    this.#items.push(item);
    return item;
  }

  async closeAll(): Promise<void> {
    for (const item of this.#items.reverse()) await item.close();
  }
}

async function withCloser(fn: (c: Closer) => Promise<void>): Promise<void> {
  const c = new Closer();
  try {
    await fn(c);
  } finally {
    await c.closeAll();
  }
}

let server: RedisServer | undefined;
let prefixes = 0;
/** A key space of its own for every state, so tests never see each other's counts. */
const nextPrefix = (): string => `wsgate-test-${process.pid}-${++prefixes}`;

/** A connected RedisLimits (generous timeout: on a busy machine a slow answer must not look like an outage). */
async function redisLimits(url: string, over: Partial<RedisLimitsOptions> = {}): Promise<RedisLimits> {
  const limits = new RedisLimits({
    url,
    onRedisError: 'deny',
    fallback: new LocalState(),
    member: `test-${prefixes}/w${Math.random().toString(36).slice(2, 6)}`,
    log: silent,
    timeout: 2_000,
    prefix: nextPrefix(),
    ...over,
  });
  assert.equal(await limits.ready(), true, 'redis limits connected');
  return limits;
}

before(async () => {
  server = await startRedis();
});

after(async () => {
  await server?.stop();
});

// ---------------------------------------------------------------------------------------------
// The shared suite: every case runs against every implementation.

interface Implementation {
  readonly name: string;
  /** A fresh, empty state. */
  make(): Promise<SharedState>;
}

const IMPLEMENTATIONS: readonly Implementation[] = [
  { name: 'LocalState', make: () => Promise.resolve(new LocalState()) },
  { name: 'RedisLimits (one member)', make: () => redisLimits(server!.url) },
];

interface SharedCase {
  readonly name: string;
  run(state: SharedState): Promise<void>;
}

const SHARED_CASES: readonly SharedCase[] = [
  {
    name: 'caps open sessions per address: the 11th of 10 is refused (429, Retry-After: 1), a release frees a place',
    async run(state) {
      const r = req({ maxConnections: 10 });
      const tickets: Ticket[] = [];
      for (let i = 0; i < 10; i++) tickets.push(await admitted(state, r));
      const err = await refused(state, r, 'PER_IP_CONNECTIONS');
      assert.equal(err.status, 429);
      assert.equal(retryAfter(err), 1);
      assert.match(err.message, /^10\.0\.0\.1: 10 open connections \(limit 10\)$/);
      await admitted(state, req({ maxConnections: 10, key: '10.0.0.2' }));
      state.release(tickets[0]!);
      await admitted(state, r);
      await refused(state, r, 'PER_IP_CONNECTIONS');
    },
  },
  {
    name: 'handshake rate: a burst, then 429 with Retry-After, and a token back after 1/rate seconds',
    async run(state) {
      const r = req({ rate: 2, burst: 3 });
      for (let i = 0; i < 3; i++) await admitted(state, r);
      const err = await refused(state, r, 'PER_IP_RATE');
      assert.equal(err.status, 429);
      const after = retryAfter(err);
      assert.ok(Number.isInteger(after) && after >= 1, `Retry-After ${after}`);
      assert.match(err.message, /over 2\/s handshakes \(burst 3\)/);
      await admitted(state, req({ rate: 2, burst: 3, key: '10.0.0.2' }));
      await sleep(1_100);
      await admitted(state, r);
    },
  },
  {
    name: 'rate 0 is unlimited',
    async run(state) {
      for (let i = 0; i < 50; i++) await admitted(state, req({ rate: 0, burst: 0 }));
    },
  },
  {
    name: 'route and gateway caps: 503 OVER_CAPACITY, per route and in total',
    async run(state) {
      const a = (key: string): AdmitRequest => req({ route: 'a', key, routeMax: 2, globalMax: 3 });
      const b = (key: string): AdmitRequest => req({ route: 'b', key, routeMax: 2, globalMax: 3 });
      const first = await admitted(state, a('10.0.0.1'));
      await admitted(state, a('10.0.0.2'));
      const err = await refused(state, a('10.0.0.3'), 'OVER_CAPACITY');
      assert.equal(err.status, 503);
      assert.match(err.message, /route a/);
      await admitted(state, b('10.0.0.3'));
      await refused(state, b('10.0.0.4'), 'OVER_CAPACITY');
      state.release(first);
      await admitted(state, b('10.0.0.4'));
    },
  },
  {
    name: 'scopes are kept apart: the top level and a route with its own perIp count separately',
    async run(state) {
      const top = req({ scope: '', maxConnections: 1, rate: 1, burst: 1 });
      const chat = req({ scope: 'chat', maxConnections: 1, rate: 1, burst: 1 });
      const t = await admitted(state, top);
      await admitted(state, chat);
      // Both buckets are empty now: the rate answers first.
      await refused(state, top, 'PER_IP_RATE');
      await refused(state, chat, 'PER_IP_RATE');
      const roomy = req({ scope: 'chat', key: '10.0.0.9', maxConnections: 1 });
      await admitted(state, roomy);
      await refused(state, roomy, 'PER_IP_CONNECTIONS');
      state.release(t);
      await admitted(state, req({ scope: '', key: '10.0.0.9', maxConnections: 1 }));
    },
  },
  {
    name: 'held counts admitted sessions until released; refusals hold nothing',
    async run(state) {
      assert.equal(state.held, 0);
      const r = req({ maxConnections: 2 });
      const t1 = await admitted(state, r);
      const t2 = await admitted(state, r);
      await refused(state, r, 'PER_IP_CONNECTIONS');
      assert.equal(state.held, 2);
      state.release(t1);
      assert.equal(state.held, 1);
      state.release(t2);
      assert.equal(state.held, 0);
    },
  },
];

for (const impl of IMPLEMENTATIONS) {
  void describe(`shared state (shared suite): ${impl.name}`, () => {
    for (const c of SHARED_CASES) {
      void it(c.name, () => withCloser(async (closer) => c.run(closer.add(await impl.make()))));
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Redis only: several members, dead members, outages.

void describe('RedisLimits across members', () => {
  void it('two members share the limits: 10 on one and 1 on the other is refused', () =>
    withCloser(async (closer) => {
      const prefix = nextPrefix();
      const a = closer.add(await redisLimits(server!.url, { prefix, member: 'a' }));
      const b = closer.add(await redisLimits(server!.url, { prefix, member: 'b' }));
      const r = req({ maxConnections: 10 });
      const tickets: Ticket[] = [];
      for (let i = 0; i < 10; i++) tickets.push(await admitted(a, r));
      await refused(b, r, 'PER_IP_CONNECTIONS');
      a.release(tickets[0]!);
      // The release travels on a's connection: b sees it once it has landed.
      await eventually(async () => isTicket(await b.admit(r)), "b admitted after a's release");
      assert.equal(a.held, 9);
      assert.equal(b.held, 1);
    }));

  void it('released sessions leave no zero fields behind, and idle rate buckets expire', () =>
    withCloser(async (closer) => {
      const prefix = nextPrefix();
      const raw = closer.add(rawClient(server!.url));
      const a = closer.add(await redisLimits(server!.url, { prefix, member: 'a' }));
      const tickets: Ticket[] = [];
      for (let i = 0; i < 5; i++) tickets.push(await admitted(a, req({ key: `10.0.1.${i}`, route: `r${i % 2}`, rate: 10, burst: 20 })));
      assert.equal(await raw.hget(`${prefix}:agg`, 'g'), '5');
      const ttl = await raw.pttl(`${prefix}:b: 10.0.1.0`);
      assert.ok(ttl > 0 && ttl <= 3_000, `bucket TTL ${ttl}ms: refilled in 2 s, gone 1 s later`);
      for (const t of tickets) a.release(t);
      await eventually(async () => (await raw.hlen(`${prefix}:agg`)) === 0, 'the aggregate emptied');
      assert.equal(await raw.hlen(`${prefix}:m:a`), 0);
      assert.equal(a.held, 0);
      await a.close();
      assert.equal(await raw.zcard(`${prefix}:members`), 0, 'close() leaves');
    }));

  void it('a member that stops heart-beating has its sessions dropped within memberTtl', () =>
    withCloser(async (closer) => {
      const prefix = nextPrefix();
      const a = closer.add(await redisLimits(server!.url, { prefix, member: 'a', memberTtl: 1_000 }));
      const b = closer.add(await redisLimits(server!.url, { prefix, member: 'b', memberTtl: 1_000 }));
      const r = req({ maxConnections: 10 });
      for (let i = 0; i < 10; i++) await admitted(a, r);
      a.abandon();
      await refused(b, r, 'PER_IP_CONNECTIONS');
      const since = Date.now();
      await eventually(async () => isTicket(await b.admit(r)), "b admitted once a's sessions expired", 10_000);
      assert.ok(Date.now() - since >= 500, 'not dropped while a was still within its TTL');
    }));

  void it('a live member found reaped as dead (after a long stall) puts its sessions back: at its next admit, or heartbeat', () =>
    withCloser(async (closer) => {
      const prefix = nextPrefix();
      const raw = closer.add(rawClient(server!.url));
      const ipField = `${prefix}:agg`;
      // a heart-beats every 10 s: nothing but its next admit can notice.
      const a = closer.add(await redisLimits(server!.url, { prefix, member: 'a', memberTtl: 60_000 }));
      const b = closer.add(await redisLimits(server!.url, { prefix, member: 'b' }));
      const r = req({ maxConnections: 3 });
      for (let i = 0; i < 3; i++) await admitted(a, r);
      await raw.zadd(`${prefix}:members`, 0, 'a');
      b.release(await admitted(b, r)); // b's call reaps a: its 3 sessions leave the counts
      await admitted(a, r); // a learns it was reaped, and resyncs
      await eventually(async () => (await raw.hget(ipField, 'i: 10.0.0.1')) === '4', "a's 4 sessions counted");
      await refused(b, r, 'PER_IP_CONNECTIONS');

      // c heart-beats every 200 ms: its heartbeat notices.
      const c = closer.add(await redisLimits(server!.url, { prefix, member: 'c', memberTtl: 1_200 }));
      await admitted(c, req({ maxConnections: 10 }));
      await raw.zadd(`${prefix}:members`, 0, 'c');
      await eventually(async () => Number(await raw.zscore(`${prefix}:members`, 'c')) > 0, 'c registered again');
      assert.equal(await raw.hget(ipField, 'i: 10.0.0.1'), '5');
      assert.equal(await raw.hget(`${prefix}:m:c`, 'g'), '1');
    }));
});

void describe('RedisLimits when redis fails', () => {
  const TIMEOUT = 250;

  void it('paused redis, onRedisError allow: admits are answered by the fallback within the timeout, and counted once back', async () => {
    const redis = await startRedis();
    try {
      await withCloser(async (closer) => {
        const prefix = nextPrefix();
        const { log, lines } = captureLog();
        const fallback = new LocalState();
        const opts = { prefix, onRedisError: 'allow' as const, fallback, log, timeout: TIMEOUT };
        const a = closer.add(await redisLimits(redis.url, { ...opts, member: 'a' }));
        const r = req({ maxConnections: 100 });
        await admitted(a, r);

        redis.pause();
        let started = Date.now();
        const viaFallback = await admitted(a, r);
        assert.ok(Date.now() - started < TIMEOUT + 1_000, `answered in ${Date.now() - started}ms`);
        assert.equal(fallback.held, 1);
        assert.equal(a.connected, false);
        assert.equal(a.outages, 1);
        started = Date.now();
        const another = await admitted(a, r);
        assert.ok(Date.now() - started < TIMEOUT + 1_000);
        a.release(another);
        assert.equal(fallback.held, 1, 'a fallback ticket goes back to the fallback');
        assert.equal(a.held, 2);
        assert.equal(lines.filter((l) => l.msg === 'redis unreachable').length, 1, 'the outage is logged once');

        redis.resume();
        await eventually(() => a.connected, 'reconnected');
        const back = lines.find((l) => l.msg === 'redis reachable again');
        assert.ok(back !== undefined);
        assert.equal(back.fallbackAnswers, 2);
        assert.equal(typeof back.downMs, 'number');
        assert.equal(a.outages, 1);

        // a holds 2 (one admitted by Redis, one by the fallback); the admit that timed out
        // ran once redis woke up, and the resync took it back out.
        const b = closer.add(await redisLimits(redis.url, { prefix, member: 'b' }));
        await refused(b, req({ maxConnections: 2 }), 'PER_IP_CONNECTIONS');
        await admitted(b, req({ maxConnections: 3 }));
        a.release(viaFallback);
        assert.equal(fallback.held, 0);
      });
    } finally {
      await redis.stop();
    }
  });

  void it('paused redis, onRedisError deny: 503 SHARED_STATE_UNAVAILABLE within the timeout', async () => {
    const redis = await startRedis();
    try {
      await withCloser(async (closer) => {
        const a = closer.add(await redisLimits(redis.url, { onRedisError: 'deny', timeout: TIMEOUT }));
        redis.pause();
        for (let i = 0; i < 2; i++) {
          const started = Date.now();
          const err = await refused(a, req(), 'SHARED_STATE_UNAVAILABLE');
          assert.ok(Date.now() - started < TIMEOUT + 1_000, `answered in ${Date.now() - started}ms`);
          assert.equal(err.status, 503);
        }
        assert.equal(a.held, 0);
        redis.resume();
        await eventually(() => a.connected, 'reconnected');
        await admitted(a, req());
      });
    } finally {
      await redis.stop();
    }
  });

  void it('redis restarted (data lost): the member resyncs, and its sessions count again', async () => {
    const redis = await startRedis();
    try {
      await withCloser(async (closer) => {
        const prefix = nextPrefix();
        const a = closer.add(await redisLimits(redis.url, { prefix, member: 'a', onRedisError: 'allow' }));
        const r = req({ maxConnections: 3 });
        const tickets = [await admitted(a, r), await admitted(a, r), await admitted(a, r)];
        await redis.restart();
        await eventually(() => a.outages === 1 && a.connected, 'a reconnected after the restart');
        const b = closer.add(await redisLimits(redis.url, { prefix, member: 'b' }));
        await refused(b, r, 'PER_IP_CONNECTIONS');
        a.release(tickets[0]!);
        await eventually(async () => isTicket(await b.admit(r)), "b admitted after a's release");
      });
    } finally {
      await redis.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// RedisBus: drains and the instance registry.

function record(id: string, connections: number): InstanceRecord {
  return {
    id,
    host: 'host',
    pid: 1000 + connections,
    startedAt: new Date(0).toISOString(),
    heartbeat: 0,
    connections,
    workers: [{ id: 1, pid: 2000, connections }],
  };
}

void describe('RedisBus', () => {
  void it('drains reach the other instances (not the publisher), and late joiners read them', () =>
    withCloser(async (closer) => {
      const prefix = nextPrefix();
      const bus = (id: string): RedisBus => closer.add(new RedisBus({ url: server!.url, id, log: silent, prefix, timeout: 2_000 }));
      const one = bus('one');
      const two = bus('two');
      const heardByOne: [DrainCommand, string][] = [];
      const heardByTwo: [DrainCommand, string][] = [];
      one.onDrain((cmd, origin) => heardByOne.push([cmd, origin]));
      two.onDrain((cmd, origin) => heardByTwo.push([cmd, origin]));
      await Promise.all([one.subscribed(), two.subscribed()]);

      const target = 'chat/ws://10.0.0.11:3000';
      await one.publishDrain({ target, drained: true });
      await eventually(() => heardByTwo.length >= 1, 'two hears the drain');
      assert.deepEqual(heardByTwo[0], [{ target, drained: true }, 'one']);

      const late = bus('late');
      assert.deepEqual(await late.drains(), [{ target, drained: true }]);
      const heardByLate: [DrainCommand, string][] = [];
      late.onDrain((cmd, origin) => heardByLate.push([cmd, origin]));
      await late.subscribed();
      await eventually(() => heardByLate.length >= 1, 'the late joiner is handed the current drains');
      assert.deepEqual(heardByLate[0], [{ target, drained: true }, RESYNC_ORIGIN]);

      await two.publishDrain({ target, drained: false });
      await eventually(() => heardByOne.length >= 1 && heardByLate.length >= 2, 'one and late hear the undrain');
      assert.deepEqual(heardByOne[0], [{ target, drained: false }, 'two']);
      assert.deepEqual(await late.drains(), []);
      assert.deepEqual(heardByLate[1], [{ target, drained: false }, 'two']);
      await sleep(100);
      assert.equal(heardByTwo.length, 1, 'a publisher does not hear itself');
      assert.equal(heardByOne.length, 1, 'a publisher does not hear itself');
    }));

  void it('paused redis: calls fail within the timeout as SHARED_STATE_UNAVAILABLE, register() says false, the outage is logged once', async () => {
    const redis = await startRedis();
    try {
      await withCloser(async (closer) => {
        const { log, lines } = captureLog();
        const bus = closer.add(new RedisBus({ url: redis.url, id: 'one', log, prefix: nextPrefix(), timeout: 250 }));
        assert.equal(await bus.register(record('one', 1)), true);
        redis.pause();
        const started = Date.now();
        await assert.rejects(bus.publishDrain({ target: 'chat/ws://10.0.0.11:3000', drained: true }), (err: unknown) => {
          assert.ok(err instanceof GatewayError);
          assert.equal(err.code, 'SHARED_STATE_UNAVAILABLE');
          return true;
        });
        assert.ok(Date.now() - started < 250 + 1_000, `answered in ${Date.now() - started}ms`);
        assert.equal(await bus.register(record('one', 2)), false);
        await assert.rejects(bus.instances(), GatewayError);
        assert.equal(bus.connected, false);
        assert.equal(bus.outages, 1);
        assert.equal(lines.filter((l) => l.msg === 'redis unreachable').length, 1);
        redis.resume();
        await eventually(async () => (await bus.register(record('one', 3))) === true, 'registered again');
        assert.deepEqual(
          (await bus.instances()).map((i) => i.connections),
          [3],
        );
        assert.equal(bus.connected, true);
        assert.ok(lines.some((l) => l.msg === 'redis reachable again'));
      });
    } finally {
      await redis.stop();
    }
  });

  void it('the registry lists live instances and prunes one that stopped heart-beating', () =>
    withCloser(async (closer) => {
      const prefix = nextPrefix();
      const bus = (id: string): RedisBus => closer.add(new RedisBus({ url: server!.url, id, log: silent, prefix, memberTtl: 1_000, timeout: 2_000 }));
      const one = bus('one');
      const two = bus('two');
      assert.equal(await one.register(record('one', 3)), true);
      assert.equal(await two.register(record('two', 5)), true);
      const both = (await one.instances()).sort((x, y) => x.id.localeCompare(y.id));
      assert.deepEqual(
        both.map((i) => [i.id, i.connections, i.workers.length]),
        [
          ['one', 3, 1],
          ['two', 5, 1],
        ],
      );
      for (const i of both) assert.ok(Math.abs(i.heartbeat - Date.now()) < 60_000, `heartbeat ${i.heartbeat}`);

      // one keeps beating, two has stopped.
      const deadline = Date.now() + 1_600;
      while (Date.now() < deadline) {
        await one.register(record('one', 4));
        await sleep(200);
      }
      const live = await two.instances();
      assert.deepEqual(
        live.map((i) => [i.id, i.connections]),
        [['one', 4]],
      );

      await one.unregister();
      assert.deepEqual(await two.instances(), []);
    }));
});
