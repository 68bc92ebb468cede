import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { echo, eventually, startBackend, startGateway, statusOf, upgradeRequest, withGateway } from './helpers.js';

/** A raw handshake from a chosen local address (any of 127.0.0.0/8 works on loopback). */
async function rawFrom(port: number, localAddress: string, request: string, host = '127.0.0.1'): Promise<string> {
  const socket = connect({ port, host, localAddress });
  socket.on('error', () => {});
  let text = '';
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(text);
    };
    const timer = setTimeout(done, 10_000);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('\r\n\r\n')) done();
    });
    socket.on('close', done);
    socket.write(request);
  });
}

async function statusFrom(port: number, localAddress: string, path = '/', headers: readonly string[] = []): Promise<number> {
  return statusOf(await rawFrom(port, localAddress, upgradeRequest(path, headers)));
}

/** An open WebSocket from a local address. */
async function wsFrom(url: string, localAddress: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, { localAddress, headers });
  ws.on('error', () => {});
  await once(ws, 'open');
  return ws;
}

void describe('Origin check (allowedOrigins)', () => {
  const fx = withGateway(
    startBackend,
    (backend) => `
listeners: [{ address: 127.0.0.1:0 }]
routes:
  - { name: strict, match: { path: /strict }, upstream: app, allowedOrigins: ["https://app.example.com"], allowMissingOrigin: false }
  - { name: open, match: { path: / }, upstream: app, allowedOrigins: ["https://app.example.com", "https://*.example.org:8443"] }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`,
  );

  const cases: [string, string | undefined, number][] = [
    ['/', 'https://app.example.com', 101],
    ['/', 'HTTPS://APP.EXAMPLE.COM:443', 101],
    ['/', 'https://evil.example.com', 403],
    ['/', 'http://app.example.com', 403],
    ['/', 'https://a.example.org:8443', 101],
    ['/', 'https://a.b.example.org:8443', 101],
    ['/', 'https://example.org:8443', 403],
    ['/', 'https://a.example.org', 403],
    ['/', 'null', 403],
    ['/', undefined, 101],
    ['/strict', undefined, 403],
    ['/strict', 'https://app.example.com', 101],
  ];
  for (const [path, origin, status] of cases) {
    void it(`${path} with Origin ${origin ?? '(none)'} → ${status}`, async () => {
      const before = fx.backend.requests.length;
      const got = await statusFrom(fx.gw.port, '127.0.0.1', path, origin === undefined ? [] : [`Origin: ${origin}`]);
      assert.equal(got, status);
      assert.equal(fx.backend.requests.length, before + (status === 101 ? 1 : 0));
      if (status === 403) assert.equal(fx.gw.logs.findLast((l) => l.msg === 'handshake rejected')?.code, 'ORIGIN_FORBIDDEN');
    });
  }
});

void describe('IP allow and deny lists', () => {
  const fx = withGateway(
    startBackend,
    (backend) => `
listeners: [{ address: 127.0.0.1:0, ipDeny: [127.0.0.9] }]
trustedProxies: [127.0.0.5]
routes:
  - { name: admin, match: { path: /admin }, upstream: app, ipAllow: [127.0.0.3/32, "2001:db8::/32"] }
  - { name: main, match: { path: / }, upstream: app, ipDeny: [127.0.0.2, "203.0.113.0/24", "2001:db8:bad::/48"] }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`,
  );

  void it('a route deny list → 403; others pass', async () => {
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.2'), 403);
    assert.equal(fx.gw.logs.findLast((l) => l.msg === 'handshake rejected')?.code, 'IP_FORBIDDEN');
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.1'), 101);
  });

  void it('a route allow list admits only what it lists', async () => {
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.1', '/admin'), 403);
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.3', '/admin'), 101);
  });

  void it('lists apply to the forwarded client address from a trusted proxy, IPv6 included', async () => {
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.5', '/', ['X-Forwarded-For: 203.0.113.7']), 403);
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.5', '/', ['X-Forwarded-For: 198.51.100.7']), 101);
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.5', '/', ['X-Forwarded-For: 2001:db8:bad::1']), 403);
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.5', '/admin', ['X-Forwarded-For: 2001:db8:1::1']), 101);
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.5', '/admin', ['X-Forwarded-For: 2001:db9::1']), 403);
    // An untrusted peer's X-Forwarded-For is ignored: 127.0.0.2 is still denied.
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.2', '/', ['X-Forwarded-For: 198.51.100.7']), 403);
  });

  void it('plain HTTP requests on a route get the same 403', async () => {
    const answer = await rawFrom(fx.gw.port, '127.0.0.2', 'GET /page HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(answer), 403);
  });

  void it('a listener deny list closes the connection at accept, before any byte is read', async () => {
    const before = fx.backend.requests.length;
    const answer = await rawFrom(fx.gw.port, '127.0.0.9', upgradeRequest());
    assert.equal(answer, '');
    assert.equal(fx.backend.requests.length, before);
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'connection refused by the listener IP lists' && l.client === '127.0.0.9'));
  });

  void it('IPv6: a listener on [::1] with ::1 denied', async () => {
    const v6 = await startGateway(`
listeners: [{ address: "[::1]:0", ipDeny: ["::1"] }, { address: "[::1]:0", ipAllow: ["::1/128"] }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${fx.backend.url}" }] } }
shutdown: { drainTimeout: 0 }
`);
    try {
      const [denied, allowed] = v6.gw.addresses;
      assert.equal(await rawFrom(denied!.port, '::1', upgradeRequest(), '::1'), '');
      assert.equal(statusOf(await rawFrom(allowed!.port, '::1', upgradeRequest(), '::1')), 101);
      // RFC 7239 §6: an IPv6 node is bracketed and quoted.
      assert.equal(fx.backend.requests.at(-1)?.headers.forwarded, 'for="[::1]";host="localhost";proto=http');
    } finally {
      await v6.close();
    }
  });
});

