import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import { inspectCoreSessions, NATIVE_INSPECT, type NativeInspect } from '../src/relay/native-inspect.js';
import { nativeModule } from '../src/relay/native-module.js';
import { eventually, openClient, startBackend, startGateway } from './helpers.js';
import { closeOf, closePayload, frame, inspectConfig, sleep, type Frame } from './inspect-fixtures.js';
import { answerCloses, bothWays, pairSession, sameBothWays, type Outcome, type PairSession } from './inspect-pair-fixtures.js';

// Inspect mode on the native core (native/inspect.c) against the JavaScript
// relay: every case runs through both, on real sockets, and both must show
// the same — the bytes each peer received, the verdict (who ended the
// session, the close code and reason), the relay's counters and the
// metrics tally. test/js-inspect.test.ts runs the gateway-level inspect
// tests again with WSGATE_INSPECT_CORE=js.

const CONT = 0x0;
const TEXT = 0x1;
const BIN = 0x2;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

const skip = !NATIVE_INSPECT && 'the native core is not built, or WSGATE_INSPECT_CORE=js';

/** A fixed mask key: the two runs must send the same bytes. */
const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
/** A client frame (masked with KEY). */
function cf(opcode: number, payload: Buffer | string = '', spec: { fin?: boolean; rsv1?: boolean } = {}): Buffer {
  return frame(opcode, payload, { ...spec, mask: KEY });
}
/** An upstream frame (unmasked). */
function uf(opcode: number, payload: Buffer | string = '', spec: { fin?: boolean; rsv1?: boolean } = {}): Buffer {
  return frame(opcode, payload, { ...spec, mask: false });
}

/** The close code a peer received last (or 0). */
function lastClose(hex: string): number {
  const bytes = Buffer.from(hex, 'hex');
  const at = bytes.lastIndexOf(0x88);
  return at >= 0 && at + 4 <= bytes.length ? bytes.readUInt16BE(at + 2) : 0;
}

/** Sends `bytes` from the client, then once more, split at `at`, in two reads. */
async function inTwo(s: PairSession, bytes: Buffer, at: number, from: 'client' | 'upstream' = 'client'): Promise<void> {
  const send = from === 'client' ? s.fromClient : s.fromUpstream;
  await send(bytes.subarray(0, at));
  await send(bytes.subarray(at));
}

