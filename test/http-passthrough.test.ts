import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection, createServer as createTcpServer, type Socket } from 'node:net';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { rawExchange, simpleConfig, startGateway, type RunningGateway, listenLocal } from './helpers.js';
import { admin } from './resilience-helpers.js';

/** Sends one HTTP request through the gateway; resolves with status, headers and body. */
async function send(
  port: number,
  method: string,
  path: string,
  body?: Buffer,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const req = request({ host: '127.0.0.1', port, method, path, headers: body ? { 'content-length': body.length } : {} });
  req.end(body);
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) };
}

void describe('HTTP passthrough', () => {
  let backend: Server;
  let gw: RunningGateway;
  const peers = new Set<string>();
  before(async () => {
    backend = createServer((req, res) => {
      peers.add(`${req.socket.remotePort}`);
      if (req.url === '/echo') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-backend': 'yes' });
        req.pipe(res);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`you asked for ${req.url} with xff ${String(req.headers['x-forwarded-for'])}`);
    });
    const port = await listenLocal(backend);
    gw = await startGateway(simpleConfig([`http://127.0.0.1:${port}`]));
  });
  after(async () => {
    await gw.close();
    backend.closeAllConnections();
    backend.close();
  });

  void it('forwards GET with path, query and forwarding headers', async () => {
    const res = await send(gw.port, 'GET', '/status?x=1');
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'you asked for /status?x=1 with xff 127.0.0.1');
  });

  void it('streams a large body both ways and returns upstream headers', async () => {
    const big = Buffer.alloc(8 << 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    const res = await send(gw.port, 'POST', '/echo', big);
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-backend'], 'yes');
    assert.ok(res.body.equals(big));
  });

  void it('reuses upstream connections (keep-alive pool)', async () => {
    peers.clear();
    for (let i = 0; i < 10; i++) assert.equal((await send(gw.port, 'GET', '/')).status, 200);
    assert.ok(peers.size <= 2, `10 sequential requests used ${peers.size} upstream connections`);
  });

  void it('a dead upstream → 502', async () => {
    const dead = createServer();
    const port = await listenLocal(dead);
    dead.close();
    const g = await startGateway(simpleConfig([`http://127.0.0.1:${port}`]));
    try {
      const res = await send(g.port, 'GET', '/');
      assert.equal(res.status, 502);
      assert.match(res.body.toString(), /Bad Gateway/);
    } finally {
      await g.close();
    }
  });

  void it(
    "waits for a slow answer past connectTimeout; an upstream silent for the route's idleTimeout → 504, or is cut mid-body",
    { timeout: 30_000 },
    async () => {
      // Reads requests and answers as the path says: /slow after 600 ms, /stall with half a body, /silent never.
      const sockets = new Set<Socket>();
      const upstream = createTcpServer((socket) => {
        sockets.add(socket);
        socket.on('error', () => {});
        socket.on('close', () => sockets.delete(socket));
        socket.once('data', (head: Buffer) => {
          const path = head.toString('latin1').split(' ')[1];
          if (path === '/slow') setTimeout(() => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow'), 600);
          if (path === '/stall') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf ');
        });
      });
      const port = await listenLocal(upstream);
      const g = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app, limits: { idleTimeout: 1500ms } }]
upstreams: { app: { targets: [{ url: "http://127.0.0.1:${port}" }], connectTimeout: 200ms, retries: 0 } }
shutdown: { drainTimeout: 0 }`);
      try {
        const slow = await send(g.port, 'GET', '/slow');
        assert.equal(slow.status, 200);
        assert.equal(slow.body.toString(), 'slow');

        const silent = await send(g.port, 'GET', '/silent');
        assert.equal(silent.status, 504);
        assert.match(silent.body.toString(), /Gateway Timeout/);

        // The head went out before the upstream fell silent: the client sees its answer cut short.
        const req = request({ host: '127.0.0.1', port: g.port, path: '/stall' });
        req.end();
        const [res] = (await once(req, 'response')) as [IncomingMessage];
        assert.equal(res.statusCode, 200);
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        await assert.rejects(once(res, 'end'), /aborted/);
        assert.equal(Buffer.concat(chunks).toString(), 'half ');
      } finally {
        await g.close();
        for (const s of sockets) s.destroy();
        upstream.close();
      }
    },
  );

  void it('no route → 404', async () => {
    const g = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: /only }, upstream: app }]
upstreams: { app: { targets: [{ url: "http://127.0.0.1:1" }] } }`);
    try {
      assert.equal((await send(g.port, 'GET', '/elsewhere')).status, 404);
    } finally {
      await g.close();
    }
  });
});

