import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { FrameTracker, type FrameEvents, type FrameTrackerOptions, type PayloadSink } from '../src/relay/frame-parser.js';
import { Utf8Stream } from '../src/relay/utf8-stream.js';
import { coreSessions, NATIVE_RELAY } from '../src/relay/native-tunnel.js';
import { inspectCoreSessions, NATIVE_INSPECT } from '../src/relay/native-inspect.js';
import { nativeModule } from '../src/relay/native-module.js';
import { acceptUpgrade, rawServer, readHead, simpleConfig, startGateway, upgradeRequest, withGateway } from './helpers.js';
import { NO_PER_IP_LIMITS } from './resilience-helpers.js';
import { closePayload, frame, inspectConfig, rawClient, rawUpstream, sleep, type RawPeer } from './inspect-fixtures.js';
import { answerCloses, sameBothWays } from './inspect-pair-fixtures.js';

// Frame fuzzing. Streams of WebSocket frames — valid ones in every length
// encoding (non-minimal ones too), masked and unmasked, control frames
// between fragments, and one broken rule at a random place followed by
// garbage — are built here, independently of src/relay, together with the
// verdict they deserve. Then:
// - the inspect parser (FrameTracker) gets them cut at random places and at
//   every byte: the same verdict, the same events, and (relaying as
//   inspect-flow.ts does, holding back unfinished headers and control frames)
//   the same bytes delivered whatever the chunking: everything before the
//   frame that broke the rule, never part of it, never a frame left open;
// - a real gateway in inspect mode gets them over raw sockets: the offender
//   gets the close code (1002, 1007, 1009), the other peer 1001 / 1011, and
//   the bytes before the bad frame arrive unchanged (on the native inspect
//   core; test/js-inspect.test.ts runs this file again on the JavaScript
//   relay, WSGATE_INSPECT_CORE=js);
// - the native inspect core and the JavaScript relay get the same streams in
//   the same reads: the same bytes reach both peers, the same verdict, the
//   same counters and metrics tally;
// - a real gateway in tunnel mode (the native core, or the JavaScript tunnel
//   under WSGATE_RELAY_IO=handle) relays random bytes, frames or not, in random
//   writes both ways: identical, in order, no stall.
// `npm run test:asan` runs this file on the native core built with ASan,
// with WSGATE_FUZZ_SCALE (default 5 there, 1 here) times as many runs.

/** Runs per property are multiplied by this. */
const SCALE = Math.max(1, Math.floor(Number(process.env.WSGATE_FUZZ_SCALE)) || 1);

const CONT = 0x0;
const TEXT = 0x1;
const BIN = 0x2;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

// ---------------------------------------------------------------------------
// Building frames by hand

interface WireOpts {
  fin?: boolean;
  /** Raw RSV bits (0x40 RSV1, 0x20 RSV2, 0x10 RSV3). */
  rsv?: number;
  /** A 4-byte key, or null: unmasked. */
  key: Buffer | null;
  /** The length encoding; the smallest that fits when unset. */
  bits?: 7 | 16 | 64;
  /** Announce this 64-bit length instead; only the header is built. */
  fakeLength?: bigint;
}

function wire(opcode: number, payload: Buffer, o: WireOpts): Buffer {
  const n = payload.length;
  const bits = o.fakeLength !== undefined ? 64 : (o.bits ?? (n > 0xffff ? 64 : n > 125 ? 16 : 7));
  const b0 = ((o.fin ?? true) ? 0x80 : 0) | (o.rsv ?? 0) | opcode;
  const maskBit = o.key !== null ? 0x80 : 0;
  const parts: Buffer[] = [];
  if (bits === 7) parts.push(Buffer.from([b0, maskBit | n]));
  else if (bits === 16) {
    const h = Buffer.from([b0, maskBit | 126, 0, 0]);
    h.writeUInt16BE(n, 2);
    parts.push(h);
  } else {
    const h = Buffer.alloc(10);
    h[0] = b0;
    h[1] = maskBit | 127;
    h.writeBigUInt64BE(o.fakeLength ?? BigInt(n), 2);
    parts.push(h);
  }
  if (o.key !== null) parts.push(o.key);
  if (o.fakeLength === undefined) {
    const body = Buffer.from(payload);
    if (o.key !== null) for (let i = 0; i < n; i++) body[i]! ^= o.key[i & 3]!;
    parts.push(body);
  }
  return Buffer.concat(parts);
}

function closeBody(code: number, reason: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, reason]);
}

// ---------------------------------------------------------------------------
// Generated streams

type Ev = { kind: 'control'; opcode: number; payload: string } | { kind: 'message'; opcode: number; bytes: number };

interface Defect {
  /** Where the frame breaking the rule starts. */
  at: number;
  /** Where its message starts (the same but for a text message that is not UTF-8). */
  messageAt: number;
  /** Where the bad frame ends (set by finish()). */
  end: number;
  code: number;
  /** The tracker's errorCode, or 'UTF8' for a text message that is not UTF-8 (relay.validateUtf8). */
  rule: string;
}

interface Stream {
  bytes: Buffer;
  /** Events before the defect (all of them for a valid stream). */
  events: Ev[];
  /** Where each frame ends, before the defect. */
  ends: number[];
  defect: Defect | null;
  /** A valid stream ending with a Close frame: delivered up to its end, and nothing after. */
  closeEnd: number;
}

interface StreamOpts {
  fromClient: boolean;
  /** 0: unlimited. */
  maxMessageBytes: number;
  /** Text is checked for UTF-8 (and a defect may be text that is not). */
  utf8: boolean;
}