void describe('native inspect core: violations, as the JavaScript relay judges them', { skip }, () => {
  // [name, bytes from the client, close code, errorCode in the reason]
  const clientCases: [string, Buffer, number, string][] = [
    ['an unmasked client frame', frame(TEXT, 'hi', { mask: false }), 1002, 'MASK_REQUIRED'],
    ['reserved opcode 0x3', cf(0x3, 'x'), 1002, 'RESERVED_OPCODE'],
    ['reserved control opcode 0xb', cf(0xb), 1002, 'RESERVED_OPCODE'],
    ['a fragmented ping', cf(PING, 'p', { fin: false }), 1002, 'CONTROL_FRAGMENTED'],
    ['a ping over 125 bytes', cf(PING, Buffer.alloc(126)), 1002, 'CONTROL_TOO_LONG'],
    ['close code 1005 on the wire', cf(CLOSE, closePayload(1005)), 1002, 'INVALID_CLOSE_CODE'],
    ['close code 999', cf(CLOSE, closePayload(999, 'why')), 1002, 'INVALID_CLOSE_CODE'],
    ['a one-byte Close payload', cf(CLOSE, Buffer.from([3])), 1002, 'CLOSE_PAYLOAD_ONE_BYTE'],
    ['a close reason not UTF-8', cf(CLOSE, Buffer.concat([closePayload(1000), Buffer.from([0xed, 0xa0, 0x80])])), 1007, 'INVALID_CLOSE_REASON'],
    ['RSV1 without permessage-deflate', cf(TEXT, 'x', { rsv1: true }), 1002, 'RSV1_NOT_NEGOTIATED'],
    ['RSV2', Buffer.from([0xa1, 0x81, ...KEY, 0x78 ^ KEY[0]!]), 1002, 'RSV2_RSV3_SET'],
    ['RSV1 on a ping', cf(PING, 'x', { rsv1: true }), 1002, 'RSV1_ON_CONTROL'],
    ['a continuation without a message', cf(CONT, 'x'), 1002, 'UNEXPECTED_CONTINUATION'],
    ['a new message inside a fragmented one', Buffer.concat([cf(TEXT, 'a', { fin: false }), cf(PING, 'mid'), cf(BIN, 'b')]), 1002, 'MESSAGE_IN_PROGRESS'],
    ['RSV1 on a continuation', Buffer.concat([cf(BIN, 'a', { fin: false }), cf(CONT, 'b', { rsv1: true })]), 1002, 'RSV1_ON_CONTINUATION'],
    ['a 64-bit length with the top bit set', Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, ...KEY]), 1002, 'LENGTH_MSB_SET'],
    ['a length of 2^53', Buffer.from([0x82, 0xff, 0, 0x20, 0, 0, 0, 0, 0, 0, ...KEY]), 1009, 'LENGTH_UNSUPPORTED'],
    ['a message of maxMessageBytes + 1', cf(BIN, Buffer.alloc(1001, 7)), 1009, 'MESSAGE_TOO_BIG'],
    [
      'fragments adding up to maxMessageBytes + 1',
      Buffer.concat([cf(BIN, Buffer.alloc(500, 1), { fin: false }), cf(PING, 'between'), cf(CONT, Buffer.alloc(501, 2))]),
      1009,
      'MESSAGE_TOO_BIG',
    ],
  ];

  for (const [name, bad, code, rule] of clientCases) {
    void it(`${name} → ${code} (${rule}): the same verdict, bytes and counters, in one read and split at every byte`, async () => {
      const whole = await sameBothWays({ maxMessageBytes: 1000 }, async (s) => {
        answerCloses(s);
        await s.fromClient(cf(TEXT, 'before'));
        await s.fromClient(bad);
      });
      assert.equal(whole.end.code, code, whole.end.reason);
      assert.match(whole.end.reason, new RegExp(`\\(${rule}\\)`));
      assert.equal(whole.end.closedBy, 'client');
      assert.equal(lastClose(whole.toClient), code);
      assert.ok(whole.toUpstream.startsWith(cf(TEXT, 'before').toString('hex')), 'the message before reached the upstream');
      for (let at = 1; at < Math.min(bad.length, 24); at++) {
        const split = await sameBothWays({ maxMessageBytes: 1000 }, async (s) => {
          answerCloses(s);
          await s.fromClient(cf(TEXT, 'before'));
          await inTwo(s, bad, at);
        });
        assert.deepEqual(split.end, whole.end, `split at ${at}`);
      }
    });
  }

  void it('a message of exactly maxMessageBytes passes, whole or in fragments', async () => {
    const out = await sameBothWays({ maxMessageBytes: 1000 }, async (s) => {
      answerCloses(s);
      await s.fromClient(cf(BIN, Buffer.alloc(1000, 5)));
      await s.fromClient(Buffer.concat([cf(TEXT, 'a'.repeat(600), { fin: false }), cf(PONG, 'x'), cf(CONT, 'b'.repeat(400))]));
      await s.fromClient(cf(CLOSE, closePayload(1000, 'done')));
    });
    assert.deepEqual(out.end, { closedBy: 'client', reason: 'close 1000', code: 1000 });
    assert.equal(out.counters.messagesFromClient, 2);
  });

  void it('an upstream that breaks a rule gets its code, the client 1011', async () => {
    for (const bad of [frame(TEXT, 'masked', { mask: KEY }), uf(0x4), uf(CONT, 'x'), uf(PING, Buffer.alloc(126))]) {
      const out = await sameBothWays({}, async (s) => {
        answerCloses(s);
        await s.fromUpstream(uf(TEXT, 'fine'));
        await inTwo(s, bad, 1, 'upstream');
      });
      assert.equal(out.end.closedBy, 'upstream');
      assert.equal(lastClose(out.toClient), 1011);
    }
  });

  void it('messageRate: exactly the rate passes, the message over it is cut before its first byte (both directions)', async () => {
    const client = await sameBothWays({ messageRate: 10 }, async (s) => {
      answerCloses(s);
      await s.fromClient(Buffer.concat(Array.from({ length: 11 }, (_, i) => cf(TEXT, `m${i}`))));
    });
    assert.equal(client.end.code, 1008);
    assert.equal(client.end.reason, 'message rate exceeded 1008: more than 10 messages per second');
    const upstream = await sameBothWays({ upstreamMessageRate: 5 }, async (s) => {
      answerCloses(s);
      await s.fromUpstream(Buffer.concat([...Array.from({ length: 5 }, (_, i) => uf(BIN, `p${i}`)), uf(TEXT, 'over', { fin: false }), uf(CONT, 'x')]));
    });
    assert.equal(upstream.end.reason, 'message rate exceeded 1008: more than 5 messages per second');
    assert.equal(upstream.counters.messagesFromUpstream, 6, 'the message over the rate still counts');
  });
});