/** A port with nothing listening on it. */
async function refusingPort(): Promise<number> {
  const dead = createServer();
  const port = await listenLocal(dead);
  await new Promise<void>((r) => dead.close(() => r()));
  return port;
}

/** An HTTP backend that answers every request with its name and records what it got. */
async function namedBackend(name: string): Promise<{ port: number; seen: IncomingMessage[]; server: Server }> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    seen.push(req);
    req.resume();
    req.on('end', () => res.end(`${name} ${req.method} ${String(req.headers['content-length'] ?? '-')}`));
  });
  return { port: await listenLocal(server), seen, server };
}

interface TargetStatus {
  url: string;
  ejected: boolean;
  available: boolean;
}

async function targetsOf(g: RunningGateway): Promise<TargetStatus[]> {
  const { status, body } = await admin(g.gw, 'GET', '/api/upstreams');
  assert.equal(status, 200);
  const [upstream] = body.upstreams as { targets: TargetStatus[] }[];
  return upstream!.targets;
}

void describe('HTTP passthrough and passive ejection', () => {
  void it('a target refusing connections is ejected after consecutiveFailures plain requests; later requests all go to the good one', async () => {
    const good = await namedBackend('good');
    const deadPort = await refusingPort();
    const g = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    targets: [{ url: "http://127.0.0.1:${deadPort}" }, { url: "http://127.0.0.1:${good.port}" }]
    outlier: { consecutiveFailures: 3, baseEjection: 30s }
shutdown: { drainTimeout: 0 }`);
    try {
      const failed = (): number => g.logs.filter((l) => l.msg === 'http passthrough attempt failed').length;
      // GETs are retried on the good target: every client gets its answer while the bad one collects failures.
      for (let i = 0; i < 6; i++) {
        const res = await send(g.port, 'GET', `/page/${i}`);
        assert.equal(res.status, 200);
        assert.equal(res.body.toString(), 'good GET -');
      }
      assert.equal(failed(), 3, 'round-robin tried the refusing target until its third failure, then never again');
      const [bad, ok] = await targetsOf(g);
      assert.equal(bad!.url, `http://127.0.0.1:${deadPort}`);
      assert.equal(bad!.ejected, true);
      assert.equal(bad!.available, false);
      assert.equal(ok!.ejected, false);
      // A POST cannot be retried (its body is gone): with the bad target out, every one reaches the good one.
      for (let i = 0; i < 4; i++) {
        const res = await send(g.port, 'POST', '/form', Buffer.from('a=1'));
        assert.equal(res.status, 200);
        assert.equal(res.body.toString(), 'good POST 3');
      }
      assert.equal(failed(), 3);
    } finally {
      await g.close();
      good.server.close();
    }
  });

  void it('requests the client got wrong, or that the client abandons, are not held against the target', async () => {
    const good = await namedBackend('good');
    const g = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
admin: { address: 127.0.0.1:0 }
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    targets: [{ url: "http://127.0.0.1:${good.port}" }]
    outlier: { consecutiveFailures: 2, baseEjection: 30s, maxEjectionPercent: 100 }
shutdown: { drainTimeout: 0 }`);
    try {
      for (let i = 0; i < 3; i++) {
        // Expect: 100-continue is answered by the gateway and not sent on (undici refuses to send it).
        const expect = await rawExchange(g.port, 'POST /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi', /good POST 2/);
        assert.match(expect, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
        // Two Host headers: refused with 400 before any upstream is asked.
        const twoHosts = await rawExchange(g.port, 'GET /h HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n');
        assert.match(twoHosts, /^HTTP\/1\.1 400 /);
        // Half a body, then the client resets.
        const socket = createConnection(g.port, '127.0.0.1');
        socket.on('error', () => {});
        await once(socket, 'connect');
        socket.write('POST /half HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nhalf');
        await new Promise((r) => setTimeout(r, 50));
        socket.resetAndDestroy();
      }
      const [target] = await targetsOf(g);
      assert.equal(target!.ejected, false);
      assert.equal(g.logs.filter((l) => l.msg === 'target ejected').length, 0);
      assert.equal((await send(g.port, 'GET', '/')).status, 200);
    } finally {
      await g.close();
      good.server.close();
    }
  });

  void it('a request with a body to an unreachable target gets its 502 (the failed attempt does not take the client connection down)', async () => {
    const g = await startGateway(simpleConfig([`http://127.0.0.1:${await refusingPort()}`]));
    try {
      const res = await send(g.port, 'POST', '/form', Buffer.from('a=1'));
      assert.equal(res.status, 502);
      assert.match(res.body.toString(), /Bad Gateway/);
      assert.equal(g.logs.filter((l) => l.msg === 'http passthrough failed').length, 0, 'no error escaped the passthrough');
    } finally {
      await g.close();
    }
  });
});
