import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as wsModule from 'ws';
import fc from 'fast-check';
import { FrameTracker } from './frame-parser.js';
import type { FrameEvents, FrameErrorCode, FrameTrackerOptions } from './frame-parser.js';

// ---------------------------------------------------------------------------
// Hand-made frames, independent of frames.ts, so invalid ones can be built too.

interface RawFrame {
  opcode: number;
  payload?: Buffer;
  fin?: boolean;
  rsv1?: boolean;
  rsv2?: boolean;
  rsv3?: boolean;
  /** A 4-byte key, or false for an unmasked frame. */
  mask?: Buffer | false;
  /** Force the length encoding (non-minimal ones included). */
  lengthBits?: 7 | 16 | 64;
  /** Write this in the 64-bit length field instead of payload.length (only the header is built). */
  fakeLength64?: bigint;
}

const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

function raw(f: RawFrame): Buffer {
  const payload = f.payload ?? Buffer.alloc(0);
  const n = payload.length;
  const bits = f.fakeLength64 !== undefined ? 64 : (f.lengthBits ?? (n > 0xffff ? 64 : n > 125 ? 16 : 7));
  const head = [((f.fin ?? true) ? 0x80 : 0) | (f.rsv1 ? 0x40 : 0) | (f.rsv2 ? 0x20 : 0) | (f.rsv3 ? 0x10 : 0) | f.opcode];
  const maskBit = f.mask ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (bits === 7) {
    head.push(maskBit | n);
  } else if (bits === 16) {
    head.push(maskBit | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(n);
  } else {
    head.push(maskBit | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(f.fakeLength64 ?? BigInt(n));
  }
  const body = Buffer.from(payload);
  if (f.mask) for (let i = 0; i < n; i++) body[i]! ^= f.mask[i & 3]!;
  const parts: Buffer[] = [Buffer.from(head), ext];
  if (f.mask) parts.push(f.mask);
  if (f.fakeLength64 === undefined) parts.push(body);
  return Buffer.concat(parts);
}

const c = (opcode: number, payload: Buffer | string = '', extra: Partial<RawFrame> = {}): Buffer =>
  raw({ opcode, payload: Buffer.from(payload), mask: KEY, ...extra });
const s = (opcode: number, payload: Buffer | string = '', extra: Partial<RawFrame> = {}): Buffer =>
  raw({ opcode, payload: Buffer.from(payload), mask: false, ...extra });

function closeBody(code: number, reason: string | Buffer = ''): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, Buffer.from(reason)]);
}

// ---------------------------------------------------------------------------
// A recorder that turns chunk-relative offsets into stream offsets, so runs
// with different chunkings can be compared.

type Ev = { kind: 'control'; opcode: number; payload: string; start: number; end: number } | { kind: 'message'; opcode: number; bytes: number };

class Recorder implements FrameEvents {
  events: Ev[] = [];
  base = 0;
  chunkLength = 0;
  onControl(opcode: number, payload: Buffer, frameStart: number, frameEnd: number): void {
    assert.ok(frameEnd > 0 && frameEnd <= this.chunkLength, `frameEnd ${frameEnd} outside chunk of ${this.chunkLength}`);
    assert.ok(frameStart < frameEnd);
    this.events.push({ kind: 'control', opcode, payload: payload.toString('hex'), start: this.base + frameStart, end: this.base + frameEnd });
  }
  onMessage(opcode: number, bytes: number): void {
    this.events.push({ kind: 'message', opcode, bytes });
  }
}

const CLIENT: FrameTrackerOptions = { fromClient: true, rsv1Allowed: false, maxMessageBytes: 0 };
const SERVER: FrameTrackerOptions = { fromClient: false, rsv1Allowed: false, maxMessageBytes: 0 };

interface RunResult {
  events: Ev[];
  code: number;
  tracker: FrameTracker;
  /** Stream offsets of every lastBoundary reported, -1 left out. */
  boundaries: number[];
}

