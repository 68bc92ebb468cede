import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import { eventually, openClient, startBackend, startGateway, type Backend, type RunningGateway, withGateway } from './helpers.js';
import { closeOf, closePayload, frame, inspectConfig, rawClient, rawUpstream, sleep, type RawUpstream } from './inspect-fixtures.js';
import { floodThroughGateway } from './flood-fixtures.js';

const BIN = 0x2;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

/** Records the close code every backend connection ends with, and the pongs it receives. */
function watchBackend(backend: Backend): { codes: number[]; pongs: number } {
  const seen = { codes: [] as number[], pongs: 0 };
  backend.wss.on('connection', (ws) => {
    ws.on('close', (code: number) => seen.codes.push(code));
    ws.on('pong', () => seen.pongs++);
  });
  return seen;
}

async function closeOfClient(ws: WebSocket): Promise<{ code: number; reason: string }> {
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  return { code, reason: reason.toString() };
}

void describe('inspect relay: messages through ws endpoints', () => {
  const fx = withGateway(startBackend, (backend) => inspectConfig([backend.url]));

  for (const size of [0, 125, 126, 65535, 65536, 16 * 1024 * 1024]) {
    void it(`a ${size}-byte binary message is echoed intact`, async () => {
      const ws = await openClient(fx.gw.url);
      const data = randomBytes(size);
      ws.send(data);
      const [back] = (await once(ws, 'message')) as [Buffer];
      assert.ok(Buffer.compare(back, data) === 0, 'same bytes');
      ws.close();
      await once(ws, 'close');
    });
  }

  void it('text, binary and many small messages; counters in the access log', async () => {
    const ws = await openClient(fx.gw.url);
    const got: string[] = [];
    ws.on('message', (m: Buffer) => got.push(m.toString()));
    for (let i = 0; i < 200; i++) ws.send(i % 2 ? `text ${i}` : Buffer.from(`bin ${i}`));
    await eventually(() => got.length === 200, 10_000, '200 echoes');
    assert.deepEqual(got.slice(0, 3), ['bin 0', 'text 1', 'bin 2']);
    ws.close(1000, 'done');
    assert.deepEqual(await closeOfClient(ws), { code: 1000, reason: 'done' });
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'session closed' && l.messagesIn === 200), 5_000, 'access log');
    const line = fx.gw.logs.find((l) => l.msg === 'session closed' && l.messagesIn === 200)!;
    assert.equal(line.messagesOut, 200);
    assert.equal(line.closedBy, 'client');
    assert.equal(line.reason, 'close 1000');
    assert.ok((line.bytesIn as number) > (line.bytesOut as number), 'client frames are masked: 4 bytes more each');
  });
});

void describe('inspect relay: backpressure', () => {
  void it('both ends flood without reading, then read on: every byte arrives as sent, in two sessions at once', { timeout: 90_000 }, async () => {
    await floodThroughGateway((port) => inspectConfig([`ws://127.0.0.1:${port}`], 'maxBufferedBytes: 256KiB'));
  });
});

void describe('inspect relay: permessage-deflate end to end', () => {
  const fx = withGateway(
    () => startBackend({ perMessageDeflate: { threshold: 0 } }),
    (backend) => inspectConfig([backend.url]),
  );

  void it('is negotiated through the gateway; compressed (RSV1) messages pass', async () => {
    const ws = await openClient(fx.gw.url, { perMessageDeflate: { threshold: 0 } });
    assert.match(ws.extensions, /permessage-deflate/);
    for (const msg of ['hello', 'x'.repeat(100_000), JSON.stringify({ a: Array.from({ length: 1000 }, (_, i) => i) })]) {
      ws.send(msg);
      const [back] = (await once(ws, 'message')) as [Buffer];
      assert.equal(back.toString(), msg);
    }
    const bin = randomBytes(50_000);
    ws.send(bin);
    const [back] = (await once(ws, 'message')) as [Buffer];
    assert.ok(back.equals(bin));
    ws.close();
    assert.equal((await closeOfClient(ws)).code, 1005);
  });
});

