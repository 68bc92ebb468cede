import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rawExchange, rawServer, startGateway, statusOf, upgradeRequest, eventually, type RunningGateway } from './helpers.js';
import { countBy, NO_PER_IP_LIMITS, openMany, openTagged, switchableBackend, type SwitchableBackend } from './resilience-helpers.js';

function config(targets: readonly string[], upstreamExtra: string, extra = ''): string {
  return `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    balance: round-robin
    targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}]
${upstreamExtra}
shutdown: { drainTimeout: 0 }
limits: { ${NO_PER_IP_LIMITS} }
${extra}`;
}

function targetOf(gw: RunningGateway, index: number): Record<string, unknown> {
  const upstream = gw.gw.upstreamStatus()[0]!;
  return upstream.targets[index] as unknown as Record<string, unknown>;
}

void describe('active health checks', () => {
  let a: SwitchableBackend;
  let b: SwitchableBackend;
  let gw: RunningGateway;
  before(async () => {
    a = await switchableBackend('a');
    b = await switchableBackend('b');
    gw = await startGateway(
      config([a.url, b.url], '    healthCheck: { type: http, path: /health, interval: 100ms, timeout: 1s, healthyThreshold: 2, unhealthyThreshold: 2 }'),
    );
  });
  after(async () => {
    await gw.close();
    await a.close();
    await b.close();
  });

  void it('checks every target at start, then on its interval', async () => {
    await eventually(() => targetOf(gw, 0).lastCheck !== undefined && targetOf(gw, 1).lastCheck !== undefined, 5_000, 'first checks');
    const first = targetOf(gw, 0).lastCheck as { at: string; ok: boolean };
    assert.equal(first.ok, true);
    await eventually(() => (targetOf(gw, 0).lastCheck as { at: string }).at !== first.at, 5_000, 'a second check');
  });

  void it('an unhealthy target gets no new connections; it comes back after healthyThreshold passes', async () => {
    b.healthy = false;
    await eventually(() => targetOf(gw, 1).healthy === false, 5_000, 'b unhealthy');
    assert.equal(targetOf(gw, 1).available, false);
    assert.ok(
      gw.logs.some((l) => l.msg === 'target unhealthy: status 503' && l.target === `app/${b.url}`),
      'logged',
    );
    const clients = await openMany(gw.url, 20);
    assert.deepEqual(
      countBy(clients, (c) => c.backend),
      { a: 20 },
    );
    b.healthy = true;
    await eventually(() => targetOf(gw, 1).available === true, 5_000, 'b back');
    const more = await openMany(gw.url, 20);
    assert.ok((countBy(more, (c) => c.backend).b ?? 0) > 0, 'b takes connections again');
    for (const c of [...clients, ...more]) c.ws.terminate();
  });

  void it('no healthy target left → 503 with a clear body', async () => {
    a.healthy = false;
    b.healthy = false;
    try {
      await eventually(() => gw.gw.upstreamStatus()[0]!.available === 0, 5_000, 'all unhealthy');
      const answer = await rawExchange(gw.port, upgradeRequest(), /\r\n\r\n[^]+/);
      assert.equal(statusOf(answer), 503);
      assert.match(answer, /no healthy target/);
    } finally {
      a.healthy = true;
      b.healthy = true;
    }
    await eventually(() => gw.gw.upstreamStatus()[0]!.available === 2, 5_000, 'all back');
    const c = await openTagged(gw.url);
    c.ws.terminate();
  });
});

void describe('tcp and websocket health checks in the gateway', () => {
  for (const type of ['tcp', 'websocket'] as const) {
    void it(`${type}: a live target passes, a dead one is marked unhealthy`, async () => {
      const live = await switchableBackend('live');
      const dead = await rawServer((s) => s.destroy());
      await dead.close();
      const gw = await startGateway(
        config([live.url, `ws://127.0.0.1:${dead.port}`], `    healthCheck: { type: ${type}, path: /, interval: 100ms, timeout: 1s }`),
      );
      try {
        await eventually(() => targetOf(gw, 1).healthy === false && targetOf(gw, 0).lastCheck !== undefined, 5_000, 'both checked');
        assert.equal(targetOf(gw, 0).healthy, true);
        assert.equal((targetOf(gw, 0).lastCheck as { ok: boolean }).ok, true);
        const clients = await openMany(gw.url, 6);
        assert.deepEqual(
          countBy(clients, (c) => c.backend),
          { live: 6 },
        );
        for (const c of clients) c.ws.terminate();
      } finally {
        await gw.close();
        await live.close();
      }
    });
  }
});

