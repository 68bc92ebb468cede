// Chaos over real sockets: backends in their own processes, SIGKILLed,
// restarted and drained under hundreds of clients, and reloads under load.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../src/config/load.js';
import type { Config } from '../src/config/types.js';
import { eventually, startGateway, type RunningGateway } from './helpers.js';
import {
  admin,
  countBy,
  NO_PER_IP_LIMITS,
  openMany,
  openTagged,
  roundTrip,
  spawnBackend,
  type ProcessBackend,
  type TaggedClient,
} from './resilience-helpers.js';

const CLIENTS = 500;
const DRAIN_PERIOD_MS = 2_000;

function yaml(backends: readonly ProcessBackend[], variant = 0): string {
  // Reload variants change what a reload may change without removing a target:
  // weights, routes, limits, health-check timing, relay settings.
  const weight = (i: number): number => (variant % 3 === i ? 2 : 1);
  const extraRoute = variant % 2 === 1 ? `\n  - { name: extra-${variant}, match: { path: /extra-${variant} }, upstream: app }` : '';
  return `
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
routes:
  - { name: main, match: { path: / }, upstream: app }${extraRoute}
upstreams:
  app:
    balance: least-connections
    targets: [${backends.map((b, i) => `{ url: "${b.url}", weight: ${variant === 0 ? 1 : weight(i)} }`).join(', ')}]
    retries: 2
    drainPeriod: ${DRAIN_PERIOD_MS}ms
    healthCheck: { type: http, path: /health, interval: ${variant % 2 === 0 ? 250 : 300}ms, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 2 }
limits: { idleTimeout: ${10 + variant}m, maxConnections: ${100_000 + variant}, ${NO_PER_IP_LIMITS} }
relay: { mode: inspect, pingInterval: ${30 + variant}s }
shutdown: { drainTimeout: 0 }
log: { level: info, accessLog: ${variant % 2 === 0 ? 'true' : 'false'} }
`;
}

function closeAll(clients: readonly TaggedClient[]): void {
  for (const c of clients) c.ws.terminate();
}

