import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, eventually, withGateway } from './helpers.js';
import { closeOf, closePayload, frame, inspectConfig, rawClient, rawUpstream, sleep, type RawPeer } from './inspect-fixtures.js';

// RFC 6455 §5 through the gateway in inspect mode: a hand-made client (or
// upstream) breaks one rule; the offender must get the right close code, the
// innocent side a Close of its own, and the access log must name the rule.

const TEXT = 0x1;
const BIN = 0x2;
const CONT = 0x0;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

async function expectClosedWith(peer: RawPeer, code: number): Promise<void> {
  const close = await peer.closeFrame();
  assert.equal(close.code, code, `close reason: ${close.reason}`);
  await peer.ended();
}

/** The upstream side of the session must get a Close with `code`, then the connection ends. */
async function upstreamClosedWith(peer: RawPeer, code: number): Promise<void> {
  const f = await peer.next((x) => x.opcode === CLOSE);
  assert.equal(f.masked, true, 'frames toward the upstream are masked');
  assert.equal(closeOf(f).code, code, closeOf(f).reason);
  // Answer the close handshake, as a server would.
  peer.send(frame(CLOSE, closePayload(closeOf(f).code), { mask: false }));
  await peer.ended();
}

void describe('inspect relay: RFC 6455 §5 validation', () => {
  const fx = withGateway(rawUpstream, (up) => inspectConfig([up.url], 'maxMessageBytes: 1KiB'));

  // [name, bytes, close code, rule in the log, valid frames of `bytes` forwarded before the bad one]
  const clientCases: [string, Buffer, number, string, number?][] = [
    ['unmasked client frame', frame(TEXT, 'hi', { mask: false }), 1002, 'MASK_REQUIRED'],
    ['reserved opcode 0x3', frame(0x3, 'x'), 1002, 'RESERVED_OPCODE'],
    ['reserved control opcode 0xb', frame(0xb), 1002, 'RESERVED_OPCODE'],
    ['fragmented control frame', frame(PING, 'p', { fin: false }), 1002, 'CONTROL_FRAGMENTED'],
    ['control frame over 125 bytes', frame(PING, Buffer.alloc(126)), 1002, 'CONTROL_TOO_LONG'],
    ['close code 1005 on the wire', frame(CLOSE, closePayload(1005)), 1002, 'INVALID_CLOSE_CODE'],
    ['close code 999', frame(CLOSE, closePayload(999)), 1002, 'INVALID_CLOSE_CODE'],
    ['RSV1 without permessage-deflate', frame(TEXT, 'x', { rsv1: true }), 1002, 'RSV1_NOT_NEGOTIATED'],
    ['continuation without a message', frame(CONT, 'x'), 1002, 'UNEXPECTED_CONTINUATION'],
    ['new message inside a fragmented one', Buffer.concat([frame(TEXT, 'a', { fin: false }), frame(TEXT, 'b')]), 1002, 'MESSAGE_IN_PROGRESS', 1],
    ['message over maxMessageBytes in one frame', frame(BIN, Buffer.alloc(2000)), 1009, 'MESSAGE_TOO_BIG'],
    [
      'message over maxMessageBytes across fragments',
      Buffer.concat([frame(BIN, Buffer.alloc(400), { fin: false }), frame(CONT, Buffer.alloc(400), { fin: false }), frame(CONT, Buffer.alloc(400))]),
      1009,
      'MESSAGE_TOO_BIG',
      2,
    ],
  ];

  for (const [name, bad, code, rule, forwarded = 0] of clientCases) {
    void it(`${name} → ${code} to the client, 1001 to the upstream, rule logged`, async () => {
      const n = fx.backend.peers.length;
      const client = await rawClient(fx.gw.port);
      const upstream = await fx.backend.peer(n);
      // A valid message first: it must reach the upstream before the Close.
      client.send(frame(TEXT, 'before'));
      await upstream.next((f) => f.opcode === TEXT);
      client.send(bad);
      await Promise.all([expectClosedWith(client, code), upstreamClosedWith(upstream, 1001)]);
      assert.equal(upstream.frames.filter((f) => f.opcode !== CLOSE).length, 1 + forwarded, upstream.describe());
      await eventually(() => fx.gw.logs.some((l) => l.msg === 'session closed' && String(l.reason).includes(rule)), 5_000, `access log with ${rule}`);
    });
  }

  void it('the fragments of a too-big message before the failing header are forwarded, the rest is not', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    client.send(Buffer.concat([frame(BIN, Buffer.alloc(600, 1), { fin: false }), frame(CONT, Buffer.alloc(600, 2))]));
    await Promise.all([expectClosedWith(client, 1009), upstreamClosedWith(upstream, 1001)]);
    const data = upstream.frames.filter((f) => f.opcode !== CLOSE);
    assert.equal(data.length, 1);
    assert.equal(data[0]!.payload.length, 600);
  });

  const upstreamCases: [string, Buffer, number][] = [
    ['masked server frame', frame(TEXT, 'hi', { mask: true }), 1002],
    ['reserved opcode from the upstream', frame(0x4, '', { mask: false }), 1002],
  ];

  void it('maxMessageBytes limits clients only: a large upstream message reaches the client', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    upstream.send(frame(BIN, Buffer.alloc(4000, 3), { mask: false }));
    const got = await client.next((x) => x.opcode === BIN);
    assert.equal(got.payload.length, 4000);
  });
  for (const [name, bad, code] of upstreamCases) {
    void it(`${name} → ${code} to the upstream, 1011 to the client`, async () => {
      const n = fx.backend.peers.length;
      const client = await rawClient(fx.gw.port);
      const upstream = await fx.backend.peer(n);
      upstream.send(bad);
      const f = await upstream.next((x) => x.opcode === CLOSE);
      assert.equal(closeOf(f).code, code);
      const toClient = await client.closeFrame();
      assert.equal(toClient.code, 1011);
      assert.equal(client.frames.length, 1, 'nothing but the Close reached the client');
      client.send(frame(CLOSE, closePayload(1011)));
      await Promise.all([client.ended(), upstream.ended()]);
    });
  }

  void it('a split header that turns out invalid: nothing of it is forwarded, and the upstream gets 1001', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    // A 64-bit length with the top bit set, sent in two parts: the first
    // part is held back until the header is whole (test/inspect-limits.test.ts has more).
    const head = Buffer.concat([Buffer.from([0x82, 0xff, 0x80, 0, 0, 0]), Buffer.from([0, 0, 0, 1]), Buffer.alloc(4)]);
    client.send(head.subarray(0, 4));
    await sleep(50);
    client.send(head.subarray(4));
    await Promise.all([expectClosedWith(client, 1002), upstreamClosedWith(upstream, 1001)]);
    assert.equal(upstream.frames.length, 1);
  });
});

