import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocketServer } from 'ws';
import type { HealthCheckConfig, TargetConfig } from '../config/types.js';
import { createHealthChecker, type CheckOptions } from './health-check.js';

// The shared suite: every health checker against every kind of target, each
// with the verdict expected from it.

type Kind = HealthCheckConfig['type'];
const KINDS: readonly Kind[] = ['http', 'tcp', 'websocket'];
const TIMEOUT = 300;

interface Fixture {
  readonly port: number;
  /** Connections currently open on the server side. */
  readonly open: () => number;
  close(): Promise<void>;
}

const wsCloseCodes: number[] = [];

/** /health and /base/health answer 200 (and accept a WebSocket upgrade); anything else 404. */
async function healthyServer(): Promise<Fixture> {
  const server = createHttpServer((req, res) => {
    res.statusCode = req.url === '/health' || req.url === '/base/health' ? 200 : 404;
    res.end('ok');
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => {});
    if (req.url !== '/health' && req.url !== '/base/health') {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
      ws.on('close', (code) => wsCloseCodes.push(code));
    });
  });
  return listen(server);
}

/** Answers 500 to everything, upgrades included. */
async function failingServer(): Promise<Fixture> {
  const server = createHttpServer((_req, res) => {
    res.statusCode = 500;
    res.end('down');
  });
  server.on('upgrade', (_req, socket: Socket) => {
    socket.on('error', () => {});
    socket.end('HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n');
  });
  return listen(server);
}

/** Accepts connections and never says a word. */
async function silentServer(): Promise<Fixture> {
  return listen(createNetServer((s) => s.on('error', () => {}).resume()));
}

/** Answers every request with a 101 that has the wrong Sec-WebSocket-Accept. */
async function wrongAcceptServer(): Promise<Fixture> {
  return listen(
    createNetServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n'));
    }),
  );
}

/** A port nobody listens on. */
async function refusedPort(): Promise<Fixture> {
  const f = await silentServer();
  await f.close();
  return { port: f.port, open: () => 0, close: async () => {} };
}

async function listen(server: Server | ReturnType<typeof createNetServer>): Promise<Fixture> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    open: () => sockets.size,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function target(port: number, basePath = ''): TargetConfig {
  return { url: `ws://127.0.0.1:${port}${basePath}`, secure: false, host: '127.0.0.1', port, basePath, weight: 1 };
}

interface Case {
  readonly name: string;
  readonly fixture: () => Promise<Fixture>;
  readonly path?: string;
  readonly basePath?: string;
  readonly expect: Readonly<Record<Kind, boolean>>;
}

const CASES: readonly Case[] = [
  { name: 'a healthy target', fixture: healthyServer, expect: { http: true, tcp: true, websocket: true } },
  {
    name: "the target URL's base path goes in front of the check path",
    fixture: healthyServer,
    path: '/health',
    basePath: '/base',
    expect: { http: true, tcp: true, websocket: true },
  },
  { name: 'a path the target does not serve (404)', fixture: healthyServer, path: '/missing', expect: { http: false, tcp: true, websocket: false } },
  { name: 'a target answering 500', fixture: failingServer, expect: { http: false, tcp: true, websocket: false } },
  { name: 'a target that accepts and never answers', fixture: silentServer, expect: { http: false, tcp: true, websocket: false } },
  { name: 'a 101 with a wrong Sec-WebSocket-Accept', fixture: wrongAcceptServer, expect: { http: false, tcp: true, websocket: false } },
  { name: 'a refused connection', fixture: refusedPort, expect: { http: false, tcp: false, websocket: false } },
];

for (const kind of KINDS) {
  void describe(`health checker (shared suite): ${kind}`, () => {
    const fixtures = new Map<Case, Fixture>();
    before(async () => {
      for (const c of CASES) fixtures.set(c, await c.fixture());
    });
    after(async () => {
      for (const f of fixtures.values()) await f.close();
    });

    for (const c of CASES) {
      void it(`${c.name}: ${c.expect[kind] ? 'passes' : 'fails'}, and leaves no connection open`, async () => {
        const fixture = fixtures.get(c)!;
        const options: CheckOptions = { path: c.path ?? '/health', timeout: TIMEOUT, tls: undefined };
        const result = await createHealthChecker(kind).check(target(fixture.port, c.basePath), options);
        assert.equal(result.ok, c.expect[kind], result.ok ? 'passed' : `failed: ${result.reason}`);
        if (!result.ok) assert.ok(result.reason.length > 0, 'a failure says why');
        const deadline = Date.now() + 5_000;
        while (fixture.open() > 0) {
          assert.ok(Date.now() < deadline, `${fixture.open()} connection(s) left open by the check`);
          await sleep(10);
        }
      });
    }
  });
}

void describe('websocket health check', () => {
  void it('closes the connection it opened with a Close frame (1000)', async () => {
    const fixture = await healthyServer();
    try {
      wsCloseCodes.length = 0;
      const result = await createHealthChecker('websocket').check(target(fixture.port), { path: '/health', timeout: 2_000, tls: undefined });
      assert.ok(result.ok);
      const deadline = Date.now() + 5_000;
      while (wsCloseCodes.length === 0) {
        assert.ok(Date.now() < deadline, 'the server never saw the close');
        await sleep(10);
      }
      assert.deepEqual(wsCloseCodes, [1000]);
    } finally {
      await fixture.close();
    }
  });
});