function run(opts: FrameTrackerOptions, chunks: Buffer[]): RunResult {
  const rec = new Recorder();
  const tracker = new FrameTracker(opts, rec);
  const boundaries: number[] = [];
  let code = 0;
  for (const chunk of chunks) {
    rec.chunkLength = chunk.length;
    code = tracker.scan(chunk);
    if (tracker.lastBoundary >= 0) boundaries.push(rec.base + tracker.lastBoundary);
    if (code !== 0) break;
    rec.base += chunk.length;
  }
  return { events: rec.events, code, tracker, boundaries };
}

function splitAt(buf: Buffer, points: number[]): Buffer[] {
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of [...points].sort((a, b) => a - b)) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

function chunksOf(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

// ---------------------------------------------------------------------------

void describe('FrameTracker: RFC 6455 §5 rules', () => {
  interface Case {
    name: string;
    opts?: Partial<FrameTrackerOptions>;
    stream: Buffer;
    code: number;
    errorCode?: FrameErrorCode;
  }
  const bad: Case[] = [
    { name: 'unmasked client frame', stream: s(1, 'hi'), code: 1002, errorCode: 'MASK_REQUIRED' },
    { name: 'masked server frame', opts: SERVER, stream: c(1, 'hi'), code: 1002, errorCode: 'MASK_FORBIDDEN' },
    ...[3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf].map((op) => ({
      name: `reserved opcode 0x${op.toString(16)}`,
      stream: c(op),
      code: 1002,
      errorCode: 'RESERVED_OPCODE' as const,
    })),
    { name: 'RSV1 without permessage-deflate', stream: c(1, 'x', { rsv1: true }), code: 1002, errorCode: 'RSV1_NOT_NEGOTIATED' },
    {
      name: 'RSV1 on a continuation frame',
      opts: { rsv1Allowed: true },
      stream: Buffer.concat([c(1, 'a', { fin: false, rsv1: true }), c(0, 'b', { rsv1: true })]),
      code: 1002,
      errorCode: 'RSV1_ON_CONTINUATION',
    },
    { name: 'RSV1 on a ping', opts: { rsv1Allowed: true }, stream: c(9, '', { rsv1: true }), code: 1002, errorCode: 'RSV1_ON_CONTROL' },
    { name: 'RSV2', opts: { rsv1Allowed: true }, stream: c(2, 'x', { rsv2: true }), code: 1002, errorCode: 'RSV2_RSV3_SET' },
    { name: 'RSV3', opts: { rsv1Allowed: true }, stream: c(2, 'x', { rsv3: true }), code: 1002, errorCode: 'RSV2_RSV3_SET' },
    { name: 'ping of 126 bytes', stream: c(9, Buffer.alloc(126)), code: 1002, errorCode: 'CONTROL_TOO_LONG' },
    { name: 'close of 200 bytes', stream: c(8, closeBody(1000, 'x'.repeat(198))), code: 1002, errorCode: 'CONTROL_TOO_LONG' },
    { name: 'ping without FIN', stream: c(9, 'p', { fin: false }), code: 1002, errorCode: 'CONTROL_FRAGMENTED' },
    { name: 'continuation without a message', stream: c(0, 'x'), code: 1002, errorCode: 'UNEXPECTED_CONTINUATION' },
    {
      name: 'continuation after a finished message',
      stream: Buffer.concat([c(1, 'done'), c(0, 'x')]),
      code: 1002,
      errorCode: 'UNEXPECTED_CONTINUATION',
    },
    {
      name: 'new data frame while a message is in progress',
      stream: Buffer.concat([c(1, 'a', { fin: false }), c(2, 'b')]),
      code: 1002,
      errorCode: 'MESSAGE_IN_PROGRESS',
    },
    { name: '64-bit length with the top bit set', stream: c(2, '', { fakeLength64: 1n << 63n }), code: 1002, errorCode: 'LENGTH_MSB_SET' },
    { name: '64-bit length of 2^53', stream: c(2, '', { fakeLength64: 1n << 53n }), code: 1009, errorCode: 'LENGTH_UNSUPPORTED' },
    { name: 'close payload of 1 byte', stream: c(8, Buffer.from([3])), code: 1002, errorCode: 'CLOSE_PAYLOAD_ONE_BYTE' },
    ...[0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535].map((code) => ({
      name: `close code ${code}`,
      stream: c(8, closeBody(code)),
      code: 1002,
      errorCode: 'INVALID_CLOSE_CODE' as const,
    })),
    {
      name: 'close reason not UTF-8',
      stream: c(8, closeBody(1000, Buffer.from([0x61, 0xc3, 0x28]))),
      code: 1007,
      errorCode: 'INVALID_CLOSE_REASON',
    },
    {
      name: 'close reason with an unpaired surrogate (CESU-8)',
      stream: c(8, closeBody(1000, Buffer.from([0xed, 0xa0, 0x80]))),
      code: 1007,
      errorCode: 'INVALID_CLOSE_REASON',
    },
    { name: 'message over maxMessageBytes', opts: { maxMessageBytes: 10 }, stream: c(2, Buffer.alloc(11)), code: 1009, errorCode: 'MESSAGE_TOO_BIG' },
    {
      name: 'fragments over maxMessageBytes together',
      opts: { maxMessageBytes: 10 },
      stream: Buffer.concat([c(2, Buffer.alloc(6), { fin: false }), c(9, 'ping'), c(0, Buffer.alloc(5))]),
      code: 1009,
      errorCode: 'MESSAGE_TOO_BIG',
    },
  ];

  for (const tc of bad) {
    void it(`rejects ${tc.name}`, () => {
      const opts = { ...CLIENT, ...tc.opts };
      const whole = run(opts, [tc.stream]);
      assert.equal(whole.code, tc.code);
      assert.equal(whole.tracker.errorCode, tc.errorCode);
      assert.match(whole.tracker.error ?? '', /RFC|message exceeds|2\^53/);
      // The same verdict when the stream arrives one byte at a time.
      const bytewise = run(opts, chunksOf(tc.stream, 1));
      assert.equal(bytewise.code, tc.code);
      assert.equal(bytewise.tracker.errorCode, tc.errorCode);
      // A failed tracker stays failed.
      assert.equal(whole.tracker.scan(c(1, 'ok')), tc.code);
    });
  }

  const good: { name: string; opts?: Partial<FrameTrackerOptions>; stream: Buffer; events: Ev[] }[] = [
    {
      name: 'RSV1 on the first frame when permessage-deflate is negotiated',
      opts: { rsv1Allowed: true },
      stream: Buffer.concat([c(1, 'ab', { fin: false, rsv1: true }), c(0, 'cd')]),
      events: [{ kind: 'message', opcode: 1, bytes: 4 }],
    },
    {
      name: 'server frames unmasked',
      opts: SERVER,
      stream: s(2, 'xyz'),
      events: [{ kind: 'message', opcode: 2, bytes: 3 }],
    },
    {
      name: 'non-minimal 16-bit length (5 bytes)',
      stream: c(1, 'hello', { lengthBits: 16 }),
      events: [{ kind: 'message', opcode: 1, bytes: 5 }],
    },
    {
      name: 'non-minimal 64-bit length (300 bytes)',
      stream: c(2, Buffer.alloc(300), { lengthBits: 64 }),
      events: [{ kind: 'message', opcode: 2, bytes: 300 }],
    },
    {
      name: 'message of exactly maxMessageBytes, in fragments, twice (the count resets per message)',
      opts: { maxMessageBytes: 10 },
      stream: Buffer.concat([c(2, Buffer.alloc(4), { fin: false }), c(0, Buffer.alloc(6)), c(1, Buffer.alloc(10))]),
      events: [
        { kind: 'message', opcode: 2, bytes: 10 },
        { kind: 'message', opcode: 1, bytes: 10 },
      ],
    },
    {
      name: 'control frames do not count towards maxMessageBytes',
      opts: { maxMessageBytes: 1 },
      stream: Buffer.concat([c(9, 'x'.repeat(125)), c(1, 'a')]),
      events: [
        { kind: 'control', opcode: 9, payload: Buffer.from('x'.repeat(125)).toString('hex'), start: 0, end: 131 },
        { kind: 'message', opcode: 1, bytes: 1 },
      ],
    },
    {
      name: 'empty close frame',
      stream: c(8),
      events: [{ kind: 'control', opcode: 8, payload: '', start: 0, end: 6 }],
    },
  ];
  for (const tc of good) {
    void it(`accepts ${tc.name}`, () => {
      const r = run({ ...CLIENT, ...tc.opts }, [tc.stream]);
      assert.equal(r.code, 0, r.tracker.error ?? '');
      assert.deepEqual(r.events, tc.events);
      assert.equal(r.tracker.atFrameBoundary, true);
    });
  }

  void it('accepts every close code valid on the wire, with a UTF-8 reason', () => {
    const codes = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999];
    for (const code of codes) {
      const r = run(CLIENT, [c(8, closeBody(code, 'bye ünïcode ✓'))]);
      assert.equal(r.code, 0, `code ${code}: ${r.tracker.error}`);
      assert.equal(r.events.length, 1);
      const ev = r.events[0];
      assert.ok(ev?.kind === 'control');
      assert.equal(Buffer.from(ev.payload, 'hex').readUInt16BE(0), code);
      assert.equal(Buffer.from(ev.payload, 'hex').subarray(2).toString(), 'bye ünïcode ✓');
    }
  });

  void it('rejects a too-big message on its header, before any payload arrives', () => {
    const frame = c(2, Buffer.alloc(70000));
    const r = run({ ...CLIENT, maxMessageBytes: 65536 }, [frame.subarray(0, 14)]);
    assert.equal(r.code, 1009);
  });

  void it('stops at a Close frame and ignores what follows it', () => {
    const close = c(8, closeBody(1000));
    const stream = Buffer.concat([c(1, 'a'), close, Buffer.from([0xff, 0xff, 0xff])]);
    const r = run(CLIENT, [stream, s(1, 'garbage')]);
    assert.equal(r.code, 0);
    assert.equal(r.tracker.closed, true);
    assert.deepEqual(r.events, [
      { kind: 'message', opcode: 1, bytes: 1 },
      { kind: 'control', opcode: 8, payload: closeBody(1000).toString('hex'), start: 7, end: 7 + close.length },
    ]);
    // The boundary reported for the first chunk is the end of the Close frame.
    assert.equal(r.boundaries[0], 7 + close.length);
  });

  void it('reports the boundary before the offending frame on failure', () => {
    const good1 = c(1, 'abc');
    const r = run(CLIENT, [Buffer.concat([good1, s(1, 'bad')])]);
    assert.equal(r.code, 1002);
    assert.equal(r.tracker.lastBoundary, good1.length);
  });

  void it('refuses a negative or fractional maxMessageBytes', () => {
    assert.throws(() => new FrameTracker({ ...CLIENT, maxMessageBytes: -1 }, new Recorder()), RangeError);
    assert.throws(() => new FrameTracker({ ...CLIENT, maxMessageBytes: 1.5 }, new Recorder()), RangeError);
  });
});

