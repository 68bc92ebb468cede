// Streaming UTF-8 validation of masked text payloads (relay.validateUtf8).
//
// A text message arrives in pieces — fragments, chunks — and a character may
// straddle any two of them. Each piece is unmasked into a scratch buffer
// (never in place: the relay forwards the original bytes, still masked), the
// bytes of a character cut short at its end are held back, and the rest is
// checked with buffer.isUtf8 (native, fast). The held-back bytes lead the
// next piece; a message may not end with any (RFC 6455 §8.1, §5.6).

import { isUtf8 } from 'node:buffer';

const CARRY_MAX = 3;
/** Piece size: a message larger than this is unmasked and checked this much at a time. */
const STEP = 16 * 1024;

/** Length of the sequence a lead byte starts; 0 for a byte that cannot lead one. */
function sequenceLength(b: number): number {
  if (b < 0x80) return 1;
  if (b < 0xc2) return 0;
  if (b < 0xe0) return 2;
  if (b < 0xf0) return 3;
  return b < 0xf5 ? 4 : 0;
}

export class Utf8Stream {
  /** Created on first use: most connections never send text that needs it. */
  #buf: Buffer | null = null;
  #carry = 0;

  /**
   * Feeds chunk[start, end), masked with `key` (4 bytes), `phase` being the
   * payload offset of chunk[start] within its frame. false: not UTF-8.
   */
  write(chunk: Buffer, start: number, end: number, key: Buffer, phase: number): boolean {
    const buf = (this.#buf ??= Buffer.allocUnsafe(CARRY_MAX + STEP));
    const k0 = key[0]!;
    const k1 = key[1]!;
    const k2 = key[2]!;
    const k3 = key[3]!;
    let pos = start;
    while (pos < end) {
      const carry = this.#carry;
      const n = Math.min(end - pos, STEP);
      for (let i = 0; i < n; i++) {
        const j = (phase + i) & 3;
        buf[carry + i] = chunk[pos + i]! ^ (j === 0 ? k0 : j === 1 ? k1 : j === 2 ? k2 : k3);
      }
      pos += n;
      phase += n;
      const total = carry + n;
      const keep = incompleteTail(buf, total);
      if (!isUtf8(buf.subarray(0, total - keep))) return false;
      buf.copy(buf, 0, total - keep, total);
      this.#carry = keep;
    }
    return true;
  }

  /** The message ended: false if a character was left incomplete. Ready for the next message. */
  end(): boolean {
    const ok = this.#carry === 0;
    this.#carry = 0;
    return ok;
  }
}

/** Bytes at the end of buf[0, total) that begin a character not finished yet (0-3). */
function incompleteTail(buf: Buffer, total: number): number {
  const from = Math.max(0, total - CARRY_MAX);
  for (let i = total - 1; i >= from; i--) {
    const b = buf[i]!;
    if ((b & 0xc0) !== 0x80) {
      // A lead byte (or an invalid one, which isUtf8 will refuse where it stands).
      const need = sequenceLength(b);
      return need > total - i ? total - i : 0;
    }
  }
  return 0;
}