void describe('native inspect core: frames through unchanged', { skip }, () => {
  const stream = Buffer.concat([
    cf(TEXT, 'short'),
    cf(BIN, Buffer.alloc(300, 7)), // 16-bit length
    cf(BIN, randomBytes(70_000)), // 64-bit length
    cf(PING, 'between'),
    cf(TEXT, 'part one ', { fin: false }),
    cf(PING, 'inside'),
    cf(PONG, Buffer.concat([Buffer.from('wsgate'), Buffer.from([0, 0, 0, 9])])), // a pong to the gateway: left out
    cf(PONG, 'unsolicited'),
    cf(CONT, 'part two', { fin: false }),
    cf(CONT, Buffer.alloc(0)),
  ]);
  const back = Buffer.concat([uf(TEXT, 'from upstream'), uf(BIN, Buffer.alloc(200, 3)), uf(PING, 'up'), uf(BIN, randomBytes(66_000))]);

  void it('a stream of frames cut in two at each of its first 40 bytes and around every frame boundary, both ways', async () => {
    const cuts = new Set<number>();
    for (let k = 1; k < 40; k++) cuts.add(k);
    for (let p = 0, i = 0; p < stream.length && i < 12; i++) {
      const len7 = stream[p + 1]! & 0x7f;
      const n = len7 === 126 ? stream.readUInt16BE(p + 2) : len7 === 127 ? Number(stream.readBigUInt64BE(p + 2)) : len7;
      p += 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + 4 + n;
      for (const d of [-2, -1, 0, 1, 3, 7]) if (p + d > 0 && p + d < stream.length) cuts.add(p + d);
    }
    for (const at of cuts) {
      const out = await sameBothWays({ tally: null }, async (s) => {
        answerCloses(s);
        await inTwo(s, stream, at);
        await inTwo(s, back, Math.min(at, back.length - 1), 'upstream');
        await s.fromClient(cf(CLOSE, closePayload(1000)));
      });
      assert.equal(out.counters.messagesFromClient, 4, `cut at ${at}`);
      assert.equal(out.counters.messagesFromUpstream, 3);
      const sent = stream.toString('hex');
      const gatewayPong = cf(PONG, Buffer.concat([Buffer.from('wsgate'), Buffer.from([0, 0, 0, 9])])).toString('hex');
      assert.ok(out.toUpstream.startsWith(sent.replace(gatewayPong, '')), `cut at ${at}: the stream minus the gateway's pong`);
    }
  });

  void it('every header, and every control frame, one byte per read', async () => {
    const frames = [
      cf(TEXT, 'short'),
      cf(BIN, Buffer.alloc(300, 7)),
      cf(BIN, randomBytes(70_000)),
      cf(TEXT, 'part one ', { fin: false }),
      cf(PING, 'inside'),
      cf(PONG, Buffer.concat([Buffer.from('wsgate'), Buffer.from([0, 0, 0, 9])])),
      cf(CONT, 'part two'),
    ];
    await sameBothWays({}, async (s) => {
      answerCloses(s);
      for (const f of frames) {
        const control = (f[0]! & 0x08) !== 0;
        const head = control ? f.length : 2 + ((f[1]! & 0x7f) === 126 ? 2 : (f[1]! & 0x7f) === 127 ? 8 : 0) + 4;
        for (let i = 0; i < head; i++) await s.fromClient(f.subarray(i, i + 1));
        if (head < f.length) await s.fromClient(f.subarray(head));
      }
      s.client.socket.end();
    });
  });

  void it('bytes read ahead during the handshake go through the trackers, and count', async () => {
    const out = await sameBothWays(
      {},
      async (s) => {
        answerCloses(s);
        await s.client.next((f) => f.opcode === TEXT);
        s.upstream.socket.end();
      },
      { toClient: uf(TEXT, 'early down'), toUpstream: Buffer.concat([cf(TEXT, 'early up'), cf(BIN, 'and more')]) },
    );
    assert.equal(out.counters.messagesFromClient, 2);
    assert.equal(out.counters.messagesFromUpstream, 1);
    assert.deepEqual(out.end, { closedBy: 'upstream', reason: 'end without close frame' });
  });

  void it('message sizes reach the metrics tally, bucket by bucket', async () => {
    const out = await sameBothWays({}, async (s) => {
      answerCloses(s);
      for (const n of [0, 64, 65, 256, 1000, 5000, 70_000]) await s.fromClient(cf(BIN, Buffer.alloc(n)));
      await s.fromUpstream(uf(TEXT, Buffer.alloc(300, 0x61)));
      await s.fromClient(cf(CLOSE, closePayload(1000)));
    });
    assert.deepEqual(out.tally.upstreamSizes, [2, 2, 1, 0, 1, 0, 1, 0, 0, 0 + 64 + 65 + 256 + 1000 + 5000 + 70_000]);
    assert.deepEqual(out.tally.downstreamSizes, [0, 0, 1, 0, 0, 0, 0, 0, 0, 300]);
  });
});

