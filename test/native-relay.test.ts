import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { coreSessions, NATIVE_RELAY } from '../src/relay/native-tunnel.js';
import {
  acceptUpgrade,
  eventually,
  readHead,
  openClient,
  rawServer,
  simpleConfig,
  startBackend,
  startGateway,
  upgradeRequest,
  type RunningGateway,
} from './helpers.js';

// Tunnel mode over raw sockets: the test holds both ends of each session and
// the gateway relays the bytes between them. By default sessions run in the
// native core (native/relay.c); test/js-tunnel.test.ts runs this file again
// with WSGATE_RELAY_IO=handle, on the JavaScript tunnel, which must behave the same.
const native = process.env.WSGATE_RELAY_IO === undefined;

const TUNNEL = 'relay: { mode: tunnel }';

interface RawSession {
  readonly client: Socket;
  readonly upstream: Socket;
}

/** A gateway in front of a raw upstream; `open()` starts a session and hands the test both of its ends. */
async function rawTunnel(
  extraConfig = '',
  upstreamExtra?: Buffer,
  answerAfterMs = 0,
): Promise<{ gw: RunningGateway; open(first?: string): Promise<RawSession>; close(): Promise<void> }> {
  const waiting: ((s: Socket) => void)[] = [];
  const srv = await rawServer((s) => {
    setTimeout(() => void acceptUpgrade(s, upstreamExtra).then(() => waiting.shift()?.(s)), answerAfterMs);
  });
  const gw = await startGateway(simpleConfig([`ws://127.0.0.1:${srv.port}`], `${TUNNEL}\n${extraConfig}`));
  const clients = new Set<Socket>();
  return {
    gw,
    async open(first = '') {
      const upstream = new Promise<Socket>((resolve) => waiting.push(resolve));
      const client = connect(gw.port, '127.0.0.1');
      client.on('error', () => {});
      clients.add(client);
      client.write(upgradeRequest() + first);
      const head = await readHead(client);
      assert.match(head, /^HTTP\/1\.1 101 /);
      return { client, upstream: await upstream };
    },
    async close() {
      for (const c of clients) c.destroy();
      await gw.close();
      await srv.close();
    },
  };
}

/** Writes `total` bytes of random data to `socket` in 64 KiB writes, minding backpressure; resolves with their hash. */
async function sendRandom(socket: Socket, total: number): Promise<string> {
  const hash = createHash('sha256');
  for (let sent = 0; sent < total;) {
    const chunk = randomBytes(Math.min(65_536, total - sent));
    hash.update(chunk);
    sent += chunk.length;
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
  return hash.digest('hex');
}

/** Reads `total` bytes from `socket`, after `delayMs` of not reading; resolves with their hash. */
async function receive(socket: Socket, total: number, delayMs: number): Promise<string> {
  await new Promise((r) => setTimeout(r, delayMs));
  const hash = createHash('sha256');
  let got = 0;
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      hash.update(d);
      got += d.length;
      if (got >= total) resolve();
    });
    socket.once('close', () => reject(new Error(`closed after ${got} of ${total} bytes`)));
    socket.resume();
  });
  assert.equal(got, total);
  return hash.digest('hex');
}

function sessionLines(gw: RunningGateway): Record<string, unknown>[] {
  return gw.logs.filter((l) => l.msg === 'session closed');
}

