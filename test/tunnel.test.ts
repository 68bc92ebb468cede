import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import {
  acceptUpgrade,
  echo,
  eventually,
  openClient,
  rawExchange,
  rawServer,
  simpleConfig,
  startBackend,
  startGateway,
  upgradeRequest,
  withGateway,
} from './helpers.js';
import { coreSessions } from '../src/relay/native-tunnel.js';
import { floodThroughGateway } from './flood-fixtures.js';

const TUNNEL = 'relay: { mode: tunnel }';

void describe('tunnel relay', () => {
  const fx = withGateway(startBackend, (backend) => simpleConfig([backend.url], `${TUNNEL}\nlimits: { handshakeTimeout: 300ms, idleTimeout: 5s }`));

  void it('relays text and binary both ways', async () => {
    const ws = await openClient(fx.gw.url);
    assert.equal(await echo(ws, 'hello'), 'hello');
    const bin = Buffer.alloc(200_000, 7);
    ws.send(bin);
    const [got, isBinary] = (await once(ws, 'message')) as [Buffer, boolean];
    assert.ok(isBinary);
    assert.ok(bin.equals(got));
    ws.close();
    await once(ws, 'close');
  });

  void it('bytes the upstream sends right behind its 101 reach the client', async () => {
    const srv = await rawServer((s) => void acceptUpgrade(s, Buffer.from('\x81\x05early', 'latin1')));
    const g = await startGateway(simpleConfig([`ws://127.0.0.1:${srv.port}`], TUNNEL));
    try {
      const answer = await rawExchange(g.port, upgradeRequest(), /early/);
      assert.match(answer, /^HTTP\/1\.1 101[^]*\r\n\r\n\x81\x05early$/);
    } finally {
      await g.close();
      await srv.close();
    }
  });

  void it('no HTTP timeout applies after the 101', async () => {
    const ws = await openClient(fx.gw.url);
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 150));
      assert.equal(await echo(ws, `tick ${i}`), `tick ${i}`);
    }
    assert.equal(ws.readyState, WebSocket.OPEN, 'open well past handshakeTimeout (300ms)');
    // Silent both ways for over three handshakeTimeouts: a timer that activity re-arms would fire here.
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await echo(ws, 'after a silence'), 'after a silence');
    ws.close();
  });

  void it('a client close reaches the upstream, and the session ends', async () => {
    const ws = await openClient(fx.gw.url);
    const serverSide = [...fx.backend.wss.clients].at(-1)!;
    const closed = once(serverSide, 'close');
    ws.close(4001, 'done');
    const [code, reason] = (await closed) as [number, Buffer];
    assert.equal(code, 4001);
    assert.equal(reason.toString(), 'done');
    await eventually(() => fx.gw.gw.stats().sessions === 0, 5_000, 'session count back to 0');
  });

  void it('an upstream reset closes the client within a second or so', async () => {
    const ws = await openClient(fx.gw.url);
    const serverSide = [...fx.backend.wss.clients].at(-1)!;
    const t0 = Date.now();
    serverSide.terminate();
    await once(ws, 'close');
    assert.ok(Date.now() - t0 < 5_000);
  });

  void it('writes one access-log line per closed session', async () => {
    const ws = await openClient(fx.gw.url);
    await echo(ws, 'x'.repeat(10));
    ws.close();
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'session closed' && l.bytesIn !== 0), 5_000, 'access log line');
    const line = fx.gw.logs.findLast((l) => l.msg === 'session closed')!;
    for (const field of ['session', 'client', 'route', 'target', 'durationMs', 'bytesIn', 'bytesOut', 'closedBy', 'reason']) {
      assert.ok(field in line, `access log has ${field}`);
    }
    assert.equal(line.client, '127.0.0.1');
    assert.equal(line.target, fx.backend.url);
  });
});

void describe('idle timeout', () => {
  void it('closes connections silent both ways; a chatty one survives', async () => {
    const backend = await startBackend();
    const gw = await startGateway(simpleConfig([backend.url], `${TUNNEL}\nlimits: { idleTimeout: 600ms }`));
    try {
      const quiet = await openClient(gw.url);
      const chatty = await openClient(gw.url);
      const quietClosed = once(quiet, 'close');
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 150));
        await echo(chatty, 'ping');
      }
      await quietClosed;
      assert.equal(chatty.readyState, WebSocket.OPEN);
      const line = gw.logs.find((l) => l.msg === 'session closed' && l.reason === 'idle timeout');
      assert.ok(line, 'idle close logged');
      assert.equal(line.closedBy, 'gateway');
      chatty.close();
    } finally {
      await gw.close();
      await backend.close();
    }
  });
});