/** Resolves when every client has closed, or rejects naming how many have not after `ms`. */
async function allClosed(clients: readonly TaggedClient[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_r, reject) => {
    timer = setTimeout(() => reject(new Error(`${clients.filter((c) => c.closed === undefined).length} client(s) still open after ${ms}ms`)), ms);
  });
  try {
    await Promise.race([Promise.all(clients.map((c) => c.closedP)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

void describe('chaos: 3 backend processes, 500 clients', { timeout: 240_000 }, () => {
  let backends: ProcessBackend[];
  let gw: RunningGateway;
  before(async () => {
    backends = await Promise.all(['a', 'b', 'c'].map((n) => spawnBackend(n)));
    gw = await startGateway(yaml(backends));
    await eventually(() => gw.gw.upstreamStatus()[0]!.targets.every((t) => t.lastCheck?.ok === true), 20_000, 'first health checks');
  });
  after(async () => {
    await gw.close();
    await Promise.all(backends.map((b) => b.kill('SIGKILL')));
  });

  void it('SIGKILL one backend: its clients are closed within 2 s, reconnect onto the others, none hangs; restarted, it takes connections once healthy', async () => {
    const clients = await openMany(gw.url, CLIENTS);
    const victim = backends[1]!;
    const onVictim = clients.filter((c) => c.backend === victim.name);
    const survivors = clients.filter((c) => c.backend !== victim.name);
    assert.ok(onVictim.length > 100, `only ${onVictim.length} clients on ${victim.name}`);

    const killedAt = Date.now();
    await victim.kill('SIGKILL');
    await allClosed(onVictim, 10_000);
    const slowest = Math.max(...onVictim.map((c) => c.closed!.at - killedAt));
    assert.ok(slowest <= 2_000, `the last client of the killed backend was closed after ${slowest}ms`);
    assert.deepEqual(
      countBy(onVictim, (c) => String(c.closed!.code)),
      { '1011': onVictim.length },
      'inspect mode closes with 1011',
    );

    // Nobody else noticed, and nobody hangs.
    assert.ok(survivors.every((c) => c.closed === undefined));
    await Promise.all(survivors.map((c) => roundTrip(c, 'alive?')));

    // The closed clients reconnect at once, all of them successfully, onto the other two.
    const reconnected = await openMany(gw.url, onVictim.length);
    const landed = countBy(reconnected, (c) => c.backend);
    assert.equal(landed[victim.name], undefined);
    assert.equal((landed.a ?? 0) + (landed.c ?? 0), onVictim.length);
    await eventually(() => gw.gw.upstreamStatus()[0]!.targets[1]!.healthy === false, 10_000, 'killed backend marked unhealthy');

    // Restarted on the same port: new connections reach it once its health check passes.
    backends[1] = await spawnBackend(victim.name, victim.port);
    await eventually(() => gw.gw.upstreamStatus()[0]!.targets[1]!.available, 20_000, 'restarted backend healthy again');
    const fresh = await openMany(gw.url, 30);
    assert.ok((countBy(fresh, (c) => c.backend)[victim.name] ?? 0) > 0, 'the restarted backend takes new connections');
    assert.ok(gw.logs.some((l) => l.msg === 'target healthy' && l.target === `app/${victim.url}`));

    closeAll([...survivors, ...reconnected, ...fresh]);
  });

  void it('drain a target: all its clients get 1012 within the drain period; no connection on the others is lost', async () => {
    const clients = await openMany(gw.url, CLIENTS);
    const drained = clients.filter((c) => c.backend === 'a');
    const others = clients.filter((c) => c.backend !== 'a');
    assert.ok(drained.length > 100, `only ${drained.length} clients on a`);

    const startedAt = Date.now();
    const res = await admin(gw.gw, 'POST', '/api/upstreams/app/targets/0/drain');
    assert.equal(res.status, 200);
    // New connections during the drain go elsewhere.
    const during = await openMany(gw.url, 50);
    assert.equal(countBy(during, (c) => c.backend).a, undefined);

    await allClosed(drained, DRAIN_PERIOD_MS + 10_000);
    assert.deepEqual(
      countBy(drained, (c) => String(c.closed!.code)),
      { '1012': drained.length },
    );
    const last = Math.max(...drained.map((c) => c.closed!.at - startedAt));
    // The close frames go out within the period; the close handshakes take a moment more.
    assert.ok(last <= DRAIN_PERIOD_MS + 1_000, `the last drained client was closed after ${last}ms`);
    // Spread, not a stampede: the first half were gone well before the last.
    const times = drained.map((c) => c.closed!.at - startedAt).sort((x, y) => x - y);
    assert.ok(times[Math.floor(times.length / 4)]! < times[times.length - 1]! - DRAIN_PERIOD_MS / 4, `closes not spread: ${times[0]}..${times.at(-1)}ms`);

    assert.ok(
      others.every((c) => c.closed === undefined),
      'a connection on another target was lost',
    );
    await Promise.all(others.map((c) => roundTrip(c, 'still here')));

    assert.equal((await admin(gw.gw, 'POST', '/api/upstreams/app/targets/0/undrain')).status, 200);
    const after = await openMany(gw.url, 30);
    assert.ok((countBy(after, (c) => c.backend).a ?? 0) > 0, 'undrained target takes connections again');
    closeAll([...others, ...during, ...after]);
  });

  void it('20 reloads under load: zero dropped connections, zero failed handshakes', async () => {
    const persistent = await openMany(gw.url, 200);
    const logsBefore = gw.logs.length;
    let running = true;
    let handshakes = 0;
    const failures: string[] = [];
    let echoes = 0;

    // Steady traffic on the open connections...
    const chatter = persistent.map(async (c, i) => {
      while (running) {
        try {
          await roundTrip(c, `m${i}`);
          echoes++;
        } catch (err) {
          failures.push(`echo: ${(err as Error).message}`);
          return;
        }
        await sleep(20 + (i % 30));
      }
    });
    // ...and a stream of new ones, each used once and closed.
    const connectors = Array.from({ length: 8 }, async () => {
      while (running) {
        try {
          const c = await openTagged(gw.url);
          await roundTrip(c, 'hi');
          c.ws.close();
          await c.closedP;
          handshakes++;
        } catch (err) {
          failures.push(`handshake: ${(err as Error).message}`);
        }
      }
    });

    const configs: Config[] = Array.from({ length: 20 }, (_, i) => parseConfig(yaml(backends, i + 1), {}));
    for (const config of configs) {
      // Load between every two reloads: some new handshakes and some traffic on the open connections.
      const [h, e] = [handshakes, echoes];
      await eventually(() => (handshakes >= h + 3 && echoes >= e + 100) || failures.length > 0, 30_000, 'traffic between reloads');
      const result = await gw.gw.reload(config);
      assert.equal(result.ok, true, result.ok ? '' : result.errors.join('\n'));
    }
    await sleep(200);
    running = false;
    await Promise.all([...chatter, ...connectors]);

    assert.deepEqual(failures, []);
    const dropped = persistent.filter((c) => c.closed !== undefined);
    assert.equal(dropped.length, 0, `${dropped.length} connection(s) dropped`);
    const logs = gw.logs.slice(logsBefore);
    assert.equal(logs.filter((l) => l.msg === 'config reloaded').length, 20);
    assert.ok(!logs.some((l) => l.msg === 'target drain'), 'a reload drained a target');
    closeAll(persistent);
  });
});