void describe('inspect relay: keepalive', () => {
  let backend: Backend;
  let seen: ReturnType<typeof watchBackend>;
  let up: RawUpstream;
  let gw: RunningGateway;
  let gwRaw: RunningGateway;
  before(async () => {
    backend = await startBackend();
    seen = watchBackend(backend);
    up = await rawUpstream();
    gw = await startGateway(inspectConfig([backend.url], '', 'pingInterval: 200ms, pongTimeout: 300ms'));
    gwRaw = await startGateway(inspectConfig([up.url], '', 'pingInterval: 200ms, pongTimeout: 300ms'));
  });
  after(async () => {
    await gw.close();
    await gwRaw.close();
    await backend.close();
    await up.close();
  });

  void it('a client that never answers pings is closed after pingInterval + pongTimeout; the upstream gets 1001', async () => {
    const n = up.peers.length;
    const client = await rawClient(gwRaw.port);
    const upstream = await up.peer(n);
    const t0 = Date.now();
    const ping = await client.next((f) => f.opcode === PING);
    assert.equal(ping.payload.subarray(0, 6).toString(), 'wsgate');
    assert.equal(ping.masked, false);
    const close = await client.closeFrame();
    assert.equal(close.code, 1001);
    await client.ended();
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 400 && elapsed < 5_000, `closed after ${elapsed}ms`);
    const toUp = await upstream.next((f) => f.opcode === CLOSE);
    assert.equal(closeOf(toUp).code, 1001);
    upstream.send(frame(CLOSE, closePayload(1001), { mask: false }));
    await upstream.ended();
    assert.equal(upstream.frames.filter((f) => f.opcode === PING || f.opcode === PONG).length, 0);
  });

  void it('a ws client stays connected across several intervals; its pongs never reach the upstream', async () => {
    const before = seen.pongs;
    const ws = await openClient(gw.url);
    let pings = 0;
    ws.on('ping', () => pings++);
    for (let i = 0; i < 6; i++) {
      await sleep(250);
      assert.equal(ws.readyState, ws.OPEN);
    }
    assert.ok(pings >= 2, `${pings} pings`);
    assert.equal(seen.pongs, before, 'the backend saw no pong');
    // Data still flows, and the client's own pings do reach the backend (whose pongs come back).
    ws.send('still here');
    const [msg] = (await once(ws, 'message')) as [Buffer];
    assert.equal(msg.toString(), 'still here');
    ws.ping('mine');
    const [pong] = (await once(ws, 'pong')) as [Buffer];
    assert.equal(pong.toString(), 'mine');
    ws.close();
    await once(ws, 'close');
  });

  void it('a raw client answering pings is kept; a ping never lands inside an upstream frame', async () => {
    const n = up.peers.length;
    const client = await rawClient(gwRaw.port);
    const upstream = await up.peer(n);
    // Answer every gateway ping, as a client must.
    let answered = 0;
    const answer = (): void => {
      for (const f of client.frames.slice(answered)) {
        answered++;
        if (f.opcode === PING) client.send(frame(PONG, f.payload));
      }
    };
    const timer = setInterval(answer, 20);
    try {
      // An upstream frame in two halves, far enough apart for a ping to fall due in between.
      const big = frame(BIN, randomBytes(1000), { mask: false });
      upstream.send(big.subarray(0, 500));
      await sleep(700);
      upstream.send(big.subarray(500));
      await client.next((f) => f.opcode === BIN);
      await sleep(900);
      assert.equal(client.closed, false);
      // Parsed cleanly: the binary frame is whole, pings are outside it.
      const bin = client.frames.find((f) => f.opcode === BIN)!;
      assert.ok(bin.payload.equals(big.subarray(big.length - 1000)));
      assert.ok(client.frames.filter((f) => f.opcode === PING).length >= 2, client.describe());
      // A pong the gateway did not ask for goes through.
      client.send(frame(PONG, 'not yours'));
      const pong = await upstream.next((f) => f.opcode === PONG);
      assert.equal(pong.payload.toString(), 'not yours');
      assert.equal(upstream.frames.filter((f) => f.opcode === PONG).length, 1, upstream.describe());
    } finally {
      clearInterval(timer);
      client.socket.destroy();
    }
  });
});

