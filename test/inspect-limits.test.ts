import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { eventually, startGateway, withGateway } from './helpers.js';
import { closeOf, closePayload, frame, inspectConfig, rawClient, rawUpstream, sleep, type RawPeer } from './inspect-fixtures.js';

// Two limits of the inspect relay, closed:
// - A rule broken inside a frame that began in an earlier read: the offender
//   gets its close code and the innocent peer a Close of its own, not a cut.
//   A partial header or control frame is held back until it is whole, and a
//   text frame found invalid halfway is finished with bytes no endpoint takes
//   as UTF-8, so a Close can follow it.
// - The message that crosses messageRate is not forwarded: it is charged when
//   its first frame arrives, and cut before that frame.

const TEXT = 0x1;
const BIN = 0x2;
const CONT = 0x0;
const CLOSE = 0x8;

/** The upstream gets a Close with `code` (then answers it); returns every frame it got before. */
async function upstreamGetsClose(upstream: RawPeer, code: number): Promise<void> {
  const f = await upstream.next((x) => x.opcode === CLOSE);
  assert.equal(closeOf(f).code, code, `${closeOf(f).reason}; frames: ${upstream.describe()}`);
  upstream.send(frame(CLOSE, closePayload(code), { mask: false }));
  await upstream.ended();
}

async function clientGetsClose(client: RawPeer, code: number): Promise<void> {
  const close = await client.closeFrame();
  assert.equal(close.code, code, close.reason);
  await client.ended();
}

/** `bytes` in two writes; the first is awaited at the upstream when it is forwarded whole (`forwarded`). */
async function sendInTwo(client: RawPeer, upstream: RawPeer, bytes: Buffer, at: number, forwarded: boolean): Promise<void> {
  const before = upstream.receivedBytes;
  client.send(bytes.subarray(0, at));
  // Held back (a partial header), it cannot be awaited upstream: a pause makes two reads likely, and
  // the outcome must be the same either way.
  if (forwarded) await upstream.receivedAtLeast(before + at);
  else await sleep(50);
  client.send(bytes.subarray(at));
}

void describe('inspect relay: a rule broken inside a frame begun in an earlier read', () => {
  const fx = withGateway(rawUpstream, (up) => inspectConfig([up.url], 'maxMessageBytes: 1KiB', 'validateUtf8: true'));

  const textCases: [string, Buffer, number][] = [
    // [name, frames, where the second write starts]
    [
      'invalid UTF-8 in a later read of a text frame',
      frame(TEXT, Buffer.concat([Buffer.from('hello wörld'), Buffer.from([0xff]), Buffer.from('tail')])),
      6 + 8,
    ],
    [
      'invalid UTF-8 in a later read of a fragment',
      Buffer.concat([frame(TEXT, Buffer.concat([Buffer.from('hello '), Buffer.from([0xc0, 0xaf]), Buffer.from('x')]), { fin: false }), frame(CONT, 'end')]),
      6 + 4,
    ],
    ['a character cut at the end of a final frame begun earlier', frame(TEXT, Buffer.concat([Buffer.from('price: '), Buffer.from('€').subarray(0, 2)])), 6 + 3],
  ];
  for (const [name, bytes, at] of textCases) {
    void it(`${name} → 1007 to the client, 1001 to the upstream after a frame it cannot take as text`, async () => {
      const n = fx.backend.peers.length;
      const client = await rawClient(fx.gw.port);
      const upstream = await fx.backend.peer(n);
      await sendInTwo(client, upstream, bytes, at, true);
      await Promise.all([clientGetsClose(client, 1007), upstreamGetsClose(upstream, 1001)]);
      // The frame begun earlier was finished, with a byte that is not UTF-8: no endpoint takes it as text.
      const data = upstream.frames.filter((f) => f.opcode !== CLOSE);
      assert.equal(data.length, 1, upstream.describe());
      assert.equal(isUtf8(data[0]!.payload), false);
      await eventually(() => fx.gw.logs.some((l) => l.msg === 'session closed' && String(l.reason).includes('1007')), 5_000, 'access log');
    });
  }

  const headerCases: [string, Buffer, number, number][] = [
    // [name, frame, split offset, close code]
    ['a header announcing more than maxMessageBytes, split in two', frame(BIN, Buffer.alloc(2000)), 3, 1009],
    ['a 64-bit length with the top bit set, split in two', Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]), 4, 1002],
    ['a header with a reserved opcode, one byte then the rest', frame(0x3, 'x'), 1, 1002],
    ['a Close frame with code 999, split inside its payload', frame(CLOSE, closePayload(999, 'bad')), 7, 1002],
    ['a Close frame with a reason not UTF-8, split in its header', frame(CLOSE, Buffer.concat([closePayload(1000), Buffer.from([0xed, 0xa0, 0x80])])), 2, 1007],
  ];
  for (const [name, bad, at, code] of headerCases) {
    void it(`${name} → ${code} to the client, 1001 to the upstream, nothing of the frame forwarded`, async () => {
      const n = fx.backend.peers.length;
      const client = await rawClient(fx.gw.port);
      const upstream = await fx.backend.peer(n);
      const good = frame(TEXT, 'before');
      client.send(good);
      await upstream.next((f) => f.opcode === TEXT);
      await sendInTwo(client, upstream, bad, at, false);
      await Promise.all([clientGetsClose(client, code), upstreamGetsClose(upstream, 1001)]);
      assert.deepEqual(
        upstream.frames.map((f) => f.opcode),
        [TEXT, CLOSE],
      );
    });
  }

  void it('an upstream frame header broken in a later read → 1002 to the upstream, 1011 to the client', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    // A masked server frame: the mask bit is in the second byte.
    const bad = frame(TEXT, 'masked', { mask: true });
    upstream.send(bad.subarray(0, 1));
    await sleep(50);
    upstream.send(bad.subarray(1));
    const toUp = await upstream.next((f) => f.opcode === CLOSE);
    assert.equal(closeOf(toUp).code, 1002);
    assert.equal((await client.closeFrame()).code, 1011);
    assert.deepEqual(
      client.frames.map((f) => f.opcode),
      [CLOSE],
    );
    client.send(frame(CLOSE, closePayload(1011)));
    await Promise.all([client.ended(), upstream.ended()]);
  });

  void it('a gateway Close toward a peer that sent half a header goes out at once, before it', async () => {
    const g = await startGateway(inspectConfig([fx.backend.url], '', 'validateUtf8: true'));
    try {
      const n = fx.backend.peers.length;
      const client = await rawClient(g.port);
      const upstream = await fx.backend.peer(n);
      client.send(frame(TEXT, 'x').subarray(0, 1));
      await sleep(50);
      // Shutdown: both peers get 1001 now, though the client never finishes its header.
      const stopped = g.close();
      await Promise.all([clientGetsClose(client, 1001), upstreamGetsClose(upstream, 1001)]);
      await stopped;
      assert.equal(upstream.frames.length, 1, upstream.describe());
    } finally {
      await g.close();
    }
  });
});

