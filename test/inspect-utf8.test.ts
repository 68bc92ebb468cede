import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { Utf8Stream } from '../src/relay/utf8-stream.js';
import { withGateway } from './helpers.js';
import { closeOf, closePayload, frame, inspectConfig, rawClient, rawUpstream } from './inspect-fixtures.js';

const TEXT = 0x1;
const BIN = 0x2;
const CONT = 0x0;
const CLOSE = 0x8;

function masked(data: Buffer, key: Buffer): Buffer {
  const out = Buffer.from(data);
  for (let i = 0; i < out.length; i++) out[i]! ^= key[i & 3]!;
  return out;
}

/** Feeds `data` (split at `cuts`, each piece a frame of its own with its own key) and ends the message. */
function check(data: Buffer, cuts: number[], keys: Buffer[]): boolean {
  const s = new Utf8Stream();
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  let prev = 0;
  let ok = true;
  points.push(data.length);
  points.forEach((p, i) => {
    const piece = data.subarray(prev, p);
    const key = keys[i % keys.length]!;
    // Inside one frame, too, the piece arrives in two chunks.
    const half = piece.length >> 1;
    const m = masked(piece, key);
    ok &&= s.write(m, 0, half, key, 0);
    ok &&= s.write(m, half, m.length, key, half);
    prev = p;
  });
  return s.end() && ok;
}

void describe('Utf8Stream', () => {
  void it('agrees with isUtf8 on whole messages, however they are cut and masked', () => {
    const bytes = fc.oneof(
      fc.string({ unit: 'grapheme' }).map((s) => Buffer.from(s)),
      fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      // Valid text with one byte changed.
      fc.tuple(fc.string({ unit: 'grapheme', minLength: 1 }), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([s, i, b]) => {
        const buf = Buffer.from(s);
        buf[i % buf.length] = b;
        return buf;
      }),
    );
    fc.assert(
      fc.property(
        bytes,
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.array(fc.uint8Array({ minLength: 4, maxLength: 4 }), { minLength: 1, maxLength: 3 }),
        (data, cuts, keys) => {
          assert.equal(
            check(
              data,
              cuts,
              keys.map((k) => Buffer.from(k)),
            ),
            isUtf8(data),
          );
        },
      ),
      { numRuns: 3000 },
    );
  });

  void it('a character cut at the end of the message is invalid; the stream is reusable after end()', () => {
    const s = new Utf8Stream();
    const key = Buffer.from([1, 2, 3, 4]);
    const euro = Buffer.from('€');
    assert.equal(s.write(masked(euro.subarray(0, 2), key), 0, 2, key, 0), true);
    assert.equal(s.end(), false);
    assert.equal(s.write(masked(euro, key), 0, 3, key, 0), true);
    assert.equal(s.end(), true);
  });

  void it('long messages (pieces above the scratch size) are checked whole', () => {
    const key = Buffer.from([9, 8, 7, 6]);
    const text = Buffer.from('ünïcödé ✓ 𝄞 '.repeat(10_000));
    const s = new Utf8Stream();
    assert.equal(s.write(masked(text, key), 0, text.length, key, 0), true);
    assert.equal(s.end(), true);
    const bad = Buffer.from(text);
    bad[bad.length - 50_000] = 0xff;
    assert.equal(s.write(masked(bad, key), 0, bad.length, key, 0), false);
  });
});

void describe('inspect relay: validateUtf8', () => {
  const fx = withGateway(rawUpstream, (up) => inspectConfig([up.url], '', 'validateUtf8: true'));

  void it('valid text split across fragments and writes passes; binary is not checked', async () => {
    const n = fx.backend.peers.length;
    const client = await rawClient(fx.gw.port);
    const upstream = await fx.backend.peer(n);
    const text = Buffer.from('añb€c𝄞d');
    // Fragments cut inside characters, each fragment written in two parts.
    const frags = [frame(TEXT, text.subarray(0, 2), { fin: false }), frame(CONT, text.subarray(2, 6), { fin: false }), frame(CONT, text.subarray(6))];
    for (const f of frags) {
      client.send(f.subarray(0, 7));
      await new Promise((r) => setTimeout(r, 5));
      client.send(f.subarray(7));
    }
    client.send(frame(BIN, Buffer.from([0xff, 0xfe])));
    await upstream.next((f) => f.opcode === BIN);
    assert.equal(Buffer.concat(upstream.frames.filter((f) => f.opcode !== BIN).map((f) => f.payload)).toString(), 'añb€c𝄞d');
    assert.equal(client.frames.length, 0);
  });

  const bad: [string, Buffer][] = [
    ['an invalid byte', frame(TEXT, Buffer.from([0x61, 0xff, 0x62]))],
    ['an overlong encoding', frame(TEXT, Buffer.from([0xc0, 0xaf]))],
    ['a surrogate', frame(TEXT, Buffer.from([0xed, 0xa0, 0x80]))],
    ['a character cut at the end of the message', Buffer.concat([frame(TEXT, 'ok ', { fin: false }), frame(CONT, Buffer.from('€').subarray(0, 2))])],
  ];
  for (const [name, bytes] of bad) {
    void it(`text with ${name} → 1007 to the client, 1001 to the upstream; the bad frame is not forwarded`, async () => {
      const n = fx.backend.peers.length;
      const client = await rawClient(fx.gw.port);
      const upstream = await fx.backend.peer(n);
      client.send(bytes);
      const close = await client.closeFrame();
      assert.equal(close.code, 1007, close.reason);
      await client.ended();
      const toUp = await upstream.next((f) => f.opcode === CLOSE);
      assert.equal(closeOf(toUp).code, 1001);
      upstream.send(frame(CLOSE, closePayload(1001), { mask: false }));
      await upstream.ended();
      for (const f of upstream.frames) if (f.opcode !== CLOSE) assert.ok(isUtf8(f.payload), `forwarded ${f.payload.toString('hex')}`);
    });
  }
});
