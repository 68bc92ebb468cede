import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { InspectRelay } from '../src/relay/inspect.js';
import { portOf } from '../src/relay/handle-io.js';
import type { Relay, RelayLimits } from '../src/relay/relay.js';
import type { RelayEnd } from '../src/relay/tunnel.js';
import { eventually } from './helpers.js';
import { closeOf, closePayload, frame, RawPeer, sleep } from './inspect-fixtures.js';

// The relay on its own, between two pairs of real sockets:
// client peer ⇄ down  [InspectRelay]  up ⇄ upstream peer

const TEXT = 0x1;
const BIN = 0x2;
const CLOSE = 0x8;
const PONG = 0xa;

const LIMITS: RelayLimits = {
  maxBufferedBytes: 1 << 20,
  idleMs: 0,
  maxMessageBytes: 0,
  messageRate: 0,
  upstreamMessageRate: 0,
  maxLifetime: 0,
  pingInterval: 0,
  pongTimeout: 0,
  validateUtf8: false,
  rsv1Allowed: false,
  tally: null,
};

/** Two connected sockets: [accepted (server side), dialed]. */
async function socketPair(allowHalfOpen: boolean): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const dialed = connect((server.address() as AddressInfo).port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [Socket];
  await once(dialed, 'connect');
  server.close();
  for (const s of [accepted, dialed]) s.setNoDelay(true);
  return [accepted, dialed];
}

interface Setup {
  relay: InspectRelay;
  client: RawPeer;
  upstream: RawPeer;
  down: Socket;
  up: Socket;
  ends: RelayEnd[];
  done: Promise<RelayEnd>;
}

async function setup(limits: Partial<RelayLimits> = {}, early: { toClient?: Buffer; toUpstream?: Buffer } = {}): Promise<Setup> {
  // As in the gateway: the client hop comes from an HTTP server (half-open
  // allowed), the upstream hop from net.connect.
  const [down, clientSock] = await socketPair(true);
  const [upstreamSock, up] = await socketPair(false);
  for (const s of [down, clientSock, upstreamSock, up]) s.on('error', () => {});
  const ends: RelayEnd[] = [];
  let resolve!: (e: RelayEnd) => void;
  const done = new Promise<RelayEnd>((r) => (resolve = r));
  const relay = new InspectRelay(down, up, { ...LIMITS, ...limits }, (_r: Relay, end: RelayEnd) => {
    assert.ok(down.destroyed && up.destroyed, 'both sockets are closed when done runs');
    ends.push(end);
    resolve(end);
  });
  relay.start(early.toClient, early.toUpstream);
  return { relay, client: new RawPeer(clientSock, Buffer.alloc(0)), upstream: new RawPeer(upstreamSock, Buffer.alloc(0)), down, up, ends, done };
}

/** Answers a Close frame with the same code, as a well-behaved peer does. */
async function answerClose(peer: RawPeer, mask: boolean): Promise<number> {
  const f = await peer.next((x) => x.opcode === CLOSE);
  assert.equal(f.masked, !mask, 'masked toward the upstream only');
  const { code } = closeOf(f);
  peer.send(frame(CLOSE, closePayload(code), { mask }));
  return code;
}

