import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openClient, startBackend, startGateway } from './helpers.js';

function config(balance: string, urls: string[], extra = ''): string {
  return `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    balance: ${balance}
    ${extra}
    targets: [${urls.map((u) => `{ url: "${u}" }`).join(', ')}]
shutdown: { drainTimeout: 0 }`;
}

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
});
