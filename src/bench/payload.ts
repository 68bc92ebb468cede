// Every message starts with an 8-byte sequence number, so the payload stays
// exactly --size bytes and the sender needs no per-message bookkeeping: in the
// open loop, message N's intended send time is start + N / rate.
// Binary: two big-endian uint32 (high, low). Text: 8 lowercase hex digits
// (options.ts keeps a run under 2^32 messages). The rest is filler.

const HEX = Buffer.from('0123456789abcdef', 'latin1');
const FILLER = 0x78; // "x": valid UTF-8, so text frames stay valid

/** A payload of `size` bytes (at least 8) to copy each message from. */
export function createTemplate(size: number): Buffer {
  return Buffer.alloc(size, FILLER);
}

/** A fresh message carrying `seq`: the socket may still hold the previous one. */
export function buildMessage(template: Buffer, seq: number, binary: boolean): Buffer {
  const buf = Buffer.allocUnsafe(template.length);
  template.copy(buf, 8, 8);
  if (binary) {
    buf.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), 0);
    buf.writeUInt32BE(seq >>> 0, 4);
  } else {
    let v = seq >>> 0;
    for (let i = 7; i >= 0; i--) {
      buf[i] = HEX[v & 0xf] as number;
      v >>>= 4;
    }
  }
  return buf;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** The sequence number in an echoed message, or -1 when it is not one of ours. */
export function readSequence(data: Buffer, binary: boolean): number {
  if (data.length < 8) return -1;
  if (binary) return data.readUInt32BE(0) * 0x1_0000_0000 + data.readUInt32BE(4);
  let v = 0;
  for (let i = 0; i < 8; i++) {
    const d = hexDigit(data[i] as number);
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}
