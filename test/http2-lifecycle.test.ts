// WebSockets over HTTP/2 (RFC 8441), from the 200 to the end: what a
// client's RST_STREAM or lost connection does upstream, how an upstream's
// close reaches the stream, flow control as backpressure, GOAWAY on
// shutdown, idle connections, and http2 switched by a reload.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { parseConfig } from '../src/config/load.js';
import { eventually, startGateway, type RunningGateway } from './helpers.js';
import { closePayload, frame, rawUpstream, sleep, type RawPeer, type RawUpstream } from './inspect-fixtures.js';
import { NO_OPENSSL } from './tls-fixtures.js';
import { constants, h2Client, openWs, tlsFiles, tlsListener, type H2Client, type TlsFiles } from './http2-fixtures.js';

function yaml(files: TlsFiles, upstream: RawUpstream, mode: string, extra = '', http2?: boolean): string {
  return `${tlsListener(files, http2)}routes: [{ match: { path: / }, upstream: app }]
upstreams: { app: { targets: [{ url: "${upstream.url}" }] } }
limits: { perIp: { maxConnections: 1000, handshakeRate: 0 }${extra} }
relay: { mode: ${mode} }
shutdown: { drainTimeout: 5s }
`;
}

for (const mode of ['inspect', 'tunnel'] as const) {
  void describe(`HTTP/2 WebSocket ends, ${mode} mode`, { skip: NO_OPENSSL }, () => {
    let files: TlsFiles;
    let upstream: RawUpstream;
    let gw: RunningGateway;
    let c: H2Client;

    before(async () => {
      files = tlsFiles();
      upstream = await rawUpstream(answerCloses);
      gw = await startGateway(yaml(files, upstream, mode));
      c = await h2Client(gw.port, files.ca.ca);
    });
    after(async () => {
      c.close();
      await gw.close();
      await upstream.close();
      files.ca.close();
    });

    /** A WebSocket over h2 and its upstream end, with a message through to prove the pair. */
    async function pair(): Promise<{ client: RawPeer; up: RawPeer }> {
      const n = upstream.peers.length;
      const { peer } = await openWs(c);
      const up = await upstream.peer(n);
      peer.send(frame(2, 'hello'));
      await up.next((f) => f.opcode === 2);
      return { client: peer, up };
    }

    void it(
      mode === 'inspect' ? 'a client RST_STREAM: the upstream gets a close 1001' : 'a client RST_STREAM: the upstream connection is closed (a cut)',
      async () => {
        const { client, up } = await pair();
        (client.socket as unknown as { close(code: number): void }).close(constants.NGHTTP2_CANCEL);
        if (mode === 'inspect') assert.equal((await up.closeFrame()).code, 1001);
        else
          assert.equal(
            up.frames.some((f) => f.opcode === 8),
            false,
          );
        await up.ended();
        await eventually(() => gw.logs.some((l) => l.msg === 'session closed' && l.closedBy === 'client' && l.protocol === 'h2'), 5_000, 'access log');
      },
    );

    void it('the upstream closes: its close frame reaches the client, then END_STREAM', async () => {
      const { client, up } = await pair();
      up.send(frame(8, closePayload(1000, 'bye'), { mask: false }));
      const close = await client.closeFrame();
      assert.deepEqual(close, { code: 1000, reason: 'bye' });
      // The client answers as RFC 6455 asks, and ends its side (RFC 8441 §6); the upstream hangs up.
      client.send(frame(8, closePayload(1000)));
      client.socket.end();
      up.socket.end();
      const stream = client.socket as unknown as { readableEnded: boolean; rstCode: number | undefined };
      await eventually(() => stream.readableEnded, 5_000, 'END_STREAM on the client stream');
      await client.ended();
      assert.notEqual(stream.rstCode, constants.NGHTTP2_CANCEL, 'ended, not cut');
    });

    void it('a client GOAWAY: NO_ERROR lets open WebSockets run on; an error code ends them upstream', async () => {
      const c2 = await h2Client(gw.port, files.ca.ca);
      const n = upstream.peers.length;
      const { peer } = await openWs(c2);
      const up = await upstream.peer(n);
      c2.session.goaway(constants.NGHTTP2_NO_ERROR);
      await sleep(100);
      peer.send(frame(1, 'after goaway'));
      assert.equal((await up.next((f) => f.opcode === 1)).payload.toString(), 'after goaway');
      c2.session.goaway(constants.NGHTTP2_PROTOCOL_ERROR);
      if (mode === 'inspect') assert.equal((await up.closeFrame()).code, 1001);
      await up.ended();
      c2.close();
    });

    void it(
      'the gateway ending a session (the admin API) before the client does: ' +
        (mode === 'inspect' ? 'close frames both ways' : 'RST_STREAM(CANCEL), RFC 8441 §6'),
      async () => {
        const { client, up } = await pair();
        const stream = client.socket as unknown as { rstCode: number | undefined };
        const id = Number(gw.gw.connections({ limit: 100 }).connections.at(-1)!.id);
        assert.equal(gw.gw.closeConnection(id, 1001, 'operator'), true);
        if (mode === 'inspect') {
          assert.equal((await client.closeFrame()).code, 1001);
          assert.equal((await up.closeFrame()).code, 1001);
          client.send(frame(8, closePayload(1001)));
          client.socket.end();
          await client.ended();
          assert.notEqual(stream.rstCode, constants.NGHTTP2_CANCEL);
        } else {
          await client.ended();
          assert.equal(stream.rstCode, constants.NGHTTP2_CANCEL);
        }
        await up.ended();
      },
    );

    void it('the HTTP/2 connection lost: every WebSocket on it ends upstream', async () => {
      const c2 = await h2Client(gw.port, files.ca.ca);
      const n = upstream.peers.length;
      const first = await openWs(c2);
      const second = await openWs(c2);
      const ups = [await upstream.peer(n), await upstream.peer(n + 1)];
      first.peer.send(frame(1, 'a'));
      second.peer.send(frame(1, 'b'));
      await Promise.all(ups.map((u) => u.next((f) => f.opcode === 1)));
      c2.socket.destroy();
      for (const u of ups) {
        if (mode === 'inspect') assert.equal((await u.closeFrame()).code, 1001);
        await u.ended();
      }
    });
  });
}

