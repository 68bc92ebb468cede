import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { WebSocket } from 'ws';
import { eventually, openClient, startBackend, startGateway, type Backend } from './helpers.js';

function config(balance: string, urls: string[], extra = '', topLevel = ''): string {
  return `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    balance: ${balance}
    ${extra}
    targets: [${urls.map((u) => `{ url: "${u}" }`).join(', ')}]
shutdown: { drainTimeout: 0 }
${topLevel}`;
}

/** Opens one session, closes it, and returns the index of the backend that took it (the one that accepted one more upgrade). */
async function landing(backends: readonly Backend[], url: string, options: Parameters<typeof openClient>[1] = {}): Promise<number> {
  const before = backends.map((b) => b.requests.length);
  (await openClient(url, options)).close();
  const grew = backends.flatMap((b, i) => (b.requests.length > before[i]! ? [i] : []));
  assert.equal(grew.length, 1, `exactly one backend took the session: ${grew.join(',')}`);
  return grew[0]!;
}

/**
 * Where each hash key source reads its key, and a client that sends key number i there.
 * The cookie and query keys sit among other cookies and parameters, as a browser would send them.
 */
const HASH_SOURCES: readonly { key: string; client(i: number): { path: string; options: Parameters<typeof openClient>[1] } }[] = [
  // Every 127.0.0.0/8 address is on Linux's loopback, so each key is a source address of its own.
  { key: 'ip', client: (i) => ({ path: '/', options: { localAddress: `127.0.0.${i + 2}` } }) },
  { key: 'cookie:session', client: (i) => ({ path: '/', options: { headers: { cookie: `theme=dark; session=s-${i}; lang=en` } } }) },
  { key: 'query:room', client: (i) => ({ path: `/?v=2&room=room-${i}&x=1`, options: {} }) },
];

void describe('load balancing through the gateway', () => {
  void it('round-robin spreads sessions evenly; least-connections fills the emptier target', async () => {
    const [a, b] = await Promise.all([startBackend(), startBackend()]);
    const rr = await startGateway(config('round-robin', [a.url, b.url]));
    try {
      const clients = await Promise.all(Array.from({ length: 10 }, () => openClient(rr.url)));
      assert.equal(a.requests.length, 5);
      assert.equal(b.requests.length, 5);
      for (const c of clients) c.close();
    } finally {
      await rr.close();
    }
    const lc = await startGateway(config('least-connections', [a.url, b.url]));
    try {
      a.requests.length = 0;
      b.requests.length = 0;
      const [x, y] = await Promise.all([openClient(lc.url), openClient(lc.url)]);
      assert.equal(a.requests.length, 1, 'one session on each target');
      // Close the session that landed on a: the next three must fill a first.
      const onA = [...a.wss.clients][0]!;
      onA.close();
      await new Promise((r) => setTimeout(r, 200));
      const more = [await openClient(lc.url)];
      assert.equal(a.requests.length, 2, 'the emptier target got the new session');
      for (const c of [x, y, ...more]) c!.close();
    } finally {
      await lc.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  void it('hash on a header keeps a user on one target', async () => {
    const backends = await Promise.all([startBackend(), startBackend(), startBackend()]);
    const gw = await startGateway(
      config(
        'hash',
        backends.map((b) => b.url),
        'hash: { key: "header:x-user-id" }',
      ),
    );
    try {
      for (const user of ['alice', 'bob', 'carol', 'dave']) {
        const counts = backends.map((b) => b.requests.length);
        for (let i = 0; i < 5; i++) (await openClient(gw.url, { headers: { 'x-user-id': user } })).close();
        const grew = backends.map((b, i) => b.requests.length - counts[i]!);
        assert.deepEqual(
          grew.filter((n) => n > 0),
          [5],
          `${user} stuck to one target: ${grew.join(',')}`,
        );
      }
    } finally {
      await gw.close();
      await Promise.all(backends.map((b) => b.close()));
    }
  });

  void it('power-of-two keeps two targets level, and sends new sessions to the less loaded one', async () => {
    const [a, b] = await Promise.all([startBackend(), startBackend()]);
    const gw = await startGateway(config('power-of-two', [a.url, b.url]));
    const clients: WebSocket[] = [];
    try {
      // Of two targets, both are always the two candidates, so the less loaded one always wins:
      // with every session held open, the two never differ by more than one.
      for (let i = 0; i < 16; i++) {
        clients.push(await openClient(gw.url));
        assert.ok(Math.abs(a.requests.length - b.requests.length) <= 1, `after ${i + 1} sessions: ${a.requests.length} on a, ${b.requests.length} on b`);
      }
      assert.deepEqual([a.requests.length, b.requests.length], [8, 8]);
      // b's sessions end: a still holds 8 open, b none.
      for (const ws of b.wss.clients) ws.close();
      await eventually(() => gw.logs.filter((l) => l.msg === 'session closed').length === 8, 10_000, "the gateway to end b's 8 sessions");
      // Every new session goes to b until the two are level again: b has fewer at each pick.
      for (let i = 0; i < 8; i++) clients.push(await openClient(gw.url));
      assert.deepEqual([a.requests.length, b.requests.length], [8, 16], 'the 8 new sessions all went to the less loaded target');
    } finally {
      for (const c of clients) c.close();
      await gw.close();
      await Promise.all([a.close(), b.close()]);
    }
  });

  for (const source of HASH_SOURCES) {
    void it(`hash on ${source.key}: one key always reaches the same target, and 20 keys spread over several`, async () => {
      const backends = await Promise.all([startBackend(), startBackend(), startBackend()]);
      // One client address sends all 60 handshakes of the cookie and query cases: lift the per-IP rate limit.
      const gw = await startGateway(
        config(
          'hash',
          backends.map((b) => b.url),
          `hash: { key: "${source.key}" }`,
          'limits: { perIp: { handshakeRate: 1000/s, handshakeBurst: 1000 } }',
        ),
      );
      try {
        const targetsOf = Array.from({ length: 20 }, () => new Set<number>());
        // Rounds over all keys, so each key's sessions are interleaved with the other keys' sessions.
        for (let round = 0; round < 3; round++) {
          for (let i = 0; i < targetsOf.length; i++) {
            const { path, options } = source.client(i);
            targetsOf[i]!.add(await landing(backends, gw.url + path, options));
          }
        }
        targetsOf.forEach((targets, i) => assert.equal(targets.size, 1, `key ${i} reached targets ${[...targets].join(',')}`));
        const used = new Set(targetsOf.map((targets) => [...targets][0]));
        assert.ok(used.size > 1, `20 keys all on target ${[...used].join(',')}`);
        if (source.key === 'ip') {
          // The keys really were different client addresses, as the backends were told.
          const forwarded = new Set(backends.flatMap((b) => b.requests.map((r) => r.headers['x-forwarded-for'])));
          assert.equal(forwarded.size, 20, `client addresses seen: ${[...forwarded].join(',')}`);
        }
      } finally {
        await gw.close();
        await Promise.all(backends.map((b) => b.close()));
      }
    });
  }
});