void describe(`tunnel sessions (${native ? 'native core' : 'JavaScript tunnel'})`, () => {
  void it(
    native
      ? 'run in the native core: the start line says so, and the gateway keeps no socket of its own per session'
      : 'run in JavaScript with WSGATE_RELAY_IO=handle',
    async () => {
      assert.equal(NATIVE_RELAY, native, native ? 'the native core is built and loaded (npm ci builds it)' : 'WSGATE_RELAY_IO=handle turns it off');
      const backend = await startBackend();
      const gw = await startGateway(simpleConfig([backend.url], `${TUNNEL}\nlimits: { perIp: { maxConnections: 1000 } }`));
      const sockets = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
      try {
        assert.equal(gw.logs.find((l) => l.msg === 'wsgate started')?.relayIo, native ? 'native' : 'handle');
        const before = sockets();
        const clients = await Promise.all(Array.from({ length: 20 }, () => openClient(gw.url)));
        await eventually(() => gw.gw.stats().sessions === 20, 5_000, '20 sessions');
        // This process holds the clients and the backend too: 2 sockets per session,
        // plus the gateway's 2 when it relays in JavaScript (40 or 80 here; sockets
        // of earlier tests may still be closing).
        const added = sockets() - before;
        assert.ok(native ? added < 60 : added > 60, `${added} sockets for 20 sessions`);
        assert.equal(coreSessions(), native ? 20 : 0);
        for (const ws of clients) ws.close();
        await eventually(() => gw.gw.stats().sessions === 0 && coreSessions() === 0, 5_000, 'sessions back to 0');
      } finally {
        await gw.close();
        await backend.close();
      }
    },
  );

  void it('32 MiB each way, both readers pausing half a second: every byte arrives, in order', async () => {
    const t = await rawTunnel();
    try {
      const { client, upstream } = await t.open();
      const size = 32 * 1024 * 1024;
      const [sentDown, gotDown, sentUp, gotUp] = await Promise.all([
        sendRandom(upstream, size),
        receive(client, size, 500),
        sendRandom(client, size),
        receive(upstream, size, 500),
      ]);
      assert.equal(gotDown, sentDown, 'upstream → client intact');
      assert.equal(gotUp, sentUp, 'client → upstream intact');
      client.end();
      await eventually(() => sessionLines(t.gw).length === 1, 5_000, 'access log line');
      const line = sessionLines(t.gw)[0]!;
      assert.equal(line.bytesIn, size);
      assert.equal(line.bytesOut, size);
    } finally {
      await t.close();
    }
  });

  void it('an upstream that sends 1 MiB and closes at once: a client not reading yet still gets every byte, then the close', async () => {
    const t = await rawTunnel();
    try {
      const { client, upstream } = await t.open();
      const size = 1024 * 1024;
      const sent = sendRandom(upstream, size).then((hash) => {
        upstream.end();
        return hash;
      });
      const ended = once(client, 'end');
      assert.equal(await receive(client, size, 300), await sent);
      await ended;
      await eventually(() => sessionLines(t.gw).length === 1, 5_000, 'access log line');
      const line = sessionLines(t.gw)[0]!;
      assert.equal(line.closedBy, 'upstream');
      assert.equal(line.reason, 'end');
      assert.equal(line.bytesOut, size);
    } finally {
      await t.close();
    }
  });

  void it('bytes in the same packets as the handshake reach the other side and count in the access log', async () => {
    const t = await rawTunnel('', Buffer.from('world!'));
    try {
      const { client, upstream } = await t.open('hello');
      assert.equal(await receive(client, 6, 0).then(() => 'ok'), 'ok');
      assert.equal(await receive(upstream, 5, 0).then(() => 'ok'), 'ok');
      client.end();
      await once(upstream, 'end');
      await eventually(() => sessionLines(t.gw).length === 1, 5_000, 'access log line');
      const line = sessionLines(t.gw)[0]!;
      assert.deepEqual([line.bytesIn, line.bytesOut, line.closedBy, line.reason], [5, 6, 'client', 'end']);
    } finally {
      await t.close();
    }
  });

  void it('1 MiB a client sends before the 101 (the upstream answers late) reaches the upstream intact, in order', async () => {
    const t = await rawTunnel('', undefined, 300);
    try {
      // Hex keeps it one string with the request; the gateway sees bytes.
      const early = randomBytes(512 * 1024).toString('hex');
      const { client, upstream } = await t.open(early);
      const got = await receive(upstream, early.length, 0);
      assert.equal(got, createHash('sha256').update(early).digest('hex'));
      client.end();
      await eventually(() => sessionLines(t.gw).length === 1, 5_000, 'access log line');
      assert.equal(sessionLines(t.gw)[0]!.bytesIn, early.length);
    } finally {
      await t.close();
    }
  });

  void it('who ended the session and why: client and upstream resets, idle timeout, shutdown', async () => {
    const t = await rawTunnel('limits: { idleTimeout: 400ms }');
    try {
      const clientReset = await t.open();
      clientReset.client.resetAndDestroy();
      await eventually(() => sessionLines(t.gw).length === 1, 5_000, 'first line');
      const upstreamReset = await t.open();
      upstreamReset.upstream.resetAndDestroy();
      await once(upstreamReset.client, 'close');
      await eventually(() => sessionLines(t.gw).length === 2, 5_000, 'second line');
      const idle = await t.open();
      await once(idle.client, 'close');
      await eventually(() => sessionLines(t.gw).length === 3, 5_000, 'third line');
      const busy = await t.open();
      busy.client.resume();
      busy.upstream.resume();
      await t.gw.close();
      await once(busy.client, 'close');
      const ends = sessionLines(t.gw).map((l) => `${String(l.closedBy)}: ${String(l.reason)}`);
      assert.deepEqual(ends, ['client: reset', 'upstream: reset', 'gateway: idle timeout', 'gateway: shutdown']);
    } finally {
      await t.close();
    }
  });
});