void describe('native inspect core: UTF-8 (validateUtf8)', { skip }, () => {
  const texts: [string, Buffer][] = [
    ['valid', Buffer.from('añb€c𝄞d ünïcödé ✓')],
    ['an invalid byte', Buffer.from([0x61, 0xff, 0x62])],
    ['an overlong 2-byte form', Buffer.from([0x61, 0xc0, 0xaf, 0x62])],
    ['an overlong 3-byte form', Buffer.from([0x61, 0x62, 0xe0, 0x80, 0x80, 0x63, 0x64])],
    ['a surrogate', Buffer.from([0x61, 0xed, 0xa0, 0x80, 0x62])],
    ['an overlong 4-byte form', Buffer.from([0x61, 0xf0, 0x80, 0x80, 0x80, 0x62])],
    ['above U+10FFFF', Buffer.from([0x61, 0xf4, 0x90, 0x80, 0x80])],
    ['a stray continuation byte', Buffer.from([0x61, 0x80, 0x62])],
    ['a character cut at the end', Buffer.from([0x61, 0x62, 0xe2, 0x82])],
    ['a poisoned sequence cut at the end', Buffer.from([0x61, 0xf0, 0x80, 0x80])],
    ['a sequence broken by ASCII', Buffer.from([0x61, 0xe2, 0x82, 0x41])],
  ];
  for (const [name, text] of texts) {
    void it(`text with ${name}, cut into fragments and reads anywhere: the same verdict and bytes`, async () => {
      let verdict: Outcome['end'] | undefined;
      for (let cut = 0; cut <= text.length; cut++) {
        const frames = [cf(TEXT, text.subarray(0, cut), { fin: false }), cf(PING, 'p'), cf(CONT, text.subarray(cut))];
        const bytes = Buffer.concat(frames);
        for (const at of [0, frames[0]!.length - 1, frames[0]!.length + 3, bytes.length - 2]) {
          const out = await sameBothWays({ validateUtf8: true }, async (s) => {
            answerCloses(s);
            await s.fromClient(cf(TEXT, 'ok'));
            if (at > 0) await inTwo(s, bytes, at);
            else await s.fromClient(bytes);
            if (name === 'valid') await s.fromClient(cf(CLOSE, closePayload(1000)));
          });
          if (name === 'valid') assert.equal(out.end.code, 1000);
          else assert.equal(out.end.code, 1007, `${name}, fragment cut at ${cut}, read cut at ${at}: ${out.end.reason}`);
          verdict ??= out.end;
          assert.deepEqual(out.end, verdict);
        }
      }
    });
  }

  void it('a long text frame found invalid in a later read is padded so no endpoint takes it as text; over 64 KiB left, the upstream is cut', async () => {
    for (const size of [5_000, 200_000]) {
      const payload = Buffer.alloc(size, 0x61);
      payload[size - 100] = 0xff;
      const bytes = cf(TEXT, payload);
      // How much padding is owed depends on where the kernel split the rest into reads, on
      // either path: the verdict, what the client gets and the counters must agree.
      const { js, native } = await bothWays({ validateUtf8: true }, async (s) => {
        answerCloses(s);
        await inTwo(s, bytes, 64);
      });
      for (const out of [js, native]) {
        assert.equal(out.end.code, 1007);
        const up = Buffer.from(out.toUpstream.replace(/close\([0-9a-f]*\)/, ''), 'hex');
        assert.ok(up.subarray(0, 64).equals(bytes.subarray(0, 64)), 'the frame begun in the first read');
        // Padded (its first byte unmasks to 0xFF) or cut short: never the bad frame as sent.
        assert.ok(up.length <= bytes.length && !up.equals(bytes), 'never the whole bad frame');
      }
      assert.deepEqual([native.end, native.toClient, native.counters], [js.end, js.toClient, js.counters]);
    }
  });
});

