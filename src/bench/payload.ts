// Every message starts with an 8-byte sequence number, so the payload stays
// exactly --size bytes and the sender needs no per-message bookkeeping: in the
// open loop, message N's intended send time is start + N / rate.
// Binary: two big-endian uint32 (high, low). Text: 8 lowercase hex digits
// (options.ts keeps a run under 2^32 messages). The rest is filler.
import { headerLength, OP_BINARY, OP_TEXT, writeFrameHeader } from './frame-codec.js';

const HEX = Buffer.from('0123456789abcdef', 'latin1');
const FILLER = 0x78; // "x": valid UTF-8, so text frames stay valid

/**
 * Whole client frames (zero mask key, so the payload goes out as it is) of `size` payload bytes,
 * copied from one template and stamped with their sequence numbers.
 */
export class FrameStamper {
  readonly #frame: Buffer;
  readonly #payloadAt: number;
  readonly #binary: boolean;

  constructor(size: number, binary: boolean) {
    this.#payloadAt = headerLength(size, true);
    this.#frame = Buffer.alloc(this.#payloadAt + size, FILLER);
    this.#binary = binary;
    writeFrameHeader(this.#frame, 0, binary ? OP_BINARY : OP_TEXT, size, true);
  }

  /** A fresh buffer each time: the socket may still hold the previous one. */
  one(seq: number): Buffer {
    const out = Buffer.allocUnsafe(this.#frame.length);
    this.#frame.copy(out);
    writeSequence(out, this.#payloadAt, seq, this.#binary);
    return out;
  }
}

/** Writes `seq` into the first 8 bytes at buf[at]. */
export function writeSequence(buf: Buffer, at: number, seq: number, binary: boolean): void {
  if (binary) {
    buf.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), at);
    buf.writeUInt32BE(seq >>> 0, at + 4);
    return;
  }
  let v = seq >>> 0;
  for (let i = at + 7; i >= at; i--) {
    buf[i] = HEX[v & 0xf] as number;
    v >>>= 4;
  }
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** The sequence number of the message at buf[at, end), or -1 when it is not one of ours. */
export function readSequence(buf: Buffer, at: number, end: number, binary: boolean): number {
  if (end - at < 8) return -1;
  if (binary) return buf.readUInt32BE(at) * 0x1_0000_0000 + buf.readUInt32BE(at + 4);
  let v = 0;
  for (let i = at; i < at + 8; i++) {
    const d = hexDigit(buf[i] as number);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}