void describe('FrameTracker: chunking', () => {
  const sizes = [0, 1, 125, 126, 127, 300, 65535, 65536, 70000];
  const payload = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff));

  for (const masked of [true, false]) {
    const mk = masked ? c : s;
    const opts = masked ? CLIENT : SERVER;
    const frames = [
      mk(9, 'ping!'),
      ...sizes.map((n, i) => mk(i % 2 ? 1 : 2, payload(n))),
      mk(2, payload(40), { fin: false }),
      mk(10, payload(125)),
      mk(0, payload(200), { fin: false }),
      mk(0, payload(3)),
      mk(8, closeBody(1001, 'going away')),
    ];
    const stream = Buffer.concat(frames);
    const starts: number[] = [];
    frames.reduce((at, f) => (starts.push(at), at + f.length), 0);
    const reference = run(opts, [stream]);

    void it(`reports the expected events for the whole stream (${masked ? 'masked' : 'unmasked'})`, () => {
      assert.equal(reference.code, 0, reference.tracker.error ?? '');
      const messages = reference.events.filter((e) => e.kind === 'message');
      assert.deepEqual(
        messages.map((e) => e.bytes),
        [...sizes, 243],
      );
      const controls = reference.events.filter((e) => e.kind === 'control');
      assert.deepEqual(
        controls.map((e) => [e.opcode, e.start, e.end]),
        [
          [9, 0, frames[0]!.length],
          [10, starts[sizes.length + 2]!, starts[sizes.length + 3]!],
          [8, starts[frames.length - 1]!, stream.length],
        ],
      );
      assert.equal(controls[0]?.payload, Buffer.from('ping!').toString('hex'));
      assert.equal(controls[1]?.payload, payload(125).toString('hex'));
      assert.equal(controls[2]?.payload, closeBody(1001, 'going away').toString('hex'));
    });

    void it(`gives the same events when split in two at every byte of every header (${masked ? 'masked' : 'unmasked'})`, () => {
      for (const start of starts) {
        for (let k = 0; k <= 15; k++) {
          const at = start + k;
          if (at > stream.length) continue;
          const r = run(opts, splitAt(stream, [at]));
          assert.equal(r.code, 0);
          assert.deepEqual(r.events, reference.events, `split at ${at}`);
        }
      }
    });

    void it(`gives the same events one byte per chunk (${masked ? 'masked' : 'unmasked'})`, () => {
      const r = run(opts, chunksOf(stream, 1));
      assert.equal(r.code, 0);
      assert.deepEqual(r.events, reference.events);
      // Every frame end is reported as a boundary, and nothing else is.
      const ends = new Set([...starts.slice(1), stream.length]);
      assert.deepEqual(new Set(r.boundaries.filter((b) => b > 0)), ends);
    });

    void it(`gives the same events with 3-way splits inside a header and its payload (${masked ? 'masked' : 'unmasked'})`, () => {
      for (const start of starts.slice(1, 6)) {
        for (let a = 1; a < 14; a += 3) {
          for (let b = a + 1; b < a + 20; b += 4) {
            const r = run(
              opts,
              splitAt(
                stream,
                [start + a, start + b].filter((p) => p <= stream.length),
              ),
            );
            assert.deepEqual(r.events, reference.events, `split at ${start + a}, ${start + b}`);
          }
        }
      }
    });
  }

  void it('reports a close code whose payload is split across chunks, with a negative frameStart', () => {
    const prefix = c(1, 'hello');
    const close = c(8, closeBody(4321, 'split reason'));
    const stream = Buffer.concat([prefix, close]);
    for (let at = prefix.length + 1; at < stream.length; at++) {
      const controls: { payload: Buffer; start: number; end: number }[] = [];
      const tracker = new FrameTracker(CLIENT, {
        onControl: (_op, p, start, end) => controls.push({ payload: Buffer.from(p), start, end }),
        onMessage: () => {},
      });
      assert.equal(tracker.scan(stream.subarray(0, at)), 0);
      assert.equal(controls.length, 0);
      assert.equal(tracker.atFrameBoundary, false);
      assert.equal(tracker.lastBoundary, prefix.length);
      assert.equal(tracker.scan(stream.subarray(at)), 0);
      assert.equal(controls.length, 1);
      assert.equal(controls[0]?.payload.readUInt16BE(0), 4321);
      assert.equal(controls[0]?.payload.subarray(2).toString(), 'split reason');
      assert.equal(controls[0]?.start, prefix.length - at);
      assert.equal(controls[0]?.end, stream.length - at);
    }
  });

  void it('tracks payload sizes 0, 125, 126, 65535, 65536 and 16 MiB (in 64 KiB chunks)', () => {
    for (const n of [0, 125, 126, 65535, 65536, 16 * 1024 * 1024]) {
      const frame = c(2, Buffer.alloc(n, 0x5a));
      const chunks = chunksOf(frame, 64 * 1024);
      const r = run(CLIENT, chunks);
      assert.equal(r.code, 0);
      assert.deepEqual(r.events, [{ kind: 'message', opcode: 2, bytes: n }]);
      assert.equal(r.tracker.atFrameBoundary, true);
      // Chunks wholly inside the payload hold no boundary.
      if (chunks.length > 2) assert.equal(r.boundaries.length, 2); // the start (0) and the end
    }
  });

  void it('handles pings and pongs between fragments', () => {
    const stream = Buffer.concat([c(1, 'Hel', { fin: false }), c(9, 'p1'), c(0, 'lo, ', { fin: false }), c(10, 'p2'), c(9, ''), c(0, 'world'), c(2, 'after')]);
    for (const size of [1, 2, 3, 5, 7, 11, stream.length]) {
      const r = run(CLIENT, chunksOf(stream, size));
      assert.equal(r.code, 0);
      assert.deepEqual(
        r.events.map((e) => (e.kind === 'message' ? `msg ${e.opcode} ${e.bytes}` : `ctl ${e.opcode} ${Buffer.from(e.payload, 'hex')}`)),
        ['ctl 9 p1', 'ctl 10 p2', 'ctl 9 ', 'msg 1 12', 'msg 2 5'],
      );
    }
  });

  void it('lets the relay drop a pong by its offsets', () => {
    const a = c(1, 'before');
    const pong = c(10, 'gw-ping-7');
    const b = c(2, 'after');
    const chunk = Buffer.concat([a, pong, b]);
    const kept: Buffer[] = [];
    let cut = 0;
    const tracker = new FrameTracker(CLIENT, {
      onControl(opcode, payload, start, end) {
        if (opcode === 10 && payload.toString() === 'gw-ping-7' && start >= 0) {
          kept.push(chunk.subarray(cut, start));
          cut = end;
        }
      },
      onMessage() {},
    });
    assert.equal(tracker.scan(chunk), 0);
    kept.push(chunk.subarray(cut));
    assert.deepEqual(Buffer.concat(kept), Buffer.concat([a, b]));
  });

  void it('gives lastBoundary -1 inside a frame, the last frame end otherwise', () => {
    const a = c(2, Buffer.alloc(10));
    const big = c(2, Buffer.alloc(1000));
    const tracker = new FrameTracker(CLIENT, new Recorder());
    assert.equal(tracker.atFrameBoundary, true);
    tracker.scan(Buffer.concat([a, a, big.subarray(0, 3)]));
    assert.equal(tracker.lastBoundary, 2 * a.length);
    assert.equal(tracker.atFrameBoundary, false);
    tracker.scan(big.subarray(3, 500));
    assert.equal(tracker.lastBoundary, -1);
    tracker.scan(big.subarray(500));
    assert.equal(tracker.lastBoundary, big.length - 500);
    assert.equal(tracker.atFrameBoundary, true);
    tracker.scan(a.subarray(0, 1));
    assert.equal(tracker.lastBoundary, 0);
    assert.equal(tracker.messageInProgress, false);
  });
});