void describe('InspectRelay', () => {
  void it('close(reason, 1012) sends 1012 both ways, waits for both answers, then ends once', async () => {
    const s = await setup();
    s.client.send(frame(TEXT, 'hello'));
    await s.upstream.next((f) => f.opcode === TEXT);
    s.relay.close('target drain', 1012);
    const [toClient, toUpstream] = await Promise.all([answerClose(s.client, true), answerClose(s.upstream, false)]);
    assert.equal(toClient, 1012);
    assert.equal(toUpstream, 1012);
    assert.equal(closeOf(s.client.frames.at(-1)!).reason, 'target drain');
    // The upstream saw the client's message, then only the gateway's Close (not the client's answer).
    assert.deepEqual(
      s.upstream.frames.map((f) => f.opcode),
      [TEXT, CLOSE],
    );
    const end = await s.done;
    assert.deepEqual(end, { closedBy: 'gateway', reason: 'target drain', code: 1012 });
    await Promise.all([s.client.ended(), s.upstream.ended()]);
    await sleep(50);
    assert.equal(s.ends.length, 1);
    assert.equal(s.relay.messagesFromClient, 1);
    assert.equal(s.relay.bytesFromClient, frame(TEXT, 'hello').length + frame(CLOSE, closePayload(1012)).length);
  });

  void it('close() while the upstream is mid-frame: the frame completes, then the Close; nothing after it', async () => {
    const s = await setup();
    const big = frame(BIN, randomBytes(5000), { mask: false });
    s.upstream.send(big.subarray(0, 1000));
    await s.client.receivedAtLeast(1000);
    s.relay.close('shutdown');
    await sleep(30);
    assert.equal(s.client.receivedBytes, 1000, 'the Close waits for the frame boundary');
    s.upstream.send(Buffer.concat([big.subarray(1000), frame(TEXT, 'too late', { mask: false })]));
    const code = await answerClose(s.client, true);
    assert.equal(code, 1001);
    assert.deepEqual(
      s.client.frames.map((f) => f.opcode),
      [BIN, CLOSE],
    );
    await answerClose(s.upstream, false);
    await s.done;
  });

  void it('a pong answering a gateway ping is cut out of a chunk it shares with data', async () => {
    const s = await setup();
    const a = frame(TEXT, 'a');
    const b = frame(TEXT, 'b');
    const tagged = Buffer.concat([Buffer.from('wsgate'), Buffer.from([0, 0, 0, 1])]);
    const other = frame(PONG, 'other');
    s.client.send(Buffer.concat([a, frame(PONG, tagged), b, other]));
    await s.upstream.next((f) => f.opcode === PONG);
    assert.ok(Buffer.concat(s.upstream.received).equals(Buffer.concat([a, b, other])), 'the rest byte for byte');
    assert.deepEqual(
      s.upstream.frames.map((f) => [f.opcode, f.payload.toString()]),
      [
        [TEXT, 'a'],
        [TEXT, 'b'],
        [PONG, 'other'],
      ],
    );
    s.client.socket.destroy();
    await s.done;
  });

  for (const split of [1, 4]) {
    void it(`a gateway Close while the upstream's own Close arrives split (at ${split}): one Close reaches the client`, async () => {
      const s = await setup();
      const theirs = frame(CLOSE, closePayload(4001, 'theirs'), { mask: false });
      s.upstream.send(theirs.subarray(0, split));
      await sleep(50);
      // The unfinished Close is held back, not forwarded: the client is between
      // frames, so the gateway's Close goes out at once, and theirs never does.
      s.relay.close('shutdown');
      await sleep(20);
      s.upstream.send(theirs.subarray(split));
      const closes = await (async () => {
        await s.client.next((f) => f.opcode === CLOSE);
        await sleep(50);
        return s.client.frames.filter((f) => f.opcode === CLOSE);
      })();
      assert.equal(closes.length, 1);
      assert.equal(closeOf(closes[0]!).code, 1001);
      assert.deepEqual(
        s.client.frames.map((f) => f.opcode),
        [CLOSE],
      );
      s.client.send(frame(CLOSE, closePayload(1001)));
      await s.done;
    });
  }

  void it('bytes read ahead during the handshake go through the trackers', async () => {
    const s = await setup({}, { toClient: frame(TEXT, 'early down', { mask: false }), toUpstream: frame(TEXT, 'early up') });
    assert.equal((await s.client.next()).payload.toString(), 'early down');
    assert.equal((await s.upstream.next()).payload.toString(), 'early up');
    assert.equal(s.relay.messagesFromClient, 1);
    assert.equal(s.relay.messagesFromUpstream, 1);
    s.client.send(frame(CLOSE, closePayload(1000)));
    await answerClose(s.upstream, false);
    assert.deepEqual(await s.done, { closedBy: 'client', reason: 'close 1000', code: 1000 });
  });

  void it('backpressure: a slow upstream pauses the client; everything arrives once it reads again', async () => {
    const s = await setup({ maxBufferedBytes: 64 * 1024 });
    s.upstream.socket.pause();
    // More than the kernel's socket buffers can hide.
    const msgs = Array.from({ length: 256 }, () => frame(BIN, randomBytes(64 * 1024)));
    for (const m of msgs) s.client.send(m);
    await eventually(() => portOf(s.down)!.paused, 10_000, 'client side paused');
    s.upstream.socket.resume();
    await s.upstream.receivedAtLeast(
      msgs.reduce((n, m) => n + m.length, 0),
      15_000,
    );
    assert.ok(Buffer.concat(s.upstream.received).equals(Buffer.concat(msgs)));
    await eventually(() => !portOf(s.down)!.paused, 5_000, 'client side resumed');
    s.client.socket.destroy();
    await s.done;
  });

  void it('a client that ignores the Close is cut after the close timeout; done runs once', async () => {
    const s = await setup();
    s.relay.close('shutdown');
    await answerClose(s.upstream, false);
    await s.client.next((f) => f.opcode === CLOSE);
    const t0 = Date.now();
    await s.done;
    assert.ok(Date.now() - t0 > 1_000, 'waited for the answer');
    s.relay.close('again');
    await sleep(50);
    assert.equal(s.ends.length, 1);
  });

  void it('a client that hangs up without a Close: the upstream gets 1001 and a close handshake', async () => {
    const s = await setup();
    s.client.socket.end();
    const f = await s.upstream.next((x) => x.opcode === CLOSE);
    assert.deepEqual(closeOf(f), { code: 1001, reason: 'client went away' });
    s.upstream.send(frame(CLOSE, closePayload(1001), { mask: false }));
    assert.deepEqual(await s.done, { closedBy: 'client', reason: 'end without close frame' });
  });

  void it('both sockets reset at once: done runs once', async () => {
    const s = await setup();
    s.client.socket.resetAndDestroy();
    s.upstream.socket.resetAndDestroy();
    await s.done;
    await sleep(100);
    assert.equal(s.ends.length, 1);
  });
});
