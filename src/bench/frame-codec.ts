// RFC 6455 frame headers for the load tool's client and the echo backend: one
// reused header object per reader, so parsing allocates nothing per frame.

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

/** The header of the frame being read; fields are rewritten for every frame. */
export class FrameHeader {
  fin = false;
  rsv = 0;
  opcode = 0;
  masked = false;
  payloadLength = 0;
  /** When readFrameHeader returns 0: how many bytes from the frame start are needed to read the header. */
  need = 0;
}

/**
 * Reads the frame header at buf[pos, end). Returns its length (mask key included), 0 when more bytes
 * are needed (`out.need` says how many from pos), or -1 for a 64-bit length past 2^53.
 */
export function readFrameHeader(buf: Buffer, pos: number, end: number, out: FrameHeader): number {
  const avail = end - pos;
  if (avail < 2) {
    out.need = 2;
    return 0;
  }
  const b0 = buf[pos] as number;
  const b1 = buf[pos + 1] as number;
  out.fin = (b0 & 0x80) !== 0;
  out.rsv = b0 & 0x70;
  out.opcode = b0 & 0x0f;
  out.masked = (b1 & 0x80) !== 0;
  const len7 = b1 & 0x7f;
  const maskBytes = out.masked ? 4 : 0;
  let hl: number;
  if (len7 < 126) {
    hl = 2 + maskBytes;
    out.payloadLength = len7;
  } else if (len7 === 126) {
    hl = 4 + maskBytes;
    if (avail < 4) {
      out.need = hl;
      return 0;
    }
    out.payloadLength = buf.readUInt16BE(pos + 2);
  } else {
    hl = 10 + maskBytes;
    if (avail < 10) {
      out.need = hl;
      return 0;
    }
    const high = buf.readUInt32BE(pos + 2);
    if (high > 0x1f_ffff) return -1;
    out.payloadLength = high * 0x1_0000_0000 + buf.readUInt32BE(pos + 6);
  }
  if (avail < hl) {
    out.need = hl;
    return 0;
  }
  return hl;
}

/** Length of a header for `payloadLength` bytes, with a mask key when `masked`. */
export function headerLength(payloadLength: number, masked: boolean): number {
  return (payloadLength < 126 ? 2 : payloadLength < 0x1_0000 ? 4 : 10) + (masked ? 4 : 0);
}

/**
 * Writes a final frame's header at buf[pos]; returns its length. `masked` writes an all-zero mask
 * key: valid (RFC 6455 only asks that it be unpredictable to defeat cache poisoning by browsers),
 * and it leaves the payload bytes as they are, so nobody needs to XOR them.
 */
export function writeFrameHeader(buf: Buffer, pos: number, opcode: number, payloadLength: number, masked: boolean): number {
  buf[pos] = 0x80 | opcode;
  const maskBit = masked ? 0x80 : 0;
  let p = pos + 2;
  if (payloadLength < 126) {
    buf[pos + 1] = maskBit | payloadLength;
  } else if (payloadLength < 0x1_0000) {
    buf[pos + 1] = maskBit | 126;
    buf.writeUInt16BE(payloadLength, p);
    p += 2;
  } else {
    buf[pos + 1] = maskBit | 127;
    buf.writeUInt32BE(Math.floor(payloadLength / 0x1_0000_0000), p);
    buf.writeUInt32BE(payloadLength >>> 0, p + 4);
    p += 8;
  }
  if (masked) {
    buf[p] = 0;
    buf[p + 1] = 0;
    buf[p + 2] = 0;
    buf[p + 3] = 0;
    p += 4;
  }
  return p - pos;
}

/** A whole final frame (header + payload) in a new buffer: for the rare frames (close, pong, reassembled messages). */
export function encodeFrame(opcode: number, payload: Buffer, masked: boolean): Buffer {
  const hl = headerLength(payload.length, masked);
  const out = Buffer.allocUnsafe(hl + payload.length);
  writeFrameHeader(out, 0, opcode, payload.length, masked);
  payload.copy(out, hl);
  return out;
}

/** A close frame carrying `code` (no reason). */
export function encodeClose(code: number, masked: boolean): Buffer {
  const payload = Buffer.allocUnsafe(2);
  payload.writeUInt16BE(code, 0);
  return encodeFrame(OP_CLOSE, payload, masked);
}

/** XORs buf[start, end) in place with the 4-byte key at buf[keyAt]; an all-zero key (ours) costs nothing. */
export function unmask(buf: Buffer, start: number, end: number, keyAt: number): void {
  const k0 = buf[keyAt] as number;
  const k1 = buf[keyAt + 1] as number;
  const k2 = buf[keyAt + 2] as number;
  const k3 = buf[keyAt + 3] as number;
  if ((k0 | k1 | k2 | k3) === 0) return;
  let i = start;
  const whole = start + ((end - start) & ~3);
  for (; i < whole; i += 4) {
    buf[i] = (buf[i] as number) ^ k0;
    buf[i + 1] = (buf[i + 1] as number) ^ k1;
    buf[i + 2] = (buf[i + 2] as number) ^ k2;
    buf[i + 3] = (buf[i + 3] as number) ^ k3;
  }
  if (i < end) buf[i] = (buf[i] as number) ^ k0;
  if (i + 1 < end) buf[i + 1] = (buf[i + 1] as number) ^ k1;
  if (i + 2 < end) buf[i + 2] = (buf[i + 2] as number) ^ k2;
}

/** Close codes a peer may send (RFC 6455 §7.4; 1004-1006 and 1015 are never on the wire). */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}