void describe('inspect relay: the gateway ends sessions with 1001', () => {
  let backend: Backend;
  let seen: ReturnType<typeof watchBackend>;
  before(async () => {
    backend = await startBackend();
    seen = watchBackend(backend);
  });
  after(async () => {
    await backend.close();
  });

  void it('shutdown: the client and the backend both get 1001', async () => {
    const gw = await startGateway(inspectConfig([backend.url]).replace('drainTimeout: 0', 'drainTimeout: 300ms'));
    const ws = await openClient(gw.url);
    const closed = closeOfClient(ws);
    const n = seen.codes.length;
    await gw.close();
    assert.equal((await closed).code, 1001);
    await eventually(() => seen.codes.length > n, 5_000, 'backend close');
    assert.equal(seen.codes[n], 1001);
    await eventually(() => gw.logs.some((l) => l.msg === 'session closed'), 5_000, 'access log');
    const line = gw.logs.find((l) => l.msg === 'session closed');
    assert.equal(line?.closedBy, 'gateway');
    assert.equal(line?.reason, 'shutdown');
  });

  void it('idleTimeout: 1001 both ways', async () => {
    const gw = await startGateway(inspectConfig([backend.url], 'idleTimeout: 400ms'));
    try {
      const ws = await openClient(gw.url);
      const n = seen.codes.length;
      const t0 = Date.now();
      const { code, reason } = await closeOfClient(ws);
      assert.equal(code, 1001);
      assert.equal(reason, 'idle timeout');
      assert.ok(Date.now() - t0 >= 350, 'not before the timeout');
      await eventually(() => seen.codes.length > n, 5_000, 'backend close');
      assert.equal(seen.codes[n], 1001);
    } finally {
      await gw.close();
    }
  });

  void it('maxLifetime: 1001 both ways, within the lifetime ±10% (plus slack)', async () => {
    const gw = await startGateway(inspectConfig([backend.url], 'maxLifetime: 1s'));
    try {
      const ws = await openClient(gw.url);
      const n = seen.codes.length;
      const t0 = Date.now();
      // Traffic does not extend a lifetime.
      const chatter = setInterval(() => ws.send('x'), 50);
      const { code, reason } = await closeOfClient(ws);
      clearInterval(chatter);
      const elapsed = Date.now() - t0;
      assert.equal(code, 1001);
      assert.equal(reason, 'max lifetime');
      assert.ok(elapsed >= 850 && elapsed <= 2_500, `closed after ${elapsed}ms`);
      await eventually(() => seen.codes.length > n, 5_000, 'backend close');
      assert.equal(seen.codes[n], 1001);
    } finally {
      await gw.close();
    }
  });
});

void describe('inspect relay: the upstream ends', () => {
  const fx = withGateway(rawUpstream, (up) => inspectConfig([up.url]));

  void it('upstream reset mid-connection → the client gets 1011', async () => {
    const n = fx.backend.peers.length;
    const ws = await openClient(fx.gw.url);
    const upstream = await fx.backend.peer(n);
    const closed = closeOfClient(ws);
    upstream.socket.resetAndDestroy();
    assert.equal((await closed).code, 1011);
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'session closed' && l.closedBy === 'upstream' && l.reason === 'reset'), 5_000);
  });

  void it('upstream EOF without a close frame → the client gets 1011', async () => {
    const n = fx.backend.peers.length;
    const ws = await openClient(fx.gw.url);
    const upstream = await fx.backend.peer(n);
    const closed = closeOfClient(ws);
    upstream.socket.end();
    assert.equal((await closed).code, 1011);
  });

  void it("upstream close frame 4000 'bye' → the client gets 4000 'bye', and its answer goes upstream", async () => {
    const n = fx.backend.peers.length;
    const ws = await openClient(fx.gw.url);
    const upstream = await fx.backend.peer(n);
    const closed = closeOfClient(ws);
    upstream.send(frame(CLOSE, closePayload(4000, 'bye'), { mask: false }));
    assert.deepEqual(await closed, { code: 4000, reason: 'bye' });
    const answer = await upstream.next((f) => f.opcode === CLOSE);
    assert.equal(closeOf(answer).code, 4000);
    await upstream.ended();
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'session closed' && l.closedBy === 'upstream' && l.reason === 'close 4000'), 5_000);
  });

  void it('an upstream that never answers a client Close is cut after the close timeout', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    const t0 = Date.now();
    client.send(frame(CLOSE, closePayload(1000)));
    const got = await upstream.next((f) => f.opcode === CLOSE);
    assert.equal(closeOf(got).code, 1000);
    await Promise.all([client.ended(), upstream.ended()]);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 1_500 && elapsed < 6_000, `cut after ${elapsed}ms`);
  });
});
