import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rawServer, startGateway, eventually, type RunningGateway } from './helpers.js';
import {
  admin,
  countBy,
  NO_PER_IP_LIMITS,
  openMany,
  openTagged,
  roundTrip,
  switchableBackend,
  type SwitchableBackend,
  type TaggedClient,
} from './resilience-helpers.js';

const TOKEN = 's3cret-token';

function config(targets: readonly string[], extra = ''): string {
  return `
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0, token: "\${ADMIN_TOKEN}" }
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    balance: round-robin
    targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}]
    drainPeriod: 500ms
shutdown: { drainTimeout: 0 }
limits: { ${NO_PER_IP_LIMITS} }
${extra}`;
}

void describe('admin API', () => {
  let a: SwitchableBackend;
  let b: SwitchableBackend;
  let gw: RunningGateway;
  before(async () => {
    a = await switchableBackend('a');
    b = await switchableBackend('b');
    gw = await startGateway(config([a.url, b.url]), { ADMIN_TOKEN: TOKEN });
  });
  after(async () => {
    await gw.close();
    await a.close();
    await b.close();
  });

  void it('GET /healthz and /readyz answer 200 with JSON; other methods 405', async () => {
    const health = await admin(gw.gw, 'GET', '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(health.body, { status: 'ok' });
    assert.match(health.headers.get('content-type') ?? '', /application\/json/);
    const ready = await admin(gw.gw, 'GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { ready: true });
    assert.equal((await admin(gw.gw, 'HEAD', '/readyz')).status, 200);
    const post = await admin(gw.gw, 'POST', '/healthz', TOKEN);
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  });

  void it('GET /api/upstreams lists every target with health, drain flag and active connections', async () => {
    const clients = await openMany(gw.url, 4);
    try {
      const { status, body } = await admin(gw.gw, 'GET', '/api/upstreams');
      assert.equal(status, 200);
      const [upstream] = body.upstreams as Record<string, unknown>[];
      assert.equal(upstream?.name, 'app');
      assert.equal(upstream?.available, 2);
      const targets = upstream?.targets as Record<string, unknown>[];
      assert.deepEqual(
        targets.map((t) => [t.index, t.url, t.weight, t.available, t.healthy, t.drained, t.ejected]),
        [
          [0, a.url, 1, true, true, false, false],
          [1, b.url, 1, true, true, false, false],
        ],
      );
      assert.deepEqual(
        targets.map((t) => t.activeConnections),
        [2, 2],
      );
      const one = await admin(gw.gw, 'GET', '/api/upstreams/app');
      assert.equal(one.status, 200);
      assert.equal(one.body.name, 'app');
      assert.equal((await admin(gw.gw, 'GET', '/api/upstreams/nope')).status, 404);
    } finally {
      for (const c of clients) c.ws.terminate();
    }
  });

  void it('mutating calls need the bearer token', async () => {
    const none = await admin(gw.gw, 'POST', '/api/upstreams/app/targets/0/drain');
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.equal((await admin(gw.gw, 'POST', '/api/upstreams/app/targets/0/drain', 'wrong')).status, 401);
    assert.equal((await admin(gw.gw, 'POST', '/api/upstreams/app/targets/0/drain', `${TOKEN}x`)).status, 401);
    assert.equal(gw.gw.upstreamStatus()[0]!.targets[0]!.drained, false, 'nothing happened');
    assert.equal((await admin(gw.gw, 'POST', '/api/reload')).status, 401);
  });

  void it('unknown targets are 404; GET on an action is 405', async () => {
    assert.equal((await admin(gw.gw, 'POST', '/api/upstreams/app/targets/2/drain', TOKEN)).status, 404);
    assert.equal((await admin(gw.gw, 'POST', '/api/upstreams/nope/targets/0/drain', TOKEN)).status, 404);
    assert.equal((await admin(gw.gw, 'GET', '/api/upstreams/app/targets/0/drain')).status, 405);
    assert.equal((await admin(gw.gw, 'GET', '/nothing')).status, 404);
  });

  void it('drain: the target gets no new connections; its clients get 1012 within drainPeriod; the others keep theirs', async () => {
    const clients = await openMany(gw.url, 20);
    const onA = clients.filter((c) => c.backend === 'a');
    const onB = clients.filter((c) => c.backend === 'b');
    assert.equal(onA.length, 10);
    const res = await admin(gw.gw, 'POST', '/api/upstreams/app/targets/0/drain', TOKEN);
    assert.equal(res.status, 200);
    const target = res.body.target as Record<string, unknown>;
    assert.equal(target.drained, true);
    assert.equal(target.available, false);
    const fresh = await openMany(gw.url, 10);
    assert.deepEqual(
      countBy(fresh, (c) => c.backend),
      { b: 10 },
    );
    await Promise.all(onA.map((c) => c.closedP));
    for (const c of onA) assert.equal(c.closed?.code, 1012);
    for (const c of onB) {
      assert.equal(c.closed, undefined);
      await roundTrip(c, 'still here');
    }
    assert.ok(gw.logs.some((l) => l.msg === 'target drain' && l.by === 'operator' && l.sessions === 10));
    await eventually(() => gw.logs.some((l) => l.msg === 'target drain complete'), 5_000, 'drain complete');

    const undrain = await admin(gw.gw, 'POST', '/api/upstreams/app/targets/0/undrain', TOKEN);
    assert.equal(undrain.status, 200);
    assert.equal((undrain.body.target as Record<string, unknown>).available, true);
    const again = await openMany(gw.url, 10);
    assert.ok((countBy(again, (c) => c.backend).a ?? 0) > 0, 'a takes connections again');
    for (const c of [...onB, ...fresh, ...again]) c.ws.terminate();
  });

  void it('POST /api/reload without a config file to re-read answers 422 with the reason', async () => {
    const res = await admin(gw.gw, 'POST', '/api/reload', TOKEN);
    assert.equal(res.status, 422);
    assert.deepEqual(res.body, { ok: false, errors: ['no config file to re-read'] });
  });
});

void describe('admin readiness', () => {
  void it('/readyz answers 503 while the gateway drains; /healthz stays 200', async () => {
    const backend = await switchableBackend('a');
    const gw = await startGateway(config([backend.url]).replace('drainTimeout: 0', 'drainTimeout: 10s'), { ADMIN_TOKEN: '' });
    let client: TaggedClient | undefined;
    try {
      client = await openTagged(gw.url);
      const stopped = gw.close();
      await eventually(() => gw.gw.stats().draining, 5_000, 'draining');
      const ready = await admin(gw.gw, 'GET', '/readyz');
      assert.equal(ready.status, 503);
      assert.deepEqual(ready.body, { ready: false, reason: 'draining' });
      assert.equal((await admin(gw.gw, 'GET', '/healthz')).status, 200);
      client.ws.close();
      await stopped;
    } finally {
      client?.ws.terminate();
      await gw.close();
      await backend.close();
    }
  });

  void it('without a token, mutating calls are open', async () => {
    const backend = await switchableBackend('a');
    const gw = await startGateway(config([backend.url]), { ADMIN_TOKEN: '' });
    try {
      assert.equal((await admin(gw.gw, 'POST', '/api/upstreams/app/targets/0/drain')).status, 200);
      assert.equal(gw.gw.upstreamStatus()[0]!.available, 0);
    } finally {
      await gw.close();
      await backend.close();
    }
  });
});

void describe('drain during a handshake', () => {
  void it('a target drained while a client is being connected to it is swapped for another before the 101', async () => {
    const other = await switchableBackend('other');
    let answer: (() => void) | undefined;
    // Holds each handshake until told to answer.
    const slow = await rawServer((socket) => {
      socket.once('data', (d: Buffer) => {
        const key = /sec-websocket-key: (.*)\r\n/i.exec(d.toString('latin1'))?.[1] ?? '';
        const accept = createHash('sha1')
          .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
          .digest('base64');
        answer = () =>
          socket.write(
            `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n\x81\x0ahello slow`,
            'latin1',
          );
      });
    });
    const gw = await startGateway(config([`ws://127.0.0.1:${slow.port}`, other.url]), { ADMIN_TOKEN: '' });
    try {
      const pending = openTagged(gw.url);
      await eventually(() => answer !== undefined, 5_000, 'handshake reached the slow target');
      gw.gw.setTargetDrained('app', 0, true);
      answer!();
      const client = await pending;
      assert.equal(client.backend, 'other');
      await roundTrip(client, 'ok');
      client.ws.terminate();
    } finally {
      await gw.close();
      await slow.close();
      await other.close();
    }
  });
});

void describe('drain in tunnel mode', () => {
  void it("the drained target's connections are cut (no close frame can be added); the others stay", async () => {
    const a = await switchableBackend('a');
    const b = await switchableBackend('b');
    const gw = await startGateway(config([a.url, b.url], 'relay: { mode: tunnel }').replace('drainPeriod: 500ms', 'drainPeriod: 0'), { ADMIN_TOKEN: '' });
    try {
      const clients = await openMany(gw.url, 6);
      gw.gw.setTargetDrained('app', 0, true);
      const onA = clients.filter((c) => c.backend === 'a');
      await Promise.all(onA.map((c) => c.closedP));
      for (const c of onA) assert.equal(c.closed?.code, 1006);
      for (const c of clients.filter((x) => x.backend === 'b')) await roundTrip(c, 'fine');
      for (const c of clients) c.ws.terminate();
    } finally {
      await gw.close();
      await a.close();
      await b.close();
    }
  });
});
