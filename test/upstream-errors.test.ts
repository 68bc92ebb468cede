import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import {
  echo,
  openClient,
  rawExchange,
  rawServer,
  simpleConfig,
  startBackend,
  startGateway,
  statusOf,
  upgradeRequest,
  type Backend,
  listenLocal,
} from './helpers.js';

// test/upstream-errors-tunnel.test.ts runs this file again in tunnel mode,
// test/upstream-errors-bare.test.ts on the JavaScript inspect relay, where
// plain targets are dialed on bare TCP handles (src/upstream/raw-dial.ts)
// rather than by the native module (src/upstream/core-dial.ts).
const MODE = process.env.WSGATE_TEST_RELAY_MODE === 'tunnel' ? '\nrelay: { mode: tunnel }' : '';

/** A port with nothing listening on it. */
async function deadPort(): Promise<number> {
  const s = createServer();
  const port = await listenLocal(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

void describe('upstream failures before the 101', () => {
  let backend: Backend;
  before(async () => {
    backend = await startBackend();
  });
  after(async () => {
    await backend.close();
  });

  async function statusThrough(targets: string[], extra = ''): Promise<{ status: number; answer: string; logs: Record<string, unknown>[] }> {
    const gw = await startGateway(simpleConfig(targets, extra + MODE));
    try {
      const answer = await rawExchange(gw.port, upgradeRequest());
      return { status: statusOf(answer), answer, logs: gw.logs };
    } finally {
      await gw.close();
    }
  }

  void it('connection refused → 502, logged', async () => {
    const { status, logs } = await statusThrough([`ws://127.0.0.1:${await deadPort()}`]);
    assert.equal(status, 502);
    assert.ok(logs.some((l) => l.code === 'UPSTREAM_REFUSED'));
  });

  void it('upstream resets the connection → 502', async () => {
    const srv = await rawServer((s) => s.once('data', () => s.resetAndDestroy()));
    try {
      assert.equal((await statusThrough([`ws://127.0.0.1:${srv.port}`])).status, 502);
    } finally {
      await srv.close();
    }
  });

  void it('invalid upstream answer (garbage, or a 101 with a wrong accept) → 502', async () => {
    const garbage = await rawServer((s) => s.once('data', () => s.end('SSH-2.0-OpenSSH\r\n\r\n')));
    const wrongAccept = await rawServer((s) =>
      s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n')),
    );
    try {
      assert.equal((await statusThrough([`ws://127.0.0.1:${garbage.port}`])).status, 502);
      assert.equal((await statusThrough([`ws://127.0.0.1:${wrongAccept.port}`])).status, 502);
    } finally {
      await garbage.close();
      await wrongAccept.close();
    }
  });

  void it('no answer within connectTimeout → 504', async () => {
    const silent = await rawServer(() => {});
    try {
      const yaml = `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { connectTimeout: 300ms, retries: 0, targets: [{ url: "ws://127.0.0.1:${silent.port}" }] } }
shutdown: { drainTimeout: 0 }${MODE}`;
      const gw = await startGateway(yaml);
      try {
        assert.equal(statusOf(await rawExchange(gw.port, upgradeRequest())), 504);
      } finally {
        await gw.close();
      }
    } finally {
      await silent.close();
    }
  });

  void it("an upstream's own non-101 answer reaches the client as is, body included", async () => {
    const body = 'go away, you are banned\n';
    const srv = await rawServer((s) =>
      s.once('data', () => s.write(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nX-Reason: banned\r\nContent-Length: ${body.length}\r\n\r\n${body}`)),
    );
    try {
      const { status, answer } = await statusThrough([`ws://127.0.0.1:${srv.port}`]);
      assert.equal(status, 403);
      assert.match(answer, /\r\nX-Reason: banned\r\n/);
      assert.ok(answer.endsWith(body), answer);
    } finally {
      await srv.close();
    }
  });

  void it('a non-101 answer whose body comes later, in pieces, reaches the client whole', async () => {
    const piece = 'x'.repeat(40_000);
    const srv = await rawServer((s) =>
      s.once('data', () => {
        s.write(`HTTP/1.1 403 Forbidden\r\nContent-Length: ${3 * piece.length}\r\n\r\n`);
        let sent = 0;
        const timer = setInterval(() => {
          if (s.destroyed || sent === 3) return void clearInterval(timer);
          s.write(piece);
          sent++;
        }, 50);
      }),
    );
    try {
      const { status, answer } = await statusThrough([`ws://127.0.0.1:${srv.port}`]);
      assert.equal(status, 403);
      assert.ok(answer.endsWith(`\r\n\r\n${piece.repeat(3)}`), `the whole body (got ${answer.length} bytes)`);
    } finally {
      await srv.close();
    }
  });

  void it('a failed connect is retried on another target; the client never notices', async () => {
    const dead1 = `ws://127.0.0.1:${await deadPort()}`;
    const dead2 = `ws://127.0.0.1:${await deadPort()}`;
    const gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { balance: round-robin, retries: 2, targets: [{ url: "${dead1}" }, { url: "${dead2}" }, { url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }${MODE}`);
    try {
      for (let i = 0; i < 6; i++) {
        const ws = await openClient(gw.url);
        assert.equal(await echo(ws, `m${i}`), `m${i}`);
        ws.close();
      }
    } finally {
      await gw.close();
    }
  });

  /**
   * Targets that accept the TCP connection and then botch the upstream handshake, with the
   * error each failure is logged as. Each is retryable (src/errors.ts): nothing was sent to the
   * client yet.
   */
  const BAD_HANDSHAKES: readonly { name: string; code: string; connectTimeout: string; onSocket(s: Socket): void }[] = [
    {
      name: 'garbage instead of an HTTP answer',
      code: 'UPSTREAM_BAD_RESPONSE',
      connectTimeout: '5s',
      onSocket: (s) => s.once('data', () => s.end('SSH-2.0-OpenSSH\r\n\r\n')),
    },
    {
      name: 'a 101 with a wrong Sec-WebSocket-Accept',
      code: 'UPSTREAM_BAD_RESPONSE',
      connectTimeout: '5s',
      onSocket: (s) =>
        s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n')),
    },
    { name: 'a reset once the request arrives', code: 'UPSTREAM_RESET', connectTimeout: '5s', onSocket: (s) => s.once('data', () => s.resetAndDestroy()) },
    // Short enough to keep the test quick, long enough for the good backend to answer on a busy machine.
    { name: 'no answer at all', code: 'UPSTREAM_TIMEOUT', connectTimeout: '1s', onSocket: () => {} },
  ];

  for (const bad of BAD_HANDSHAKES) {
    void it(`a failed upstream handshake (${bad.name}) is retried on another target; the client never notices`, async () => {
      let tried = 0;
      const srv = await rawServer((s) => {
        tried++;
        bad.onSocket(s);
      });
      // Round-robin's first pick is the first target, then it alternates: sessions 1 and 3 try the bad one first.
      const gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { balance: round-robin, retries: 1, connectTimeout: ${bad.connectTimeout}, targets: [{ url: "ws://127.0.0.1:${srv.port}" }, { url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }${MODE}`);
      const accepted = backend.requests.length;
      try {
        for (let i = 0; i < 4; i++) {
          const ws = await openClient(gw.url);
          assert.equal(await echo(ws, `m${i}`), `m${i}`);
          ws.close();
        }
        assert.equal(tried, 2, 'sessions 1 and 3 tried the bad target first');
        assert.equal(backend.requests.length - accepted, 4, 'the good target took every session');
        assert.deepEqual(
          gw.logs.filter((l) => l.msg === 'upstream attempt failed').map((l) => l.code),
          [bad.code, bad.code],
        );
      } finally {
        await gw.close();
        await srv.close();
      }
    });
  }

  void it('retries: 0 means one attempt only', async () => {
    const dead = `ws://127.0.0.1:${await deadPort()}`;
    const gw = await startGateway(`
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { retries: 0, targets: [{ url: "${dead}" }, { url: "${backend.url}" }] } }
shutdown: { drainTimeout: 0 }${MODE}`);
    try {
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push(statusOf(await rawExchange(gw.port, upgradeRequest(), /\r\n\r\n/)));
      assert.deepEqual(statuses.sort(), [101, 101, 502, 502]);
    } finally {
      await gw.close();
    }
  });

  void it('nothing is retried after the 101: an upstream that dies mid-session closes the client', async () => {
    let accepted = 0;
    const flaky = await startBackend();
    flaky.wss.on('connection', (ws) => {
      accepted++;
      setTimeout(() => ws.terminate(), 50);
    });
    const gw = await startGateway(simpleConfig([flaky.url], MODE));
    try {
      const ws = await openClient(gw.url);
      const [code] = (await once(ws, 'close')) as [number];
      assert.ok(code === 1006 || code === 1011, `closed with ${code}`);
      assert.equal(accepted, 1);
    } finally {
      await gw.close();
      await flaky.close();
    }
  });
});