void describe('HTTP/2 flow control is the relay’s backpressure', { skip: NO_OPENSSL }, () => {
  for (const mode of ['inspect', 'tunnel'] as const) {
    void it(`${mode} mode: a client that does not read holds the upstream back; all of it arrives once it reads`, async () => {
      const files = tlsFiles();
      const upstream = await rawUpstream();
      const gw = await startGateway(yaml(files, upstream, mode, ', maxBufferedBytes: 256KiB'));
      const c = await h2Client(gw.port, files.ca.ca);
      try {
        const { peer, answer } = await openWs(c);
        const stream = answer.stream;
        const up = await upstream.peer(0);
        stream.pause();
        // 32 MiB in 64 KiB binary frames, as fast as the upstream's socket takes them.
        const chunk = frame(2, Buffer.alloc(65_536, 7), { mask: false });
        const total = 512 * chunk.length;
        let written = 0;
        let stalled = false;
        const pump = (): void => {
          while (written < total) {
            written += chunk.length;
            if (!up.socket.write(chunk)) {
              stalled = true;
              return;
            }
          }
        };
        up.socket.on('drain', pump);
        pump();
        await eventually(() => stalled, 10_000, 'the upstream socket to stall');
        await sleep(500);
        const relayed = gw.gw.connections({ limit: 100 }).connections[0]!.bytes.downstream;
        // What the gateway took from the upstream: its buffer budget, the stream's window and a read or two; never all of it.
        assert.ok(relayed < 256 * 1024 + 4 * 65_536 + 2 * chunk.length, `the gateway read ${relayed} bytes from the upstream`);
        assert.ok(written < total, 'the upstream could not write everything');
        stream.resume();
        await peer.receivedAtLeast(total, 30_000);
        assert.equal(peer.frames.filter((f) => f.opcode === 2).length, 512);
      } finally {
        c.close();
        await gw.close();
        await upstream.close();
        files.ca.close();
      }
    });
  }
});

void describe('HTTP/2 flow control, the other way', { skip: NO_OPENSSL }, () => {
  void it('an upstream that does not read holds the client’s stream back (its window closes); all of it arrives once it reads', async () => {
    const files = tlsFiles();
    const upstream = await rawUpstream();
    const gw = await startGateway(yaml(files, upstream, 'inspect', ', maxBufferedBytes: 256KiB'));
    const c = await h2Client(gw.port, files.ca.ca);
    try {
      const { answer } = await openWs(c);
      const up = await upstream.peer(0);
      up.socket.pause();
      const chunk = frame(2, Buffer.alloc(65_536, 9));
      const total = 512 * chunk.length;
      let written = 0;
      let stalled = false;
      const pump = (): void => {
        while (written < total) {
          written += chunk.length;
          if (!answer.stream.write(chunk)) {
            stalled = true;
            return;
          }
        }
      };
      answer.stream.on('drain', pump);
      pump();
      await eventually(() => stalled, 10_000, 'the client stream to stall');
      await sleep(1_000);
      const relayed = gw.gw.connections({ limit: 100 }).connections[0]!.bytes.upstream;
      // The budget, the stream's window and what loopback TCP buffers hold: far from all of it.
      assert.ok(relayed < total / 2, `the gateway read ${relayed} of ${total} bytes from the client`);
      assert.ok(written < total, 'the client could not write everything');
      up.socket.resume();
      await up.receivedAtLeast(total, 30_000);
      assert.equal(up.frames.filter((f) => f.opcode === 2).length, 512);
    } finally {
      c.close();
      await gw.close();
      await upstream.close();
      files.ca.close();
    }
  });
});