/** One fragment: its share of the message, its length encoding, control frames after it. */
interface FragmentSpec {
  cut: number;
  bits: 'min' | 16 | 64;
  controls: { opcode: number; payload: Uint8Array }[];
}

interface MessageSpec {
  opcode: number;
  text: string;
  binary: Uint8Array;
  fragments: FragmentSpec[];
}

const controlArb = fc.record({ opcode: fc.constantFrom(PING, PONG), payload: fc.uint8Array({ maxLength: 125 }) });
const messageArb: fc.Arbitrary<MessageSpec> = fc.record({
  opcode: fc.constantFrom(TEXT, BIN),
  text: fc.string({ unit: 'grapheme', maxLength: 60 }),
  binary: fc.uint8Array({ maxLength: 400 }),
  fragments: fc.array(
    fc.record({
      cut: fc.nat(),
      bits: fc.constantFrom<'min' | 16 | 64>('min', 'min', 16, 64),
      controls: fc.array(controlArb, { maxLength: 2 }),
    }),
    { minLength: 1, maxLength: 4 },
  ),
});
const pieceArb: fc.Arbitrary<Piece> = fc.oneof(
  { weight: 4, arbitrary: messageArb.map((m) => ({ kind: 'message' as const, m })) },
  { weight: 1, arbitrary: controlArb.map((c) => ({ kind: 'control' as const, c })) },
);

/** The defects: each breaks exactly one rule; `inMessage` says a fragmented message is in progress. */
const DEFECTS = [
  'RSV2',
  'RSV3',
  'RSV1_DATA',
  'RSV1_CONTROL',
  'RESERVED_DATA_OPCODE',
  'RESERVED_CONTROL_OPCODE',
  'WRONG_MASK',
  'CONTROL_FRAGMENTED',
  'CONTROL_126',
  'CONTROL_64BIT',
  'CONTROL_NON_MINIMAL',
  'CONTINUATION',
  'NEW_MESSAGE',
  'LENGTH_2_63',
  'LENGTH_2_64_MINUS_1',
  'LENGTH_2_53',
  'LENGTH_2_63_MINUS_1',
  'CLOSE_ONE_BYTE',
  'CLOSE_CODE',
  'CLOSE_REASON',
  'TOO_BIG',
  'TOO_BIG_FRAGMENTS',
  'UTF8',
] as const;
type DefectKind = (typeof DEFECTS)[number];

interface DefectSpec {
  kind: DefectKind;
  pick: number;
  garbage: Uint8Array;
}

const defectArb: fc.Arbitrary<DefectSpec> = fc.record({
  kind: fc.constantFrom(...DEFECTS),
  pick: fc.nat(),
  garbage: fc.uint8Array({ maxLength: 40 }),
});

const BAD_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535];
const BAD_UTF8 = [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0x80], [0xf4, 0x90, 0x80, 0x80]];

class Builder {
  readonly parts: Buffer[] = [];
  readonly events: Ev[] = [];
  readonly ends: number[] = [];
  at = 0;
  #keyN = 0;
  constructor(
    readonly o: StreamOpts,
    readonly keySeed: number,
  ) {}