// ---------------------------------------------------------------------------
// Property test: frames built by ws's own Sender, random chunking.

interface SenderLike {
  frame(data: Buffer, options: { fin: boolean; mask: boolean; opcode: number; readOnly: boolean; rsv1: boolean }): Buffer[];
}
const Sender = (wsModule as unknown as { Sender: SenderLike }).Sender;

type Piece =
  { kind: 'data'; opcode: number; fragments: number[]; controls: { opcode: number; size: number }[][] } | { kind: 'control'; opcode: number; size: number };

const controlArb = fc.record({ opcode: fc.constantFrom(9, 10), size: fc.integer({ min: 0, max: 125 }) });
const pieceArb: fc.Arbitrary<Piece> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({
        opcode: fc.constantFrom(1, 2),
        fragments: fc.array(fc.integer({ min: 0, max: 3000 }), { minLength: 1, maxLength: 4 }),
        between: fc.array(fc.array(controlArb, { maxLength: 2 }), { minLength: 3, maxLength: 3 }),
      })
      .map((r) => ({ kind: 'data' as const, opcode: r.opcode, fragments: r.fragments, controls: r.between })),
  },
  { weight: 1, arbitrary: controlArb.map((r) => ({ kind: 'control' as const, ...r })) },
);

void describe('FrameTracker: property', () => {
  void it('reports exactly the frames ws encoded, under any chunking, and never alters a byte', () => {
    fc.assert(
      fc.property(
        fc.array(pieceArb, { maxLength: 12 }),
        fc.boolean(),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 30 }),
        (pieces, masked, withClose, cutSeeds) => {
          const parts: Buffer[] = [];
          const expected: Ev[] = [];
          const ends: number[] = [];
          let at = 0;
          let fill = 1;
          const emit = (opcode: number, data: Buffer, fin: boolean): void => {
            const frame = Buffer.concat(Sender.frame(Buffer.from(data), { fin, mask: masked, opcode, readOnly: false, rsv1: false }));
            if (opcode >= 8) expected.push({ kind: 'control', opcode, payload: data.toString('hex'), start: at, end: at + frame.length });
            parts.push(frame);
            at += frame.length;
            ends.push(at);
          };
          const bytes = (n: number): Buffer => Buffer.alloc(n, fill++ & 0xff);
          for (const p of pieces) {
            if (p.kind === 'control') {
              emit(p.opcode, bytes(p.size), true);
              continue;
            }
            p.fragments.forEach((size, i) => {
              const last = i === p.fragments.length - 1;
              emit(i === 0 ? p.opcode : 0, bytes(size), last);
              if (!last) for (const ctl of p.controls[i % 3] ?? []) emit(ctl.opcode, bytes(ctl.size), true);
            });
            expected.push({ kind: 'message', opcode: p.opcode, bytes: p.fragments.reduce((a, b) => a + b, 0) });
          }
          if (withClose) emit(8, closeBody(1000, 'fin'), true);

          const stream = Buffer.concat(parts);
          const pristine = Buffer.from(stream);
          const cuts = stream.length === 0 ? [] : [...new Set(cutSeeds.map((x) => x % (stream.length + 1)))];
          const chunks = splitAt(stream, cuts);
          const r = run({ fromClient: masked, rsv1Allowed: false, maxMessageBytes: 0 }, chunks);

          assert.equal(r.code, 0, r.tracker.error ?? '');
          assert.deepEqual(r.events, expected);
          assert.equal(r.tracker.atFrameBoundary, true);
          assert.equal(r.tracker.closed, withClose);
          assert.deepEqual(Buffer.concat(chunks), pristine);
          // Each reported boundary is a frame boundary, and the last one in its chunk.
          const all = new Set([0, ...ends]);
          let base = 0;
          const rec = new Recorder();
          const t = new FrameTracker({ fromClient: masked, rsv1Allowed: false, maxMessageBytes: 0 }, rec);
          for (const chunk of chunks) {
            rec.chunkLength = chunk.length;
            t.scan(chunk);
            const b = t.lastBoundary;
            const inChunk = [...all].filter((x) => x >= base && x <= base + chunk.length);
            if (inChunk.length === 0) assert.equal(b, -1);
            else assert.equal(base + b, Math.max(...inChunk));
            base += chunk.length;
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

const QUIET: FrameEvents = { onControl() {}, onMessage() {} };

void describe('FrameTracker: what a holding relay and a rate gate need', () => {
  void it('openBytes counts an unfinished header or control frame at the end of the stream, and nothing else', () => {
    const frames = [
      c(9, 'ping'),
      c(1, Buffer.alloc(300, 0x61)),
      c(2, Buffer.alloc(3), { lengthBits: 64 }),
      c(10, Buffer.alloc(125)),
      c(8, closeBody(1000, 'bye')),
    ];
    const stream = Buffer.concat(frames);
    // [start, header length, control?] per frame.
    const spans: [number, number, boolean][] = [];
    let at = 0;
    for (const f of frames) {
      const len7 = f[1]! & 0x7f;
      spans.push([at, 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + 4, (f[0]! & 0x0f) >= 8]);
      at += f.length;
    }
    for (let k = 0; k <= stream.length; k++) {
      const t = new FrameTracker(CLIENT, QUIET);
      assert.equal(t.scan(stream.subarray(0, k)), 0);
      const span = spans.findLast(([start]) => start < k);
      const inFrame = span !== undefined && k < span[0] + frames[spans.indexOf(span)]!.length;
      const want = span === undefined || !inFrame ? 0 : span[2] || k - span[0] < span[1] ? k - span[0] : 0;
      assert.equal(t.openBytes, want, `after ${k} bytes`);
      assert.ok(t.openBytes <= 131);
    }
    // The same count when the stream came one byte at a time.
    const t = new FrameTracker(CLIENT, QUIET);
    for (let k = 0; k < 3; k++) t.scan(frames[3]!.subarray(k, k + 1));
    assert.equal(t.openBytes, 3);
    // 0 after a failure.
    assert.equal(t.scan(Buffer.from([0xff, 0xff, 0xff])), 0);
    const bad = new FrameTracker(CLIENT, QUIET);
    bad.scan(s(1, 'x'));
    assert.equal(bad.openBytes, 0);
  });

  void it('the gate hears each data message begin, at its first frame, once its header is valid', () => {
    const starts: number[] = [];
    const stream = Buffer.concat([c(1, 'a', { fin: false }), c(9, 'p'), c(0, 'b'), c(2, 'cd'), c(10), c(2, Buffer.alloc(20))]);
    const t = new FrameTracker({ ...CLIENT, maxMessageBytes: 10, gate: { onMessageStart: (at) => starts.push(at) } }, QUIET);
    assert.equal(t.scan(stream), 1009);
    const a = c(1, 'a', { fin: false }).length + c(9, 'p').length + c(0, 'b').length;
    assert.deepEqual(starts, [0, a]);
    // A header split across chunks: the offset is negative, from the chunk that completes it.
    const heard: number[] = [];
    const u = new FrameTracker({ ...CLIENT, gate: { onMessageStart: (at) => heard.push(at) } }, QUIET);
    const f = c(2, 'xyz');
    u.scan(f.subarray(0, 3));
    assert.deepEqual(heard, []);
    u.scan(f.subarray(3));
    assert.deepEqual(heard, [-3]);
  });

  void it('the payload sink is shown empty data frames too, so a message ending in one is checked where it ends', () => {
    const seen: [number, number, number][] = [];
    const stream = Buffer.concat([c(1, 'ab', { fin: false }), c(0, '')]);
    const t = new FrameTracker({ ...CLIENT, payload: { onPayload: (_chunk, start, end, _phase, frameStart) => seen.push([start, end, frameStart]) } }, QUIET);
    assert.equal(t.scan(stream), 0);
    const second = c(1, 'ab', { fin: false }).length;
    assert.deepEqual(seen, [
      [6, 8, 0],
      [second + 6, second + 6, second],
    ]);
  });
});