void describe('maxConnections', () => {
  void it('answers 503 over the limit, and admits again once a session ends', async () => {
    const backend = await startBackend();
    const gw = await startGateway(simpleConfig([backend.url], `${TUNNEL}\nlimits: { maxConnections: 2 }`));
    try {
      const a = await openClient(gw.url);
      const b = await openClient(gw.url);
      const over = await rawExchange(gw.port, upgradeRequest());
      assert.match(over, /^HTTP\/1\.1 503/);
      a.close();
      await eventually(() => gw.gw.stats().sessions === 1, 5_000);
      const c = await openClient(gw.url);
      b.close();
      c.close();
    } finally {
      await gw.close();
      await backend.close();
    }
  });
});

/** Opens a raw client that completes the upgrade and then never reads. */
async function stalledClient(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  s.write(upgradeRequest());
  await once(s, 'data');
  s.pause();
  return s;
}

void describe('leaks', () => {
  void it('1,000 sessions closed every way leave no session, socket or timer behind', async () => {
    const backend = await startBackend();
    backend.wss.on('connection', (ws) => ws.on('message', (m) => String(m) === 'reset' && ws.terminate()));
    const gw = await startGateway(
      simpleConfig([backend.url], `${TUNNEL}\nlimits: { idleTimeout: 300ms, perIp: { maxConnections: 100000, handshakeRate: 0 } }\nlog: { accessLog: false }`),
    );
    const handles = (): number => process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap').length;
    // The native core's sessions are no Node handles: count descriptors too.
    const fds = (): number => readdirSync('/proc/self/fd').length;
    try {
      const baseline = handles();
      const fdBaseline = fds();
      const ways = ['clean', 'client-reset', 'backend-reset', 'idle'] as const;
      for (let batch = 0; batch < 20; batch++) {
        await Promise.all(
          Array.from({ length: 50 }, async (_, i) => {
            const way = ways[(batch * 50 + i) % ways.length]!;
            const ws = await openClient(gw.url);
            const closed = once(ws, 'close');
            if (way === 'clean') ws.close(1000);
            else if (way === 'client-reset') ws.terminate();
            else if (way === 'backend-reset') ws.send('reset');
            await closed;
          }),
        );
      }
      await eventually(() => gw.gw.stats().sessions === 0, 10_000, 'sessions back to 0');
      await eventually(() => backend.wss.clients.size === 0, 10_000, 'backend connections back to 0');
      await eventually(() => handles() <= baseline, 10_000, `handles back to ${baseline}`);
      assert.equal(coreSessions(), 0);
      await eventually(() => fds() <= fdBaseline, 10_000, `descriptors back to ${fdBaseline}`);
    } finally {
      await gw.close();
      await backend.close();
    }
  });
});

void describe('backpressure', () => {
  void it('both ends flood without reading, then read on: every byte arrives as sent, in two sessions at once', { timeout: 90_000 }, async () => {
    await floodThroughGateway((port) => simpleConfig([`ws://127.0.0.1:${port}`], `${TUNNEL}\nlimits: { maxBufferedBytes: 256KiB }`));
  });

  void it('a backend flooding a client that does not read grows the gateway by less than 64 MiB', { timeout: 60_000 }, async () => {
    const frame = Buffer.alloc(1 << 20);
    frame[0] = 0x82;
    frame[1] = 127;
    frame.writeBigUInt64BE(BigInt(frame.length - 10), 2);
    let written = 0;
    const srv = await rawServer((s) => {
      void acceptUpgrade(s).then(() => {
        const pump = (): void => {
          while (written < 500 * (1 << 20) && !s.destroyed) {
            written += frame.length;
            if (!s.write(frame)) return void s.once('drain', pump);
          }
        };
        pump();
      });
    });
    const gw = await startGateway(simpleConfig([`ws://127.0.0.1:${srv.port}`], `${TUNNEL}\nlimits: { maxBufferedBytes: 1MiB }`));
    const client = await stalledClient(gw.port);
    const rssBefore = process.memoryUsage().rss;
    try {
      // Wait for the flood to stall: the gateway stopped reading from the backend.
      let last = -1;
      await eventually(
        () => {
          const stalled = written === last && written > 0;
          last = written;
          return stalled;
        },
        30_000,
        'the flood to stall',
      );
      await new Promise((r) => setTimeout(r, 500));
      const growth = process.memoryUsage().rss - rssBefore;
      assert.ok(written < 500 * (1 << 20), `backend was held back (wrote ${written >> 20} MiB)`);
      assert.ok(growth < 64 * (1 << 20), `gateway grew ${growth >> 20} MiB`);
    } finally {
      client.destroy();
      await gw.close();
      await srv.close();
    }
  });
});