  key(): Buffer | null {
    if (!this.o.fromClient) return null;
    const k = Buffer.alloc(4);
    k.writeUInt32BE((this.keySeed + this.#keyN++ * 0x9e3779b1) >>> 0);
    return k;
  }

  push(bytes: Buffer): void {
    this.parts.push(bytes);
    this.at += bytes.length;
    this.ends.push(this.at);
  }

  control(opcode: number, payload: Buffer): void {
    this.push(wire(opcode, payload, { key: this.key() }));
    this.events.push({ kind: 'control', opcode, payload: payload.toString('hex') });
  }

  /** A whole message; with `stopAfter`, only its first fragments (the message stays in progress). */
  message(m: MessageSpec, stopAfter = Infinity): boolean {
    let body = m.opcode === TEXT ? Buffer.from(m.text) : Buffer.from(m.binary);
    const max = this.o.maxMessageBytes;
    if (max > 0 && body.length > max) body = body.subarray(0, max);
    // Cut at the limit inside a character: still text.
    if (m.opcode === TEXT && !isUtf8(body)) body = Buffer.from('ok');
    const cuts = [...new Set(m.fragments.slice(1).map((f) => f.cut % (body.length + 1)))].sort((a, b) => a - b);
    const pieces: Buffer[] = [];
    let prev = 0;
    for (const c of [...cuts, body.length]) {
      pieces.push(body.subarray(prev, c));
      prev = c;
    }
    for (let i = 0; i < pieces.length; i++) {
      if (i >= stopAfter) return false;
      const spec = m.fragments[i]!;
      const last = i === pieces.length - 1;
      this.push(wire(i === 0 ? m.opcode : CONT, pieces[i]!, { fin: last, key: this.key(), bits: spec.bits === 'min' ? undefined : spec.bits }));
      if (!last) for (const c of spec.controls) this.control(c.opcode, Buffer.from(c.payload));
    }
    this.events.push({ kind: 'message', opcode: m.opcode, bytes: body.length });
    return true;
  }
}

type Piece = { kind: 'message'; m: MessageSpec } | { kind: 'control'; c: { opcode: number; payload: Uint8Array } };

/** Builds a stream: valid pieces, then a defect (if any) at a place it applies, else a Close or nothing. */
function buildStream(o: StreamOpts, pieces: readonly Piece[], defect: DefectSpec | null, keySeed: number, endWithClose: boolean): Stream {
  const b = new Builder(o, keySeed);
  for (const p of pieces) {
    if (p.kind === 'message') b.message(p.m);
    else b.control(p.c.opcode, Buffer.from(p.c.payload));
  }
  if (defect === null || (defect.kind === 'UTF8' && !o.utf8)) {
    let closeEnd = -1;
    if (endWithClose) {
      b.control(CLOSE, closeBody(1000, Buffer.from('bye')));
      closeEnd = b.at;
    }
    return { bytes: Buffer.concat(b.parts), events: b.events, ends: b.ends, defect: null, closeEnd };
  }
  // Half the time the defect lands inside a fragmented message in progress.
  let inMessage = false;
  if (defect.pick % 2 === 1 && defect.kind !== 'UTF8' && defect.kind !== 'CONTINUATION') {
    const m: MessageSpec = {
      opcode: defect.pick % 4 === 1 ? TEXT : BIN,
      text: 'fragmënt',
      binary: new Uint8Array([1, 2, 3, 4, 5, 6]),
      fragments: [
        { cut: 0, bits: 'min', controls: [{ opcode: PING, payload: new Uint8Array([7]) }] },
        { cut: 4, bits: 'min', controls: [] },
      ],
    };
    b.message(m, 1); // only its first fragment (and the ping after it): it stays in progress
    inMessage = true;
  }
  if (defect.kind === 'NEW_MESSAGE' && !inMessage) {
    b.push(wire(BIN, Buffer.from([1]), { fin: false, key: b.key() }));
    inMessage = true;
  }
  const at = b.at;
  const key = b.key();
  const dataOp = inMessage ? CONT : defect.pick % 3 === 0 ? TEXT : BIN;
  let bad: Buffer;
  let code = 1002;
  let rule: string;
  let messageAt = at;
  switch (defect.kind) {
    case 'RSV2':
      bad = wire(dataOp, Buffer.from('x'), { key, rsv: 0x20 });
      rule = 'RSV2_RSV3_SET';
      break;
    case 'RSV3':
      bad = wire(PING, Buffer.from('x'), { key, rsv: 0x10 });
      rule = 'RSV2_RSV3_SET';
      break;
    case 'RSV1_DATA':
      bad = wire(dataOp, Buffer.from('x'), { key, rsv: 0x40 });
      rule = inMessage ? 'RSV1_ON_CONTINUATION' : 'RSV1_NOT_NEGOTIATED';
      break;
    case 'RSV1_CONTROL':
      bad = wire(PONG, Buffer.from('x'), { key, rsv: 0x40 });
      rule = 'RSV1_ON_CONTROL';
      break;
    case 'RESERVED_DATA_OPCODE':
      bad = wire(3 + (defect.pick % 5), Buffer.from('x'), { key });
      rule = 'RESERVED_OPCODE';
      break;
    case 'RESERVED_CONTROL_OPCODE':
      bad = wire(0xb + (defect.pick % 5), Buffer.alloc(0), { key });
      rule = 'RESERVED_OPCODE';
      break;
    case 'WRONG_MASK': {
      const k = o.fromClient ? null : Buffer.from([1, 2, 3, 4]);
      bad = defect.pick % 3 === 2 ? wire(PING, Buffer.from('p'), { key: k }) : wire(dataOp, Buffer.from('x'), { key: k });
      rule = o.fromClient ? 'MASK_REQUIRED' : 'MASK_FORBIDDEN';
      break;
    }
    case 'CONTROL_FRAGMENTED':
      bad = wire(PING, Buffer.from('p'), { key, fin: false });
      rule = 'CONTROL_FRAGMENTED';
      break;
    case 'CONTROL_126':
      bad = wire(defect.pick % 2 ? PING : CLOSE, Buffer.concat([closeBody(1000), Buffer.alloc(124, 0x61)]), { key });
      rule = 'CONTROL_TOO_LONG';
      break;
    case 'CONTROL_64BIT':
      bad = wire(PONG, Buffer.alloc(200), { key, bits: 64 });
      rule = 'CONTROL_TOO_LONG';
      break;
    case 'CONTROL_NON_MINIMAL':
      // 5 bytes in a 16-bit length: the 7-bit field says 126, over 125.
      bad = wire(PING, Buffer.from('abcde'), { key, bits: 16 });
      rule = 'CONTROL_TOO_LONG';
      break;
    case 'CONTINUATION':
      bad = wire(CONT, Buffer.from('x'), { key });
      rule = 'UNEXPECTED_CONTINUATION';
      break;
    case 'NEW_MESSAGE':
      bad = wire(defect.pick % 2 ? TEXT : BIN, Buffer.from('x'), { key });
      rule = 'MESSAGE_IN_PROGRESS';
      break;
    case 'LENGTH_2_63':
      bad = wire(dataOp, Buffer.alloc(0), { key, fakeLength: 1n << 63n });
      rule = 'LENGTH_MSB_SET';
      break;
    case 'LENGTH_2_64_MINUS_1':
      bad = wire(dataOp, Buffer.alloc(0), { key, fakeLength: (1n << 64n) - 1n });
      rule = 'LENGTH_MSB_SET';
      break;
    case 'LENGTH_2_53':
      bad = wire(dataOp, Buffer.alloc(0), { key, fakeLength: 1n << 53n });
      rule = 'LENGTH_UNSUPPORTED';
      code = 1009;
      break;
    case 'LENGTH_2_63_MINUS_1':
      bad = wire(dataOp, Buffer.alloc(0), { key, fakeLength: (1n << 63n) - 1n });
      rule = 'LENGTH_UNSUPPORTED';
      code = 1009;
      break;
    case 'CLOSE_ONE_BYTE':
      bad = wire(CLOSE, Buffer.from([3]), { key });
      rule = 'CLOSE_PAYLOAD_ONE_BYTE';
      break;
    case 'CLOSE_CODE':
      bad = wire(CLOSE, closeBody(BAD_CLOSE_CODES[defect.pick % BAD_CLOSE_CODES.length]!, Buffer.from('why')), { key });
      rule = 'INVALID_CLOSE_CODE';
      break;
    case 'CLOSE_REASON':
      bad = wire(CLOSE, closeBody(1000, Buffer.from([0x6f, 0x6b, ...BAD_UTF8[defect.pick % BAD_UTF8.length]!])), { key });
      rule = 'INVALID_CLOSE_REASON';
      code = 1007;
      break;
    case 'TOO_BIG':
    case 'TOO_BIG_FRAGMENTS': {
      if (o.maxMessageBytes === 0) {
        // No limit: a length that cannot be counted exactly is refused the same way.
        bad = wire(dataOp, Buffer.alloc(0), { key, fakeLength: (1n << 53n) + BigInt(defect.pick % 1000) });
        rule = 'LENGTH_UNSUPPORTED';
        code = 1009;
        break;
      }
      const over = o.maxMessageBytes + 1 + (defect.pick % 300);
      if (defect.kind === 'TOO_BIG' || inMessage) {
        // In a message in progress, the fragment so far counts too; one over the rest is enough.
        bad = wire(dataOp, Buffer.alloc(over, 0x62), { key, bits: defect.pick % 2 ? 64 : undefined });
      } else {
        // Fragments within the limit, then one that takes the message over it.
        const first = Math.floor(o.maxMessageBytes / 2);
        b.push(wire(BIN, Buffer.alloc(first, 0x63), { fin: false, key }));
        b.push(wire(PING, Buffer.from('between'), { key: b.key() }));
        b.events.push({ kind: 'control', opcode: PING, payload: Buffer.from('between').toString('hex') });
        bad = wire(CONT, Buffer.alloc(over - first, 0x64), { key: b.key() });
        return finish(b, bad, { at: b.at, messageAt: b.at, end: 0, code: 1009, rule: 'MESSAGE_TOO_BIG' }, defect);
      }
      rule = 'MESSAGE_TOO_BIG';
      code = 1009;
      break;
    }
    case 'UTF8': {
      // A text message whose bytes are not UTF-8, cut into fragments anywhere.
      const text = Buffer.concat([Buffer.from('valid ünïcode '), Buffer.from(BAD_UTF8[defect.pick % BAD_UTF8.length]!), Buffer.from(' rest')]);
      const cut = defect.pick % (text.length + 1);
      const twoFrames = defect.pick % 2 === 1;
      messageAt = at;
      if (twoFrames) {
        b.push(wire(TEXT, text.subarray(0, cut), { fin: false, key }));
        // Its event comes only if the bad byte is in the second fragment: not counted here.
        b.push(wire(PING, Buffer.from('mid'), { key: b.key() }));
        bad = wire(CONT, text.subarray(cut), { key: b.key() });
      } else bad = wire(TEXT, text, { key });
      return finish(b, bad, { at: twoFrames ? b.at : at, messageAt, end: 0, code: 1007, rule: 'UTF8' }, defect);
    }
  }
  return finish(b, bad, { at, messageAt, end: 0, code, rule }, defect);
}

function finish(b: Builder, bad: Buffer, d: Defect, spec: DefectSpec): Stream {
  const bytes = Buffer.concat([...b.parts, bad, Buffer.from(spec.garbage)]);
  return { bytes, events: b.events, ends: b.ends.filter((e) => e <= d.messageAt), defect: { ...d, end: b.at + bad.length }, closeEnd: -1 };
}

const streamArb = (o: StreamOpts, withDefect: 'always' | 'never' | 'sometimes'): fc.Arbitrary<Stream> =>
  fc
    .record({
      pieces: fc.array(pieceArb, { maxLength: 6 }),
      defect: withDefect === 'never' ? fc.constant(null) : withDefect === 'always' ? defectArb : fc.option(defectArb, { freq: 2 }),
      keySeed: fc.nat(),
      endWithClose: fc.boolean(),
    })
    .map(({ pieces, defect, keySeed, endWithClose }) => buildStream(o, pieces, defect, keySeed, endWithClose));

function splitAt(buf: Buffer, cutSeeds: readonly number[]): Buffer[] {
  const points = [...new Set(cutSeeds.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    if (p > prev) out.push(buf.subarray(prev, p));
    prev = p;
  }
  if (prev < buf.length || out.length === 0) out.push(buf.subarray(prev));
  return out;
}

// ---------------------------------------------------------------------------
// The tracker, relayed as inspect-flow.ts relays it

interface Relayed {
  code: number;
  rule: string | null;
  events: Ev[];
  /** Bytes a relay following the tracker's contract forwards. */
  delivered: Buffer;
  /** Bytes it holds back at the end (an unfinished header or control frame). */
  held: Buffer;
  /** It was left inside a frame: never for the tracker's own rules. */
  stuck: boolean;
  /** A text frame begun in an earlier chunk turned out not UTF-8: the relay pads it (inspect-flow.ts). */
  padded: boolean;
}

/** Below any offset in a chunk or its held bytes. */
const STUCK = -0x40000000;

/**
 * What inspect-flow.ts does with the tracker: forward up to the boundary
 * before the first rule broken, hold back unfinished headers and control
 * frames, check text with a Utf8Stream as its payload sink.
 */
function relay(opts: FrameTrackerOptions, chunks: readonly Buffer[], utf8: boolean): Relayed {
  const events: Ev[] = [];
  const out: Buffer[] = [];
  const text = new Utf8Stream();
  let held = Buffer.alloc(0);
  let closeEnd = -1;
  /** Where the text frame holding a byte that is not UTF-8 starts (chunk offset), once found. */
  let badText: number | null = null;
  let textFrameStart = 0;
  const ev: FrameEvents & PayloadSink = {
    onControl(opcode, payload, frameStart, frameEnd) {
      assert.ok(frameStart >= -held.length, `a control frame starts before the held bytes (${frameStart}, ${held.length} held)`);
      if (badText !== null) return;
      events.push({ kind: 'control', opcode, payload: payload.toString('hex') });
      if (opcode === CLOSE) closeEnd = frameEnd;
    },
    onMessage(opcode, bytes) {
      if (utf8 && opcode === TEXT && !text.end() && badText === null) badText = textFrameStart;
      if (badText === null) events.push({ kind: 'message', opcode, bytes });
    },
    onPayload(chunk, start, end, phase, frameStart) {
      if (tracker.messageOpcode !== TEXT || badText !== null) return;
      textFrameStart = frameStart;
      if (!text.write(chunk, start, end, tracker.maskKey!, phase)) badText = frameStart;
    },
  };
  const tracker = new FrameTracker({ ...opts, payload: utf8 ? ev : undefined }, ev);
  const result = (code: number, rule: string | null, extra: Partial<Relayed> = {}): Relayed => ({
    code,
    rule,
    events,
    delivered: Buffer.concat(out),
    held: Buffer.alloc(0),
    stuck: false,
    padded: false,
    ...extra,
  });
  for (const chunk of chunks) {
    const h = held.length;
    const v = Buffer.concat([held, chunk]);
    const code = tracker.scan(chunk);
    // The first rule broken decides the cut; with no boundary in the chunk, it is in the held frame.
    let violation = code;
    let rule: string | null = tracker.errorCode;
    let cut = chunk.length;
    if (code !== 0) cut = tracker.lastBoundary >= 0 ? tracker.lastBoundary : h > 0 ? -h : STUCK;
    if (badText !== null) {
      const at = badText >= -h ? badText : STUCK;
      if (violation === 0 || at < cut) {
        violation = 1007;
        rule = 'UTF8';
        cut = at;
      }
    }
    if (violation !== 0) {
      if (cut === STUCK) return result(violation, rule, rule === 'UTF8' ? { padded: true } : { stuck: true });
      out.push(v.subarray(0, cut + h));
      return result(violation, rule);
    }
    if (closeEnd >= 0) {
      out.push(v.subarray(0, closeEnd + h));
      return result(0, null);
    }
    const open = tracker.openBytes;
    assert.ok(open <= 131, `openBytes ${open}`);
    out.push(v.subarray(0, v.length - open));
    held = Buffer.from(v.subarray(v.length - open));
  }
  return result(0, null, { held });
}

function expectRelayed(s: Stream, r: Relayed, what: string): void {
  assert.equal(r.stuck, false, `${what}: left inside a frame`);
  if (s.defect === null) {
    assert.equal(r.code, 0, `${what}: ${r.rule}`);
    assert.deepEqual(r.events, s.events, what);
    const end = s.closeEnd >= 0 ? s.closeEnd : s.bytes.length;
    assert.ok(r.delivered.equals(s.bytes.subarray(0, end)), `${what}: delivered ${r.delivered.length} of ${end}`);
    assert.equal(r.held.length, 0, what);
    return;
  }
  const d = s.defect;
  assert.equal(r.code, d.code, `${what}: ${r.rule}, want ${d.rule}`);
  assert.equal(r.rule, d.rule, what);
  if (d.rule !== 'UTF8') {
    // Exactly what came before the bad frame, whatever the chunking.
    assert.deepEqual(r.events, s.events, what);
    assert.equal(r.delivered.length, d.at, `${what}: delivered ${r.delivered.length}, want ${d.at}`);
    assert.ok(r.delivered.equals(s.bytes.subarray(0, d.at)), `${what}: bytes before the defect`);
    assert.equal(r.padded, false);
    return;
  }
  // Text that is not UTF-8: everything before its message, perhaps some of
  // it (a ping between its fragments too), never all of it.
  assert.deepEqual(r.events.slice(0, s.events.length), s.events, what);
  assert.ok(r.events.length <= s.events.length + 1, what);
  assert.ok(r.delivered.length >= d.messageAt && r.delivered.length < d.end, `${what}: delivered ${r.delivered.length}, message in [${d.messageAt}, ${d.end})`);
  assert.ok(r.delivered.equals(s.bytes.subarray(0, r.delivered.length)), `${what}: delivered bytes unchanged`);
}

const CLIENT: FrameTrackerOptions = { fromClient: true, rsv1Allowed: false, maxMessageBytes: 0 };
const SERVER: FrameTrackerOptions = { fromClient: false, rsv1Allowed: false, maxMessageBytes: 0 };

void describe('frame fuzz: the inspect parser', () => {
  const configs: [string, FrameTrackerOptions, StreamOpts][] = [
    ['client, no size limit', CLIENT, { fromClient: true, maxMessageBytes: 0, utf8: false }],
    ['client, maxMessageBytes 600, UTF-8 checked', { ...CLIENT, maxMessageBytes: 600 }, { fromClient: true, maxMessageBytes: 600, utf8: true }],
    ['server, unmasked', SERVER, { fromClient: false, maxMessageBytes: 0, utf8: false }],
  ];
  for (const [name, opts, so] of configs) {
    void it(`${name}: generated streams, random chunks: same verdict, events and delivered bytes as whole`, () => {
      fc.assert(
        fc.property(streamArb(so, 'sometimes'), fc.array(fc.nat(), { maxLength: 20 }), (s, cuts) => {
          expectRelayed(s, relay(opts, [s.bytes], so.utf8), 'whole');
          expectRelayed(s, relay(opts, splitAt(s.bytes, cuts), so.utf8), `cut at ${cuts.join(',')}`);
        }),
        { numRuns: 400 * SCALE },
      );
    });

    void it(`${name}: every defect, split in two at every byte and one byte at a time`, () => {
      // A small fixed prefix (a fragment in progress half the time), then each defect.
      let runs = 0;
      for (const kind of DEFECTS) {
        for (const pick of [0, 1, 2, 3]) {
          const piece: Piece = {
            kind: 'message',
            m: { opcode: TEXT, text: 'héllo', binary: new Uint8Array(0), fragments: [{ cut: 0, bits: 16, controls: [] }] },
          };
          const s = buildStream(so, [piece], { kind, pick, garbage: new Uint8Array([0x81, 0x85, 1, 2]) }, pick * 7919, false);
          for (let k = 0; k <= s.bytes.length; k++) {
            expectRelayed(s, relay(opts, [s.bytes.subarray(0, k), s.bytes.subarray(k)], so.utf8), `${kind}/${pick} split at ${k}`);
          }
          const bytewise = Array.from({ length: s.bytes.length }, (_, i) => s.bytes.subarray(i, i + 1));
          expectRelayed(s, relay(opts, bytewise, so.utf8), `${kind}/${pick} byte by byte`);
          runs++;
        }
      }
      assert.equal(runs, DEFECTS.length * 4);
    });
  }

  void it('a valid stream cut off anywhere: what is delivered plus what is held is what came, never a partial header or control frame', () => {
    fc.assert(
      fc.property(
        streamArb({ fromClient: true, maxMessageBytes: 0, utf8: false }, 'never'),
        fc.nat(),
        fc.array(fc.nat(), { maxLength: 8 }),
        (s, endSeed, cuts) => {
          const prefix = s.bytes.subarray(0, endSeed % (s.bytes.length + 1));
          const r = relay(CLIENT, splitAt(prefix, cuts), false);
          assert.equal(r.code, 0);
          const closeEnd = s.closeEnd >= 0 && s.closeEnd <= prefix.length ? s.closeEnd : -1;
          if (closeEnd >= 0) return;
          assert.ok(Buffer.concat([r.delivered, r.held]).equals(prefix));
          assert.ok(r.held.length <= 131);
          // Held bytes are the start of one unfinished frame: what is delivered ends where a frame does, or inside a data payload.
          if (r.held.length > 0) assert.ok(s.ends.includes(r.delivered.length) || r.delivered.length === 0, `delivered ${r.delivered.length}`);
        },
      ),
      { numRuns: 300 * SCALE },
    );
  });
});

// ---------------------------------------------------------------------------
// Through a real gateway

/** Sends `chunks` as separate writes, yielding between them so most arrive as separate reads. */
async function sendChunks(peer: RawPeer, chunks: readonly Buffer[]): Promise<void> {
  for (const c of chunks) {
    peer.send(c);
    await sleep(1);
  }
}

/** The frames in `bytes`, unmasked; throws on a partial one. */
function framesOf(bytes: Buffer): { opcode: number; fin: boolean; payload: Buffer }[] {
  const out: { opcode: number; fin: boolean; payload: Buffer }[] = [];
  let p = 0;
  while (p < bytes.length) {
    const b1 = bytes[p + 1]!;
    const len7 = b1 & 0x7f;
    let q = p + 2;
    let n = len7;
    if (len7 === 126) {
      n = bytes.readUInt16BE(q);
      q += 2;
    } else if (len7 === 127) {
      n = Number(bytes.readBigUInt64BE(q));
      q += 8;
    }
    const key = b1 & 0x80 ? bytes.subarray(q, q + 4) : null;
    if (key) q += 4;
    assert.ok(q + n <= bytes.length, 'a partial frame');
    const payload = Buffer.from(bytes.subarray(q, q + n));
    if (key) for (let i = 0; i < n; i++) payload[i]! ^= key[i & 3]!;
    out.push({ opcode: bytes[p]! & 0x0f, fin: (bytes[p]! & 0x80) !== 0, payload });
    p = q + n;
  }
  return out;
}

/** `received` must be `stream` up to the defect, then `code`'s Close (text frames of a bad message may come between, padded). */
function expectCutAndClosed(received: Buffer, s: Stream, code: number): void {
  const d = s.defect!;
  const want = d.rule === 'UTF8' ? d.messageAt : d.at;
  assert.ok(received.subarray(0, want).equals(s.bytes.subarray(0, want)), `the ${want} bytes before the defect (${d.rule}) arrive unchanged`);
  const rest = framesOf(received.subarray(want));
  const last = rest.at(-1);
  assert.ok(last !== undefined && last.opcode === CLOSE, `a Close after the ${want} bytes, got ${JSON.stringify(rest.map((f) => f.opcode))}`);
  assert.equal(last.payload.readUInt16BE(0), code);
  const between = rest.slice(0, -1);
  if (d.rule !== 'UTF8') assert.equal(between.length, 0, 'nothing of the bad frame');
  else {
    // The bad message's frames begun in earlier reads, finished with padding: never taken as text.
    const data = between.filter((f) => f.opcode < 8);
    if (data.at(-1)?.fin) assert.equal(isUtf8(Buffer.concat(data.map((f) => f.payload))), false, 'the finished message is not UTF-8');
  }
}

const inspectCore = NATIVE_INSPECT ? 'native core' : 'JavaScript relay';

void describe(`frame fuzz: through a gateway in inspect mode (${inspectCore})`, () => {
  const MAX = 1024;
  const fx = withGateway(rawUpstream, (up) => inspectConfig([up.url], `maxMessageBytes: ${MAX}, ${NO_PER_IP_LIMITS}`, 'validateUtf8: true'));

  void it('client streams in random writes: valid ones arrive byte for byte; a broken rule gets its close code, the upstream 1001', async () => {
    await fc.assert(
      fc.asyncProperty(
        streamArb({ fromClient: true, maxMessageBytes: MAX, utf8: true }, 'sometimes'),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (s, cuts) => {
          const n = fx.backend.peers.length;
          const client = await rawClient(fx.gw.port);
          const upstream = await fx.backend.peer(n);
          try {
            if (NATIVE_INSPECT) assert.ok(inspectCoreSessions() >= 1, 'the session runs in the native core');
            await sendChunks(client, splitAt(s.bytes, cuts));
            if (s.defect === null) {
              const end = s.closeEnd >= 0 ? s.closeEnd : s.bytes.length;
              await upstream.receivedAtLeast(end);
              assert.ok(Buffer.concat(upstream.received).equals(s.bytes.subarray(0, end)), 'byte for byte');
              if (s.closeEnd < 0) client.send(frame(CLOSE, closePayload(1000)));
              await upstream.next((x) => x.opcode === CLOSE);
              upstream.send(frame(CLOSE, closePayload(1000), { mask: false }));
              upstream.socket.end();
              await client.ended();
              return;
            }
            const close = await client.closeFrame();
            assert.equal(close.code, s.defect.code, `${s.defect.rule}: ${close.reason}`);
            await upstream.next((x) => x.opcode === CLOSE);
            // Answered and ended, as a server does (the gateway waits for the upstream's FIN).
            upstream.send(frame(CLOSE, closePayload(1001), { mask: false }));
            upstream.socket.end();
            await Promise.all([client.ended(), upstream.ended()]);
            expectCutAndClosed(Buffer.concat(upstream.received), s, 1001);
          } finally {
            client.socket.destroy();
            upstream.socket.destroy();
          }
        },
      ),
      { numRuns: 60 * SCALE },
    );
  });

  void it('upstream streams in random writes: valid ones reach the client byte for byte; a broken rule gets its close code, the client 1011', async () => {
    await fc.assert(
      fc.asyncProperty(
        streamArb({ fromClient: false, maxMessageBytes: 0, utf8: false }, 'sometimes'),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (s, cuts) => {
          const n = fx.backend.peers.length;
          const client = await rawClient(fx.gw.port);
          const upstream = await fx.backend.peer(n);
          try {
            await sendChunks(upstream, splitAt(s.bytes, cuts));
            if (s.defect === null) {
              const end = s.closeEnd >= 0 ? s.closeEnd : s.bytes.length;
              await client.receivedAtLeast(end);
              assert.ok(Buffer.concat(client.received).equals(s.bytes.subarray(0, end)), 'byte for byte');
              return;
            }
            const close = await upstream.closeFrame();
            assert.equal(close.code, s.defect.code, `${s.defect.rule}: ${close.reason}`);
            await client.next((x) => x.opcode === CLOSE);
            client.send(frame(CLOSE, closePayload(1011)));
            await client.ended();
            expectCutAndClosed(Buffer.concat(client.received), s, 1011);
          } finally {
            client.socket.destroy();
            upstream.socket.destroy();
          }
        },
      ),
      { numRuns: 40 * SCALE },
    );
  });
});

void describe('frame fuzz: the native inspect core and the JavaScript relay agree', { skip: !NATIVE_INSPECT && 'no native inspect core' }, () => {
  const MAX = 1024;
  const LIMITS = { maxMessageBytes: MAX, validateUtf8: true };
  const CLIENT_CLOSE = wire(CLOSE, closeBody(1000), { key: Buffer.from([9, 8, 7, 6]) });

  void it('client streams in random reads, one at a time into both relays', async () => {
    await fc.assert(
      fc.asyncProperty(
        streamArb({ fromClient: true, maxMessageBytes: MAX, utf8: true }, 'sometimes'),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (s, cuts) => {
          const out = await sameBothWays(LIMITS, async (p) => {
            answerCloses(p);
            for (const c of splitAt(s.bytes, cuts)) await p.fromClient(c);
            if (s.defect === null && s.closeEnd < 0) await p.fromClient(CLIENT_CLOSE);
          });
          assert.equal(out.end.code, s.defect?.code ?? 1000, out.end.reason);
        },
      ),
      { numRuns: 40 * SCALE },
    );
  });

  void it('upstream streams in random reads, one at a time into both relays', async () => {
    await fc.assert(
      fc.asyncProperty(
        streamArb({ fromClient: false, maxMessageBytes: 0, utf8: false }, 'sometimes'),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (s, cuts) => {
          const out = await sameBothWays({}, async (p) => {
            answerCloses(p);
            for (const c of splitAt(s.bytes, cuts)) await p.fromUpstream(c);
            if (s.defect === null && s.closeEnd < 0) p.upstream.socket.end();
          });
          if (s.defect !== null) assert.equal(out.end.code, s.defect.code, out.end.reason);
        },
      ),
      { numRuns: 30 * SCALE },
    );
  });
});

// ---------------------------------------------------------------------------
// Tunnel mode: the native core (or the JavaScript tunnel) relays bytes

interface Pair {
  client: Socket;
  upstream: Socket;
}

/** Writes `chunks` minding backpressure; yields now and then so they arrive in many reads. */
async function writeAll(socket: Socket, chunks: readonly Buffer[]): Promise<void> {
  for (let i = 0; i < chunks.length; i++) {
    if (!socket.write(chunks[i]!)) await once(socket, 'drain');
    if (i % 4 === 3) await new Promise((r) => setImmediate(r));
  }
}

/** Reads `total` bytes and returns their hash; fails if the socket closes first, or nothing comes for a while (a stall). */
function readAll(socket: Socket, total: number, stallMs = 10_000): Promise<string> {
  const hash = createHash('sha256');
  let got = 0;
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const stop = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
    };
    const fail = (why: string): void => {
      stop();
      reject(new Error(`${why} after ${got} of ${total} bytes`));
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(fail, stallMs, `stalled for ${stallMs}ms`);
    };
    const onData = (d: Buffer): void => {
      hash.update(d);
      got += d.length;
      if (got > total) fail('more bytes than were sent');
      else if (got === total) {
        stop();
        resolve(hash.digest('hex'));
      } else arm();
    };
    const onClose = (): void => fail('closed');
    if (total === 0) {
      resolve(hash.digest('hex'));
      return;
    }
    socket.on('data', onData);
    socket.once('close', onClose);
    arm();
    // readHead() left it paused.
    socket.resume();
  });
}