void describe('inspect relay: a text frame invalid halfway and too long to finish', () => {
  const fx = withGateway(rawUpstream, (up) => inspectConfig([up.url], 'maxMessageBytes: 4MiB', 'validateUtf8: true'));

  void it('more than 64 KiB left in it: the client gets 1007, the upstream is cut', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    const payload = Buffer.alloc(200_000, 0x61);
    payload[100] = 0xff;
    const bytes = frame(TEXT, payload);
    await sendInTwo(client, upstream, bytes, 14 + 50, true);
    await clientGetsClose(client, 1007);
    await upstream.ended();
    assert.equal(upstream.frames.length, 0);
  });
});

void describe('inspect relay: the message that crosses messageRate', () => {
  const fx = withGateway(rawUpstream, (up) => inspectConfig([up.url], 'messageRate: 10/s'));

  void it('messageRate + 1 messages at once: exactly messageRate reach the upstream, the client gets 1008', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    client.send(Buffer.concat(Array.from({ length: 11 }, (_, i) => frame(TEXT, `m${i}`))));
    await Promise.all([clientGetsClose(client, 1008), upstreamGetsClose(upstream, 1001)]);
    assert.deepEqual(
      upstream.frames.filter((f) => f.opcode === TEXT).map((f) => f.payload.toString()),
      Array.from({ length: 10 }, (_, i) => `m${i}`),
    );
  });

  void it('a fragmented message over the rate: none of its fragments is forwarded', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    const within = Array.from({ length: 10 }, (_, i) => frame(BIN, Buffer.from([i])));
    const over = [frame(TEXT, 'first ', { fin: false }), frame(CONT, 'last')];
    client.send(Buffer.concat([...within, over[0]!]));
    await sleep(20);
    client.send(over[1]!);
    await Promise.all([clientGetsClose(client, 1008), upstreamGetsClose(upstream, 1001)]);
    const data = upstream.frames.filter((f) => f.opcode !== CLOSE);
    assert.equal(data.length, 10, upstream.describe());
    assert.ok(data.every((f) => f.opcode === BIN));
  });
});
