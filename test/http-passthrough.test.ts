import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { simpleConfig, startGateway, type RunningGateway, listenLocal } from './helpers.js';

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