void describe('inspect relay: bytes through unchanged', () => {
  const fx = withGateway(rawUpstream, (up) => inspectConfig([up.url]));

  void it('headers split at every byte offset reach the upstream byte for byte', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    const frames = [
      frame(TEXT, 'short'),
      frame(BIN, Buffer.alloc(300, 7)), // 16-bit length
      frame(BIN, Buffer.alloc(70_000, 9)), // 64-bit length
      frame(PING, 'between'),
      frame(TEXT, 'part one ', { fin: false }),
      frame(PING, 'inside'),
      frame(CONT, 'part two'),
    ];
    // The whole sequence (a fragmented message included) once per split offset.
    const sent: Buffer[] = [];
    for (let k = 1; k < 14; k++) {
      for (const f of frames) {
        client.send(f.subarray(0, k));
        await sleep(3);
        client.send(f.subarray(k));
        sent.push(f);
      }
    }
    // One byte per write, too.
    for (const f of frames.slice(0, 2)) {
      for (let i = 0; i < f.length && i < 20; i++) {
        client.send(f.subarray(i, i + 1));
        await sleep(1);
      }
      client.send(f.subarray(20));
      sent.push(f);
    }
    const expected = Buffer.concat(sent);
    await upstream.receivedAtLeast(expected.length, 15_000).catch((e: Error) => {
      throw new Error(`${e.message}; ${JSON.stringify(fx.gw.logs.slice(-3))}`);
    });
    assert.ok(Buffer.concat(upstream.received).equals(expected), 'identical bytes upstream');
    // And back: the upstream's frames reach the client unchanged, split anyhow.
    const back = Buffer.concat([frame(TEXT, 'from upstream', { mask: false }), frame(BIN, Buffer.alloc(200, 3), { mask: false })]);
    for (let k = 1; k < back.length; k += 7) {
      upstream.send(back.subarray(0, k));
      await sleep(2);
      upstream.send(back.subarray(k));
    }
    const want = Math.ceil((back.length - 1) / 7) * back.length;
    await client.receivedAtLeast(want);
    assert.ok(Buffer.concat(client.received).equals(Buffer.concat(Array.from({ length: want / back.length }, () => back))));
  });

  void it('pings between fragments are forwarded; the message arrives whole', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    client.send(
      Buffer.concat([
        frame(TEXT, 'Hel', { fin: false }),
        frame(PING, 'p1'),
        frame(CONT, 'lo ', { fin: false }),
        frame(PONG, 'unsolicited'),
        frame(CONT, 'world'),
      ]),
    );
    await upstream.next((f) => f.opcode === CONT && f.fin);
    assert.deepEqual(
      upstream.frames.map((f) => [f.opcode, f.payload.toString()]),
      [
        [TEXT, 'Hel'],
        [PING, 'p1'],
        [CONT, 'lo '],
        [PONG, 'unsolicited'],
        [CONT, 'world'],
      ],
    );
    // The upstream answers the ping; the pong reaches the client.
    upstream.send(frame(PONG, 'p1', { mask: false }));
    const pong = await client.next((f) => f.opcode === PONG);
    assert.equal(pong.payload.toString(), 'p1');
  });
});