void describe('native inspect core: the gateway ends sessions', { skip }, () => {
  void it('close(reason, 1012): 1012 both ways, both answers awaited; the same bytes and verdict', async () => {
    const out = await sameBothWays({}, async (s) => {
      answerCloses(s);
      await s.fromClient(cf(TEXT, 'hello'));
      await s.upstream.next((f) => f.opcode === TEXT);
      s.relay.close('target drain', 1012);
    });
    assert.deepEqual(out.end, { closedBy: 'gateway', reason: 'target drain', code: 1012 });
    assert.equal(lastClose(out.toClient), 1012);
  });

  void it('close() while the upstream is mid-frame: the Close waits for the boundary; nothing after it', async () => {
    const big = uf(BIN, randomBytes(5000));
    const out = await sameBothWays({}, async (s) => {
      await s.fromUpstream(big.subarray(0, 1000));
      await s.client.receivedAtLeast(1000);
      s.relay.close('shutdown');
      await sleep(30);
      assert.equal(s.client.receivedBytes, 1000, `${s.core}: the Close waits for the frame boundary`);
      // The upstream finishes its frame and sends one more (it has not read the gateway's Close yet), then answers.
      s.upstream.send(Buffer.concat([big.subarray(1000), uf(TEXT, 'too late')]));
      answerCloses(s);
    });
    assert.equal(out.end.code, 1001);
    assert.equal(out.toClient.length / 2, big.length + 2 + 2 + 'shutdown'.length);
  });

  void it('maxLifetime: 1001 both ways', async () => {
    const out = await sameBothWays({ maxLifetime: 200 }, async (s) => {
      answerCloses(s);
      await s.fromClient(cf(TEXT, 'x'));
    });
    assert.deepEqual(out.end, { closedBy: 'gateway', reason: 'max lifetime', code: 1001 });
  });

  void it('a client that hangs up without a Close; an upstream reset; both reset at once', async () => {
    const hangUp = await sameBothWays({}, async (s) => {
      answerCloses(s);
      s.client.socket.end();
    });
    assert.deepEqual(hangUp.end, { closedBy: 'client', reason: 'end without close frame' });
    const reset = await sameBothWays({}, async (s) => {
      answerCloses(s);
      await s.fromClient(cf(TEXT, 'x'));
      s.upstream.socket.resetAndDestroy();
    });
    assert.deepEqual(reset.end, { closedBy: 'upstream', reason: 'reset' });
    assert.equal(lastClose(reset.toClient), 1011);
    const { js, native } = await bothWays({}, async (s) => {
      s.client.socket.resetAndDestroy();
      s.upstream.socket.resetAndDestroy();
      await Promise.resolve();
    });
    assert.equal(native.end.reason, js.end.reason);
  });

  void it('a client that never answers the Close is cut after the close timeout', async () => {
    const out = await sameBothWays({}, async (s) => {
      s.relay.close('shutdown');
      const f = await s.upstream.next((x) => x.opcode === CLOSE);
      s.upstream.send(uf(CLOSE, f.payload.subarray(0, 2)));
      s.upstream.socket.end();
    });
    assert.deepEqual(out.end, { closedBy: 'gateway', reason: 'shutdown', code: 1001 });
  });
});

