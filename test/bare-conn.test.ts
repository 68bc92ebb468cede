import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, Socket } from 'node:net';
import { acceptUpgrade, echo, eventually, openClient, rawServer, simpleConfig, startBackend, startGateway, upgradeRequest } from './helpers.js';

// On plain listeners the gateway accepts connections as bare TCP handles and
// dials IP targets the same way (src/relay/bare-conn.ts): a session's two
// connections never become net.Sockets. What a user sees is the same
// gateway, only cheaper per handshake; every other suite checks the
// behaviour. This one checks that the sockets really are gone, and that a
// session's resources come back when it ends. test/stream-io.test.ts keeps
// the socket path tested (WSGATE_RELAY_IO=stream).

/** net.Sockets this process holds open (bare handles are not sockets). */
function netSockets(): number {
  return (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().filter((h) => h instanceof Socket).length;
}

/** A raw client that has sent its upgrade request and, 100 ms later, a masked text frame "held" (mask 0). */
async function clientInDial(port: number): Promise<{ client: Socket; answer(): string }> {
  const client = connect(port, '127.0.0.1');
  client.on('error', () => {});
  await once(client, 'connect');
  let answer = '';
  client.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  client.write(upgradeRequest());
  await new Promise((r) => setTimeout(r, 100));
  client.write(Buffer.from([0x81, 0x84, 0, 0, 0, 0, ...Buffer.from('held')]));
  return { client, answer: () => answer };
}

for (const mode of ['inspect', 'tunnel'] as const) {
  void describe(`${mode} mode on a plain listener`, () => {
    void it('relays 20 sessions with no net.Socket of the gateway, and lets everything go when they end', async () => {
      const backend = await startBackend();
      const gw = await startGateway(simpleConfig([backend.url], `relay: { mode: ${mode} }\nlimits: { perIp: { maxConnections: 20 } }`));
      try {
        const before = netSockets();
        const clients = await Promise.all(Array.from({ length: 20 }, () => openClient(gw.url)));
        await eventually(() => gw.gw.stats().sessions === 20, 5_000, '20 sessions');
        for (const [i, ws] of clients.entries()) assert.equal(await echo(ws, `message ${i}`), `message ${i}`);
        // This process holds the 20 clients and the backend's 20 connections:
        // 40 sockets. A gateway on sockets would add 40 more.
        const added = netSockets() - before;
        assert.ok(added <= 40, `${added} sockets for 20 sessions (40 are the test's own)`);
        for (const ws of clients) ws.close();
        await eventually(() => gw.gw.stats().sessions === 0, 5_000, 'sessions back to 0');
        await eventually(() => netSockets() <= before, 5_000, 'sockets back to where they were');
        // The per-address count is released too: 20 new sessions from the same address are admitted.
        const again = await Promise.all(Array.from({ length: 20 }, () => openClient(gw.url)));
        for (const ws of again) ws.close();
      } finally {
        await gw.close();
        await backend.close();
      }
    });

    void it('a client that resets while the upstream is dialed ends its session at once, and the dial with it', async () => {
      let upstreamClosed = false;
      const upstream = await rawServer((s) => s.on('close', () => (upstreamClosed = true)).resume()); // reads, never answers
      const config = `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { connectTimeout: 30s, targets: [{ url: "ws://127.0.0.1:${upstream.port}" }] } }
relay: { mode: ${mode} }
shutdown: { drainTimeout: 0 }`;
      const gw = await startGateway(config);
      const client = connect(gw.port, '127.0.0.1');
      client.on('error', () => {});
      try {
        await once(client, 'connect');
        client.write(upgradeRequest());
        await eventually(() => gw.gw.stats().sessions === 1, 5_000, 'the session, dialing');
        client.resetAndDestroy();
        // Well before the 30 s connectTimeout: the gateway read the reset.
        await eventually(() => gw.gw.stats().sessions === 0, 5_000, 'the session ended');
        await eventually(() => upstreamClosed, 5_000, 'the dial called off');
      } finally {
        client.destroy();
        await gw.close();
        await upstream.close();
      }
    });

    void it('an upstream that says no after a slow dial: the client gets its answer, and what it sent meanwhile goes nowhere', async () => {
      let afterHead = '';
      const upstream = await rawServer((s) => {
        let text = '';
        s.on('data', (d: Buffer) => {
          text += d.toString('latin1');
          const end = text.indexOf('\r\n\r\n');
          if (end !== -1) afterHead = text.slice(end + 4);
        });
        setTimeout(() => s.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope\n'), 400);
      });
      const gw = await startGateway(simpleConfig([`ws://127.0.0.1:${upstream.port}`], `relay: { mode: ${mode} }`));
      const { client, answer } = await clientInDial(gw.port);
      try {
        await once(client, 'close');
        assert.match(answer(), /^HTTP\/1\.1 403 Forbidden\r\n[^]*\r\n\r\nnope\n$/);
        assert.equal(afterHead, '', 'nothing of what the client sent after its head reached the upstream');
        await eventually(() => gw.gw.stats().sessions === 0, 5_000, 'the session ends');
      } finally {
        client.destroy();
        await gw.close();
        await upstream.close();
      }
    });

    void it('what a client sends while the upstream is dialed, and its FIN, reach the upstream after the 101', async () => {
      // The client connection keeps reading during the dial (BareConn.hold): nothing it sends may be lost or reordered.
      let received = Buffer.alloc(0);
      let ended = false;
      const upstream = await rawServer((s) => {
        setTimeout(() => {
          void acceptUpgrade(s).then(() => {
            s.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
            s.on('end', () => (ended = true));
            s.resume();
          });
        }, 400);
      });
      const gw = await startGateway(simpleConfig([`ws://127.0.0.1:${upstream.port}`], `relay: { mode: ${mode} }`));
      // Masked frames (mask 0, so the payload reads plainly on the upstream side), apart, then FIN.
      const { client, answer } = await clientInDial(gw.port);
      try {
        // 40 one-byte frames, a read each: more reads than the gateway holds (16) before it lets TCP keep the rest.
        for (let i = 0; i < 40; i++) {
          client.write(Buffer.from([0x81, 0x81, 0, 0, 0, 0, 0x61 + (i % 26)]));
          await new Promise((r) => setTimeout(r, 2));
        }
        await new Promise((r) => setTimeout(r, 50));
        // More bytes than the gateway holds (64 KiB) before it lets TCP keep the rest.
        const big = Buffer.alloc(14 + 200_000, 0x62);
        big.set([0x82, 0xff, 0, 0, 0, 0, 0, 0x03, 0x0d, 0x40, 0, 0, 0, 0]);
        client.write(big);
        client.write(Buffer.from([0x81, 0x85, 0, 0, 0, 0, ...Buffer.from('again')]));
        client.end();
        await eventually(() => answer().startsWith('HTTP/1.1 101'), 5_000, 'the 101');
        await eventually(() => received.includes('again'), 5_000, 'both frames at the upstream');
        assert.ok(received.indexOf('held') < received.indexOf('again'), 'in order');
        assert.ok(received.length >= 200_000 + 4 + 5 + 40, `${received.length} bytes at the upstream`);
        const small = Buffer.concat(Array.from({ length: 40 }, (_, i) => Buffer.from([0x81, 0x81, 0, 0, 0, 0, 0x61 + (i % 26)])));
        assert.ok(received.indexOf(small) > received.indexOf('held'), 'the one-byte frames, in order, after the first');
        await eventually(() => ended || gw.gw.stats().sessions === 0, 5_000, 'the FIN handled');
        await eventually(() => gw.gw.stats().sessions === 0, 5_000, 'the session ends');
      } finally {
        client.destroy();
        await gw.close();
        await upstream.close();
      }
    });
  });
}

void describe('inspect mode on a plain listener: the end of a session', () => {
  void it('once the client has said Close and got the answer, its connection is closed at once, without waiting for its FIN', async () => {
    const backend = await startBackend();
    const gw = await startGateway(simpleConfig([backend.url], 'relay: { mode: inspect }'));
    // A client that never ends its side of TCP.
    const client = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
    let failed: NodeJS.ErrnoException | undefined;
    client.on('error', (err: NodeJS.ErrnoException) => (failed = err));
    let answer = Buffer.alloc(0);
    let ended = false;
    client.on('data', (d: Buffer) => (answer = Buffer.concat([answer, d])));
    client.on('end', () => (ended = true));
    try {
      await once(client, 'connect');
      client.write(upgradeRequest());
      await eventually(() => answer.includes('\r\n\r\n'), 5_000, 'the 101');
      assert.match(answer.toString('latin1'), /^HTTP\/1\.1 101 /);
      const closeFrame = Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]); // Close 1000, mask 0
      client.write(closeFrame);
      await eventually(() => ended, 5_000, "the gateway's FIN");
      assert.ok(answer.subarray(answer.indexOf('\r\n\r\n') + 4).equals(Buffer.from([0x88, 0x02, 0x03, 0xe8])), 'the Close answer, whole');
      // Ended before the close handshake's 2 s limit would have cut a client that keeps its side open.
      await eventually(() => gw.gw.stats().sessions === 0, 1_500, 'the session ended');
      // Closed, not half-closed: what the client still sends meets a reset.
      await eventually(
        () => {
          if (failed === undefined && !client.destroyed) client.write('x');
          return failed !== undefined;
        },
        5_000,
        'a reset',
      );
      assert.match(failed!.code ?? '', /^(EPIPE|ECONNRESET)$/);
    } finally {
      client.destroy();
      await gw.close();
      await backend.close();
    }
  });

  void it('a client that reads slowly and says Close still gets everything before the Close answer, then the FIN', async () => {
    const MESSAGE = 8 * 1024 * 1024;
    const backend = await startBackend();
    // Right after the upgrade, more than the gateway and the sockets buffer: the upstream's Close answer queues behind it.
    backend.wss.on('connection', (ws) => ws.send(Buffer.alloc(MESSAGE, 0x61), { binary: true }));
    const gw = await startGateway(simpleConfig([backend.url], 'relay: { mode: inspect }'));
    const client = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
    client.on('error', () => {});
    const chunks: Buffer[] = [];
    let bytes = 0;
    let ended = false;
    client.on('data', (d: Buffer) => {
      chunks.push(d);
      bytes += d.length;
    });
    client.on('end', () => (ended = true));
    try {
      await once(client, 'connect');
      client.write(upgradeRequest());
      await eventually(() => Buffer.concat(chunks).includes('\r\n\r\n'), 5_000, 'the 101');
      client.pause();
      client.write(Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])); // Close 1000, mask 0
      await new Promise((r) => setTimeout(r, 300));
      client.resume();
      await eventually(() => ended, 10_000, "the gateway's FIN");
      const all = Buffer.concat(chunks);
      const frames = all.subarray(all.indexOf('\r\n\r\n') + 4);
      // The binary frame whole (a 10-byte header for 8 MiB), then the Close answer, and nothing else.
      assert.equal(frames.length, 10 + MESSAGE + 4, `${bytes} bytes in all`);
      assert.deepEqual([...frames.subarray(0, 2)], [0x82, 127]);
      assert.ok(frames.subarray(frames.length - 4).equals(Buffer.from([0x88, 0x02, 0x03, 0xe8])), 'the Close answer last');
      await eventually(() => gw.gw.stats().sessions === 0, 5_000, 'the session ended');
    } finally {
      client.destroy();
      await gw.close();
      await backend.close();
    }
  });
});
