// Micro-benchmark of the inspect relay's frame tracker.
//   node --import tsx bench/frame-parser.ts
// Figures only; nothing here asserts on time.

import { FrameTracker } from '../src/relay/frame-parser.js';
import type { FrameEvents } from '../src/relay/frame-parser.js';
import { encodeFrame, Opcode } from '../src/relay/frames.js';

const FRAMES = 1_000_000;

class Counter implements FrameEvents {
  messages = 0;
  bytes = 0;
  controls = 0;
  onControl(): void {
    this.controls++;
  }
  onMessage(_opcode: number, bytes: number): void {
    this.messages++;
    this.bytes += bytes;
  }
}

function tracker(events: FrameEvents): FrameTracker {
  return new FrameTracker({ fromClient: true, rsv1Allowed: false, maxMessageBytes: 1024 * 1024 }, events);
}

function report(name: string, ns: number, units: number, unit: string, extra = ''): void {
  console.log(`${name.padEnd(52)} ${(ns / units).toFixed(1).padStart(8)} ns/${unit}${extra}`);
}

function time(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0);
}

function onePerChunk(): void {
  const frame = encodeFrame(Opcode.BINARY, Buffer.alloc(64, 0x61), true);
  const events = new Counter();
  const t = tracker(events);
  const ns = time(() => {
    for (let i = 0; i < FRAMES; i++) if (t.scan(frame) !== 0) throw new Error(t.error ?? '');
  });
  if (events.messages !== FRAMES) throw new Error(`saw ${events.messages} messages`);
  report(`${FRAMES} x 64-byte masked frames, one per chunk`, ns, FRAMES, 'frame');
}

function sliced(chunkSize: number, payload: number): void {
  const perStream = 10_000;
  const one = encodeFrame(Opcode.BINARY, Buffer.alloc(payload, 0x61), true);
  const stream = Buffer.concat(Array.from({ length: perStream }, () => one));
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i += chunkSize) chunks.push(stream.subarray(i, i + chunkSize));
  const rounds = FRAMES / perStream;
  const events = new Counter();
  const t = tracker(events);
  const ns = time(() => {
    for (let r = 0; r < rounds; r++) {
      for (const chunk of chunks) if (t.scan(chunk) !== 0) throw new Error(t.error ?? '');
    }
  });
  if (events.messages !== FRAMES) throw new Error(`saw ${events.messages} messages`);
  const mbps = (stream.length * rounds) / (ns / 1e9) / 1e6;
  report(`${FRAMES} x ${payload}-byte masked frames, ${chunkSize / 1024} KiB chunks`, ns, FRAMES, 'frame', `  (${mbps.toFixed(0)} MB/s)`);
}

function bigMessages(): void {
  const size = 16 * 1024 * 1024;
  const frame = encodeFrame(Opcode.BINARY, Buffer.alloc(size), true);
  const chunks: Buffer[] = [];
  for (let i = 0; i < frame.length; i += 64 * 1024) chunks.push(frame.subarray(i, i + 64 * 1024));
  const rounds = 50;
  const events = new Counter();
  const t = new FrameTracker({ fromClient: true, rsv1Allowed: false, maxMessageBytes: 0 }, events);
  const ns = time(() => {
    for (let r = 0; r < rounds; r++) for (const chunk of chunks) t.scan(chunk);
  });
  if (events.messages !== rounds) throw new Error(`saw ${events.messages} messages`);
  report(`${rounds} x 16 MiB masked messages, 64 KiB chunks`, ns, rounds * chunks.length, 'chunk');
}

function pingsBetweenFragments(): void {
  const parts = [
    encodeFrame(Opcode.TEXT, Buffer.alloc(40), true, false),
    encodeFrame(Opcode.PING, Buffer.alloc(8), true),
    encodeFrame(Opcode.CONTINUATION, Buffer.alloc(40), true),
  ];
  const unit = Buffer.concat(parts);
  const stream = Buffer.concat(Array.from({ length: 10_000 }, () => unit));
  const chunks: Buffer[] = [];
  for (let i = 0; i < stream.length; i += 16 * 1024) chunks.push(stream.subarray(i, i + 16 * 1024));
  const events = new Counter();
  const t = tracker(events);
  const rounds = 100;
  const ns = time(() => {
    for (let r = 0; r < rounds; r++) for (const chunk of chunks) t.scan(chunk);
  });
  if (events.controls !== rounds * 10_000) throw new Error(`saw ${events.controls} controls`);
  report(`${rounds * 30_000} frames (fragments + masked 8-byte pings), 16 KiB`, ns, rounds * 30_000, 'frame');
}

// Warm up once so the JIT has settled, then measure.
for (const pass of ['warm-up', 'measured']) {
  if (pass === 'measured') console.log(`node ${process.version}, ${process.arch}`);
  const quiet = pass === 'warm-up';
  const log = console.log;
  if (quiet) console.log = () => {};
  try {
    onePerChunk();
    sliced(16 * 1024, 64);
    sliced(64 * 1024, 64);
    sliced(16 * 1024, 1024);
    pingsBetweenFragments();
    bigMessages();
  } finally {
    console.log = log;
  }
}