void describe('passive ejection', () => {
  void it('a target refusing connections is ejected after 3 failures and returns after the backoff', async () => {
    const live = await switchableBackend('live');
    const dead = await rawServer((s) => s.destroy());
    await dead.close();
    const deadUrl = `ws://127.0.0.1:${dead.port}`;
    const gw = await startGateway(config([live.url, deadUrl], '    outlier: { consecutiveFailures: 3, baseEjection: 1500ms }'));
    try {
      const attempts = (): number => gw.logs.filter((l) => l.msg === 'upstream attempt failed').length;
      // Every client gets through: the refused attempts are retried on the live target.
      const clients: Awaited<ReturnType<typeof openTagged>>[] = [];
      for (let i = 0; i < 8; i++) clients.push(await openTagged(gw.url));
      assert.deepEqual(
        countBy(clients, (c) => c.backend),
        { live: 8 },
      );
      assert.equal(attempts(), 3, 'round-robin sent every other client to the dead target until it was ejected');
      const ejected = gw.logs.find((l) => l.msg === 'target ejected');
      assert.equal(ejected?.target, `app/${deadUrl}`);
      assert.equal(ejected?.ms, 1500);
      assert.equal(targetOf(gw, 1).ejected, true);
      // While ejected, nobody tries it.
      for (let i = 0; i < 6; i++) clients.push(await openTagged(gw.url));
      assert.equal(attempts(), 3);
      await eventually(() => gw.logs.some((l) => l.msg === 'target returned' && l.by === 'backoff'), 10_000, 'return after the backoff');
      assert.equal(targetOf(gw, 1).available, true);
      // Back in rotation: the next connections try it again (and are retried on the live one).
      for (let i = 0; i < 4; i++) clients.push(await openTagged(gw.url));
      assert.ok(attempts() > 3);
      for (const c of clients) c.ws.terminate();
    } finally {
      await gw.close();
      await live.close();
    }
  });

  void it('plain HTTP requests that cannot reach a target count towards its ejection too', async () => {
    const live = await switchableBackend('live');
    const dead = await rawServer((s) => s.destroy());
    await dead.close();
    const deadUrl = `ws://127.0.0.1:${dead.port}`;
    const gw = await startGateway(config([live.url, deadUrl], '    outlier: { consecutiveFailures: 2, baseEjection: 10s }'));
    try {
      const attempts = (): number => gw.logs.filter((l) => l.msg === 'http passthrough attempt failed').length;
      for (let i = 0; i < 8; i++) {
        const res = await fetch(`http://127.0.0.1:${gw.port}/page`);
        assert.equal(res.status, 503, 'the live backend answers every request (503 for anything but /health)');
        assert.equal(await res.text(), 'live');
      }
      assert.equal(attempts(), 2, 'the dead target was tried until it was ejected, then no more');
      assert.equal(gw.logs.find((l) => l.msg === 'target ejected')?.target, `app/${deadUrl}`);
      assert.equal(targetOf(gw, 1).ejected, true);
    } finally {
      await gw.close();
      await live.close();
    }
  });

  void it('an upstream whose only target is ejected answers 503 (maxEjectionPercent: 100)', async () => {
    const dead = await rawServer((s) => s.destroy());
    await dead.close();
    const gw = await startGateway(
      config([`ws://127.0.0.1:${dead.port}`], '    retries: 0\n    outlier: { consecutiveFailures: 2, baseEjection: 10s, maxEjectionPercent: 100 }'),
    );
    try {
      assert.equal(statusOf(await rawExchange(gw.port, upgradeRequest())), 502);
      assert.equal(statusOf(await rawExchange(gw.port, upgradeRequest())), 502);
      const answer = await rawExchange(gw.port, upgradeRequest());
      assert.equal(statusOf(answer), 503);
      assert.match(answer, /no healthy target/);
    } finally {
      await gw.close();
    }
  });
});