void describe('native inspect core: keepalive', { skip }, () => {
  const pings = (frames: Frame[]): number => frames.filter((f) => f.opcode === PING).length;

  void it('a client that answers is kept, its pongs never reach the upstream; one that does not gets 1001 after pongTimeout', async () => {
    for (const core of ['js', 'native'] as const) {
      const s = await pairSession(core, { pingInterval: 150, pongTimeout: 200 });
      s.relay.active = false;
      let answered = 0;
      const timer = setInterval(() => {
        for (const f of s.client.frames.slice(answered)) {
          answered++;
          if (f.opcode === PING) s.client.send(cf(PONG, f.payload));
        }
      }, 10);
      await sleep(900);
      clearInterval(timer);
      assert.equal(s.client.closed, false, core);
      assert.ok(pings(s.client.frames) >= 2, `${core}: ${s.client.describe()}`);
      assert.equal(s.upstream.frames.filter((f) => f.opcode === PONG).length, 0, `${core}: no pong upstream`);
      assert.ok(s.tally.pingsAnswered >= 1, core);
      assert.equal(s.relay.active, false, `${core}: pongs to the gateway are not traffic`);
      // Now silent: pinged, then 1001 both ways.
      answerCloses(s);
      const end = await s.done;
      assert.deepEqual(end, { closedBy: 'gateway', reason: 'no pong within 200ms', code: 1001 }, core);
      assert.equal(closeOf(await s.client.next((f) => f.opcode === CLOSE)).code, 1001);
      assert.equal(s.tally.pingsTimedOut, 1);
      s.client.socket.destroy();
      s.upstream.socket.destroy();
    }
  });

  void it('a ping never lands inside an upstream frame', async () => {
    const big = uf(BIN, randomBytes(1000));
    const out = await sameBothWays({ pingInterval: 100, pongTimeout: 5_000 }, async (s) => {
      await s.fromUpstream(big.subarray(0, 500));
      await sleep(250);
      await s.fromUpstream(big.subarray(500));
      await s.client.next((f) => f.opcode === PING);
      answerCloses(s);
      await s.fromClient(cf(CLOSE, closePayload(1000)));
    });
    const bytes = Buffer.from(out.toClient, 'hex');
    assert.ok(bytes.subarray(0, big.length).equals(big), 'the frame whole, the ping after it');
  });
});

void describe('native inspect core: backpressure', { skip }, () => {
  void it('a client that does not read: the core holds at most one read toward it; everything arrives once it reads', async () => {
    for (const maxBufferedBytes of [16 * 1024, 4 << 20]) {
      const s = await pairSession('native', { maxBufferedBytes });
      const relay = s.relay as NativeInspect;
      s.client.socket.pause();
      const msgs = Array.from({ length: 256 }, () => uf(BIN, randomBytes(64 * 1024)));
      const total = msgs.reduce((n, m) => n + m.length, 0);
      let flooding = true;
      void (async () => {
        for (const m of msgs) {
          if (!s.upstream.socket.write(m)) await new Promise((r) => s.upstream.socket.once('drain', r));
        }
        flooding = false;
      })();
      // Wait until the upstream can write no more: the kernel's buffers and the core are full.
      let last = -1;
      for (let i = 0; i < 200 && relay.bytesFromUpstream !== last; i++) {
        last = relay.bytesFromUpstream;
        await sleep(50);
      }
      assert.ok(flooding, 'the upstream is held back');
      const queued = relay.queued(true);
      assert.ok(queued <= Math.min(65_536, maxBufferedBytes), `${queued} bytes queued toward the client (maxBufferedBytes ${maxBufferedBytes})`);
      s.client.socket.resume();
      await s.client.receivedAtLeast(total, 30_000);
      assert.ok(Buffer.concat(s.client.received).equals(Buffer.concat(msgs)));
      answerCloses(s);
      s.client.send(cf(CLOSE, closePayload(1000)));
      await s.done;
      s.client.socket.destroy();
      s.upstream.socket.destroy();
    }
  });
});

