// Encoding of the frames the gateway itself writes into a relayed stream:
// Close, Ping and Pong (RFC 6455 §5.5), plus the opcode and close-code tables
// the frame tracker and the relay share.
//
// Frames written towards an upstream are written "as a client" and therefore
// masked (§5.3) with a fresh key; frames written towards a client are not.
// These run once per ping or close, not per message, so a fresh Buffer per
// frame is fine; mask keys come from a pooled block of random bytes so a
// ping does not cost a trip into the CSPRNG.

import { randomFillSync } from 'node:crypto';

export const Opcode = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** Close codes the gateway itself sends (RFC 6455 §7.4.1). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  /** Only ever a local status: "no code in the Close frame" — never on the wire. */
  NO_STATUS: 1005,
  INVALID_PAYLOAD: 1007,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  SERVICE_RESTART: 1012,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

const EMPTY = Buffer.alloc(0);

/** Largest payload of a control frame (§5.5). */
export const MAX_CONTROL_PAYLOAD = 125;

/**
 * Whether `code` may appear in a Close frame on the wire (§7.4): 1000-1003,
 * 1007-1014 and the registered/private ranges 3000-4999. 1004 is reserved,
 * 1005/1006/1015 are local-only.
 */
export function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/**
 * XOR `buf` in place with the 4-byte `key` (§5.3). Masking and unmasking are
 * the same operation. `phase` is the index of `buf[0]` within the masked
 * payload, so a payload can be (un)masked piecewise as it arrives.
 */
export function applyMask(buf: Uint8Array, key: Uint8Array, phase = 0): void {
  const k0 = key[0]!;
  const k1 = key[1]!;
  const k2 = key[2]!;
  const k3 = key[3]!;
  if ((k0 | k1 | k2 | k3) === 0) return;
  for (let i = 0; i < buf.length; i++) {
    const j = (i + phase) & 3;
    buf[i]! ^= j === 0 ? k0 : j === 1 ? k1 : j === 2 ? k2 : k3;
  }
}

const POOL_SIZE = 8 * 1024;
const randomPool = Buffer.allocUnsafe(POOL_SIZE);
let poolPointer = POOL_SIZE;

function nextMaskKey(target: Buffer, offset: number): void {
  if (poolPointer === POOL_SIZE) {
    randomFillSync(randomPool, 0, POOL_SIZE);
    poolPointer = 0;
  }
  randomPool.copy(target, offset, poolPointer, poolPointer + 4);
  poolPointer += 4;
}

/**
 * Encode one complete frame with `payload` (any length; 7-, 16- or 64-bit
 * length field, always the minimal one). `mask`: true for frames sent to a
 * server (a fresh random key is drawn), false for frames sent to a client.
 * The payload is copied, never modified.
 */
export function encodeFrame(opcode: number, payload: Uint8Array, mask: boolean, fin = true, rsv1 = false): Buffer {
  const n = payload.length;
  const lenBytes = n > 0xffff ? 8 : n > 125 ? 2 : 0;
  const headerSize = 2 + lenBytes + (mask ? 4 : 0);
  const frame = Buffer.allocUnsafe(headerSize + n);
  frame[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f);
  if (lenBytes === 0) {
    frame[1] = n;
  } else if (lenBytes === 2) {
    frame[1] = 126;
    frame.writeUInt16BE(n, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(n / 0x100000000), 2);
    frame.writeUInt32BE(n >>> 0, 6);
  }
  frame.set(payload, headerSize);
  if (mask) {
    frame[1]! |= 0x80;
    const keyAt = headerSize - 4;
    nextMaskKey(frame, keyAt);
    applyMask(frame.subarray(headerSize), frame.subarray(keyAt, headerSize));
  }
  return frame;
}

function encodeControl(opcode: number, payload: Uint8Array, mask: boolean): Buffer {
  if (payload.length > MAX_CONTROL_PAYLOAD) {
    throw new RangeError(`control frame payload is ${payload.length} bytes; at most ${MAX_CONTROL_PAYLOAD} allowed`);
  }
  return encodeFrame(opcode, payload, mask);
}

/**
 * A Close frame carrying `code` and `reason`. `code` must be valid on the wire
 * (see isValidCloseCode), or CloseCode.NO_STATUS for an empty Close frame (then
 * `reason` must be empty). A reason longer than the 123 bytes a control frame
 * leaves for it is cut at a UTF-8 character boundary rather than rejected, so a
 * descriptive reason can never turn a close into an exception.
 */
export function encodeClose(code: number, reason: string, mask: boolean): Buffer {
  if (code === CloseCode.NO_STATUS) {
    if (reason !== '') throw new RangeError('a Close frame without a status code cannot carry a reason');
    return encodeFrame(Opcode.CLOSE, EMPTY, mask);
  }
  if (!Number.isInteger(code) || !isValidCloseCode(code)) {
    throw new RangeError(`invalid close code ${code}`);
  }
  const body = Buffer.allocUnsafe(2 + Buffer.byteLength(reason));
  body.writeUInt16BE(code, 0);
  let n = 2 + body.write(reason, 2);
  if (n > MAX_CONTROL_PAYLOAD) {
    n = MAX_CONTROL_PAYLOAD;
    // Back up over continuation bytes (10xxxxxx) so no character is split.
    while (n > 2 && (body[n]! & 0xc0) === 0x80) n--;
  }
  return encodeFrame(Opcode.CLOSE, body.subarray(0, n), mask);
}

/** A Ping frame (payload ≤ 125 bytes, else RangeError). */
export function encodePing(payload: Uint8Array, mask: boolean): Buffer {
  return encodeControl(Opcode.PING, payload, mask);
}

/** A Pong frame (payload ≤ 125 bytes, else RangeError); answers a Ping with its payload (§5.5.3). */
export function encodePong(payload: Uint8Array, mask: boolean): Buffer {
  return encodeControl(Opcode.PONG, payload, mask);
}