void describe('inspect relay: messageRate', () => {
  const fx = withGateway(rawUpstream, (up) => inspectConfig([up.url], 'messageRate: 20/s'));

  void it('a burst within the rate passes; a flood gets 1008, the upstream 1001', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    client.send(Buffer.concat(Array.from({ length: 10 }, (_, i) => frame(TEXT, `m${i}`))));
    await upstream.next((f) => f.payload.toString() === 'm9');
    await sleep(600); // refills the bucket
    client.send(Buffer.concat(Array.from({ length: 100 }, (_, i) => frame(TEXT, `flood${i}`))));
    await Promise.all([expectClosedWith(client, 1008), upstreamClosedWith(upstream, 1001)]);
    const flood = upstream.frames.filter((f) => f.payload.toString().startsWith('flood')).length;
    assert.ok(flood >= 1 && flood < 100, `${flood} flood messages forwarded`);
    await eventually(() => fx.gw.logs.some((l) => l.msg === 'session closed' && String(l.reason).includes('messages per second')), 5_000);
  });

  void it('messageRate limits clients only: an upstream burst reaches the client', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    upstream.send(Buffer.concat(Array.from({ length: 100 }, (_, i) => frame(TEXT, `push${i}`, { mask: false }))));
    await client.next((f) => f.payload.toString() === 'push99');
    assert.equal(client.closed, false);
  });

  void it('upstreamMessageRate limits the upstream: a flood gets 1008, its client 1011', async () => {
    const g = await startGateway(inspectConfig([fx.backend.url], 'upstreamMessageRate: 20/s'));
    try {
      const n = fx.backend.peers.length;
      const client = await rawClient(g.port);
      const upstream = await fx.backend.peer(n);
      upstream.send(Buffer.concat(Array.from({ length: 100 }, (_, i) => frame(TEXT, `push${i}`, { mask: false }))));
      const f = await upstream.next((x) => x.opcode === CLOSE);
      assert.equal(closeOf(f).code, 1008);
      assert.equal((await client.closeFrame()).code, 1011);
    } finally {
      await g.close();
    }
  });

  void it('a client within the rate for a while is not closed', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    for (let i = 0; i < 15; i++) {
      client.send(frame(TEXT, `slow${i}`));
      await sleep(60); // ~16/s
    }
    await upstream.next((f) => f.payload.toString() === 'slow14');
    assert.equal(client.frames.length, 0);
    assert.equal(client.closed, false);
  });
});