void describe('native inspect core: in the gateway', { skip }, () => {
  void it('plain TCP sessions run in the core; a ws client echoes through it; the session leaves nothing behind', async () => {
    const backend = await startBackend();
    const gw = await startGateway(inspectConfig([backend.url]));
    try {
      await eventually(() => inspectCoreSessions() === 0, 5_000, `no sessions left in the core from earlier tests (${inspectCoreSessions()})`);
      const before = inspectCoreSessions();
      const ws = await openClient(gw.url);
      await eventually(() => inspectCoreSessions() === before + 1, 5_000, 'a session in the core');
      const got: string[] = [];
      ws.on('message', (m: Buffer) => got.push(m.toString()));
      for (let i = 0; i < 50; i++) ws.send(`m${i}`);
      await eventually(() => got.length === 50, 5_000, '50 echoes');
      ws.close(1000, 'bye');
      await eventually(() => inspectCoreSessions() === before, 5_000, 'the session freed');
      const line = gw.logs.find((l) => l.msg === 'session closed');
      assert.equal(line?.messagesIn, 50);
      assert.equal(line?.messagesOut, 50);
      assert.equal(line?.reason, 'close 1000');
    } finally {
      await gw.close();
      await backend.close();
    }
  });

  void it('300 upstreams gone at once: every client hears 1011, and every session is freed (events of up to 128 sessions in one call)', async () => {
    const backend = await startBackend();
    const gw = await startGateway(inspectConfig([backend.url], 'perIp: { maxConnections: 1000, handshakeRate: 10000/s, handshakeBurst: 1000 }'));
    const clients: WebSocket[] = [];
    try {
      await eventually(() => inspectCoreSessions() === 0, 5_000, `no sessions left in the core from earlier tests (${inspectCoreSessions()})`);
      for (let i = 0; i < 300; i++) clients.push(await openClient(gw.url));
      await eventually(() => inspectCoreSessions() === 300, 10_000, '300 sessions in the core');
      const codes = clients.map((ws) => new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code))));
      for (const ws of backend.wss.clients) ws.terminate();
      assert.deepEqual(new Set(await Promise.all(codes)), new Set([1011]));
      await eventually(() => inspectCoreSessions() === 0, 10_000, `every session freed (${inspectCoreSessions()} left)`);
    } finally {
      for (const ws of clients) ws.terminate();
      await gw.close();
      await backend.close();
    }
  });

  void it('refuses bad arguments with an exception, never a crash', { skip: typeof nativeModule() !== 'object' && 'not built' }, () => {
    const core = (nativeModule() as { inspect: Record<string, (...args: unknown[]) => unknown> }).inspect;
    for (const v of [undefined, null, 0, 'session', {}, Buffer.alloc(8)]) {
      for (const fn of ['feed', 'inject', 'canClose', 'shut', 'end', 'destroy', 'probe', 'active', 'stat', 'stats']) {
        assert.throws(() => core[fn]!(v, 0, Buffer.alloc(1), false), /wsgate inspect/, fn);
      }
    }
    const before = core.openSessions!();
    assert.throws(() => core.open!({}, -1, -1, 1024, 0, 0, 0, 0, null, null, 0), /wsgate inspect/);
    assert.throws(() => core.open!(42, 0, 1, 1024, 0, 0, 0, 0, null, null, 0), /wsgate inspect/);
    assert.throws(() => core.open!({}), /wsgate inspect/);
    assert.equal(core.openSessions!(), before);
    assert.throws(() => core.setEvents!('not a function'), /wsgate inspect/);
  });
});