const sha = (chunks: readonly Buffer[]): string => createHash('sha256').update(Buffer.concat(chunks)).digest('hex');

/** Random bytes, or generated frame streams (valid or not: tunnel mode reads none), cut into writes. */
const blobArb = fc.oneof(
  fc.tuple(fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 60_000, max: 600_000 })), fc.nat()).map(([n, seed]) => {
    const b = Buffer.alloc(n);
    let x = seed | 1;
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b[i] = x & 0xff;
    }
    return b;
  }),
  streamArb({ fromClient: true, maxMessageBytes: 0, utf8: false }, 'sometimes').map((s) => s.bytes),
);
const writesArb = fc.tuple(blobArb, fc.array(fc.nat(), { maxLength: 30 })).map(([b, cuts]) => splitAt(b, cuts));

void describe(`frame fuzz: tunnel mode (${process.env.WSGATE_RELAY_IO === undefined && NATIVE_RELAY ? 'native core' : 'JavaScript tunnel'})`, () => {
  void it('random writes both ways at once: every byte arrives, in order, nothing stalls', async () => {
    const waiting: ((s: Socket) => void)[] = [];
    const srv = await rawServer((s) => void acceptUpgrade(s).then(() => waiting.shift()?.(s)));
    const gw = await startGateway(simpleConfig([`ws://127.0.0.1:${srv.port}`], `relay: { mode: tunnel }\nlimits: { ${NO_PER_IP_LIMITS} }`));
    const native = process.env.WSGATE_RELAY_IO === undefined && NATIVE_RELAY;
    const open = async (): Promise<Pair> => {
      const upstream = new Promise<Socket>((resolve) => waiting.push(resolve));
      const client = connect(gw.port, '127.0.0.1');
      client.on('error', () => {});
      client.write(upgradeRequest());
      assert.match(await readHead(client), /^HTTP\/1\.1 101 /);
      const up = await upstream;
      up.on('error', () => {});
      return { client, upstream: up };
    };
    try {
      await fc.assert(
        fc.asyncProperty(writesArb, writesArb, async (up, down) => {
          const { client, upstream } = await open();
          try {
            if (native) assert.ok(coreSessions() >= 1, 'the session runs in the native core');
            const [gotUp, gotDown] = await Promise.all([
              readAll(
                upstream,
                up.reduce((a, c) => a + c.length, 0),
              ),
              readAll(
                client,
                down.reduce((a, c) => a + c.length, 0),
              ),
              writeAll(client, up),
              writeAll(upstream, down),
            ]);
            assert.equal(gotUp, sha(up), 'client → upstream');
            assert.equal(gotDown, sha(down), 'upstream → client');
            // And the end: the client's FIN reaches the upstream, and the session closes.
            const ended = once(upstream, 'end');
            client.end();
            await ended;
          } finally {
            client.destroy();
            upstream.destroy();
          }
        }),
        { numRuns: 24 * SCALE },
      );
    } finally {
      await gw.close();
      await srv.close();
    }
  });

  void it(
    'the native core refuses bad arguments with an exception, never a crash',
    { skip: typeof nativeModule() !== 'object' && 'the native core is not built' },
    () => {
      const core = nativeModule() as Record<string, (...args: unknown[]) => unknown>;
      const notSessions: unknown[] = [undefined, null, 0, 'session', {}, Buffer.alloc(8), () => {}];
      for (const v of notSessions) {
        assert.throws(() => core.close!(v), /wsgate relay/);
        assert.throws(() => core.active!(v, false), /wsgate relay/);
        assert.throws(() => core.bytes!(v, 0), /wsgate relay/);
      }
      // Descriptors that cannot be duplicated, a non-object owner, missing arguments: nothing is taken.
      const before = core.openSessions!();
      assert.throws(() => core.open!({}, -1, -1, 1024), /wsgate relay/);
      assert.throws(() => core.open!({}, 0x7fffffff, 0x7ffffffe, 0), /wsgate relay/);
      assert.throws(() => core.open!(42, 0, 1, 1024), /wsgate relay/);
      assert.throws(() => core.open!({}), /wsgate relay/);
      assert.equal(core.openSessions!(), before);
      // tryWrite on a closed or bogus descriptor reports the error; on a non-buffer it throws.
      assert.ok((core.tryWrite!(-1, Buffer.from('x')) as number) < 0);
      assert.ok((core.tryWrite!(0x7fffffff, Buffer.alloc(0)) as number) <= 0);
      assert.throws(() => core.tryWrite!(1, 'not a buffer'), /wsgate relay/);
      assert.throws(() => core.tryWrite!('fd', Buffer.from('x')), /wsgate relay/);
    },
  );
});