void describe('HTTP/2 connections: GOAWAY on shutdown, idle ones closed, http2 by reload', { skip: NO_OPENSSL }, () => {
  let files: TlsFiles;
  let upstream: RawUpstream;
  before(async () => {
    files = tlsFiles();
    upstream = await rawUpstream(answerCloses);
  });
  after(async () => {
    await upstream.close();
    files.ca.close();
  });

  void it('a gateway stop sends GOAWAY on the connection, then 1001 close frames on its WebSockets (inspect)', async () => {
    const gw = await startGateway(yaml(files, upstream, 'inspect'));
    const c = await h2Client(gw.port, files.ca.ca);
    const events: string[] = [];
    c.session.on('goaway', () => events.push('goaway'));
    const peers = [(await openWs(c)).peer, (await openWs(c)).peer];
    for (const p of peers) {
      p.socket.on('data', () => events.push('data'));
      // The client answers the gateway's Close, as a browser does.
      p.socket.on('data', () => {
        if (p.frames.some((f) => f.opcode === 8) && !p.socket.writableEnded) {
          p.send(frame(8, closePayload(1001)));
          p.socket.end();
        }
      });
    }
    const stopped = gw.close();
    for (const p of peers) assert.equal((await p.closeFrame()).code, 1001);
    await stopped;
    assert.equal(c.goaways.length, 1);
    assert.equal(c.goaways[0]![0], constants.NGHTTP2_NO_ERROR);
    assert.equal(events[0], 'goaway', `GOAWAY before the close frames: ${events.join(' ')}`);
    for (const p of peers) await p.ended();
    await eventually(() => c.session.closed || c.session.destroyed, 5_000, 'the connection to close');
    c.close();
  });

  void it('a connection without streams is closed after the handshake timeout; one whose streams ended, soon after', async () => {
    const gw = await startGateway(yaml(files, upstream, 'inspect', ', handshakeTimeout: 300ms'));
    try {
      const idle = await h2Client(gw.port, files.ca.ca);
      await Promise.race([once(idle.session, 'close'), sleep(5_000).then(() => assert.fail('the idle connection stayed open'))]);
      assert.equal(idle.goaways.length, 1, 'closed with GOAWAY');
      const used = await h2Client(gw.port, files.ca.ca);
      const { peer } = await openWs(used);
      await sleep(600);
      assert.equal(used.session.closed, false, 'a connection with an open WebSocket stays');
      peer.socket.destroy();
      await Promise.race([once(used.session, 'close'), sleep(10_000).then(() => assert.fail('the connection stayed open after its last stream'))]);
    } finally {
      await gw.close();
    }
  });

  void it('a reload turns http2 off for new connections; an open HTTP/2 WebSocket runs on', async () => {
    const gw = await startGateway(yaml(files, upstream, 'inspect'));
    const c = await h2Client(gw.port, files.ca.ca);
    try {
      const n = upstream.peers.length;
      const { peer } = await openWs(c);
      const up = await upstream.peer(n);
      const result = await gw.gw.reload(parseConfig(yaml(files, upstream, 'inspect', '', false), {}));
      assert.equal(result.ok, true);
      assert.equal(await alpn(gw.port, files), 'http/1.1');
      peer.send(frame(1, 'still here'));
      assert.equal((await up.next((f) => f.opcode === 1)).payload.toString(), 'still here');
      assert.equal((await gw.gw.reload(parseConfig(yaml(files, upstream, 'inspect'), {}))).ok, true);
      assert.equal(await alpn(gw.port, files), 'h2');
      peer.socket.destroy();
    } finally {
      c.close();
      await gw.close();
    }
  });
});

/** An upstream peer that answers a Close frame with its own and hangs up, as a WebSocket server does. */
function answerCloses(p: RawPeer): void {
  p.socket.on('data', () => {
    if (p.frames.some((f) => f.opcode === 8) && !p.socket.writableEnded) {
      p.send(frame(8, closePayload(1001), { mask: false }));
      p.socket.end();
    }
  });
}

async function alpn(port: number, files: TlsFiles): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ port, host: '127.0.0.1', servername: 'localhost', ca: files.ca.ca, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      resolve(s.alpnProtocol ?? false);
      s.destroy();
    });
    s.on('error', reject);
  });
}