void describe('per-IP limits and maxConnections', () => {
  const fx = withGateway(
    startBackend,
    (backend) => `
listeners: [{ address: 127.0.0.1:0 }]
routes:
  - { name: tight, match: { path: /tight }, upstream: app, limits: { perIp: { maxConnections: 1 } } }
  - { name: small, match: { path: /small }, upstream: app, limits: { maxConnections: 2, perIp: { maxConnections: 50, handshakeRate: 0 } } }
  - { name: main, match: { path: / }, upstream: app }
upstreams: { app: { targets: [{ url: "${backend.url}" }] } }
limits: { perIp: { maxConnections: 3, handshakeRate: 2/s, handshakeBurst: 4 } }
shutdown: { drainTimeout: 0 }
`,
  );

  void it('perIp.maxConnections → 429; a closed session gives its slot back exactly once', async () => {
    const open = await Promise.all([1, 2, 3].map(() => wsFrom(fx.gw.url, '127.0.0.21')));
    const over = await rawFrom(fx.gw.port, '127.0.0.21', upgradeRequest());
    assert.equal(statusOf(over), 429);
    assert.match(over, /\r\nRetry-After: \d+\r\n/);
    assert.equal(fx.gw.logs.findLast((l) => l.msg === 'handshake rejected')?.code, 'PER_IP_CONNECTIONS');
    // Another address is not affected.
    const other = await wsFrom(fx.gw.url, '127.0.0.22');
    open[0]!.close();
    await once(open[0]!, 'close');
    await eventually(() => fx.gw.gw.stats().sessions === 3, 5_000, 'the session to end');
    await new Promise((r) => setTimeout(r, 600)); // a handshake token comes back at 2/s
    const again = await wsFrom(fx.gw.url, '127.0.0.21');
    assert.equal(await echo(again, 'back'), 'back');
    // Full again: released once, not twice.
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.21'), 429);
    assert.equal(fx.gw.logs.findLast((l) => l.msg === 'handshake rejected')?.code, 'PER_IP_CONNECTIONS');
    for (const ws of [...open.slice(1), again, other]) ws.close();
  });

  void it('perIp.handshakeRate → 429 with Retry-After once the burst is spent', async () => {
    const statuses: number[] = [];
    let lastAnswer = '';
    for (let i = 0; i < 6; i++) {
      lastAnswer = await rawFrom(fx.gw.port, '127.0.0.23', upgradeRequest());
      statuses.push(statusOf(lastAnswer));
    }
    assert.deepEqual(statuses.slice(0, 4), [101, 101, 101, 101], 'the burst');
    // Six in a row: only a machine slower than a second for them could have refilled two tokens.
    assert.equal(statuses[5], 429, statuses.join(','));
    assert.match(lastAnswer, /\r\nRetry-After: 1\r\n/);
    assert.equal(fx.gw.logs.findLast((l) => l.msg === 'handshake rejected')?.code, 'PER_IP_RATE');
  });

  void it('a route that overrides perIp has its own limit', async () => {
    const a = await wsFrom(`${fx.gw.url}/tight`, '127.0.0.24');
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.24', '/tight'), 429);
    // The top-level scope still has room for this address.
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.24', '/'), 101);
    a.close();
  });

  void it('a route maxConnections → 503', async () => {
    const a = await wsFrom(`${fx.gw.url}/small`, '127.0.0.25');
    const b = await wsFrom(`${fx.gw.url}/small`, '127.0.0.26');
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.27', '/small'), 503);
    assert.equal(fx.gw.logs.findLast((l) => l.msg === 'handshake rejected')?.code, 'OVER_CAPACITY');
    a.close();
    b.close();
  });

  void it('at accept, one address holds at most 2 × the largest perIp.maxConnections + 8 sockets (slowloris)', async () => {
    // The largest per-IP limit anywhere is 50 (route "small"): 108 sockets.
    const sockets: Socket[] = [];
    for (let i = 0; i < 108; i++) {
      const s = connect({ port: fx.gw.port, host: '127.0.0.1', localAddress: '127.0.0.28' });
      s.on('error', () => {});
      await once(s, 'connect');
      s.write('GET / HTTP/1.1\r\n');
      sockets.push(s);
    }
    const refused = await rawFrom(fx.gw.port, '127.0.0.28', upgradeRequest());
    assert.equal(refused, '', 'closed without an answer');
    assert.equal(await statusFrom(fx.gw.port, '127.0.0.29'), 101, 'other addresses are not affected');
    for (const s of sockets) s.destroy();
    let status = 0;
    for (let i = 0; i < 50 && status !== 101; i++) {
      status = await statusFrom(fx.gw.port, '127.0.0.28');
      if (status !== 101) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 101, 'the slots come back when the sockets close');
  });

  void it('limits.maxConnections → 503', async () => {
    const g = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${fx.backend.url}" }] } }
limits: { maxConnections: 2 }
shutdown: { drainTimeout: 0 }
`);
    try {
      const a = await wsFrom(g.url, '127.0.0.30');
      const b = await wsFrom(g.url, '127.0.0.31');
      assert.equal(await statusFrom(g.port, '127.0.0.32'), 503);
      a.close();
      b.close();
    } finally {
      await g.close();
    }
  });
});
