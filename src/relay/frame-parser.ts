// Incremental WebSocket frame tracker for the inspect relay (RFC 6455 §5).
//
// It watches a byte stream go by without owning it: the relay hands it every
// chunk it received, then forwards that same chunk, unchanged and uncopied.
// The tracker reads frame headers and steps over payload bytes without
// touching them. Only control-frame payloads (≤ 125 bytes) are copied —
// unmasked, into a preallocated buffer, never in place — so the relay can see
// close codes and ping/pong data.
//
// Contract:
// - scan(chunk) returns 0, or the close code to fail the connection with
//   (1002 protocol error, 1007 close reason not UTF-8, 1009 message too big).
//   `error` names the RFC rule broken and `errorCode` is a stable identifier.
//   After a failure every scan returns the same code; the tracker is dead.
// - Events fire synchronously inside scan(), in stream order:
//   onControl(opcode, payload, frameStart, frameEnd) once a control frame is
//   complete and valid. `payload` is unmasked and valid only during the call.
//   frameStart/frameEnd are offsets in the chunk being scanned; frameEnd is
//   always in (0, chunk.length], frameStart is negative when the frame began
//   in an earlier chunk (-k: k bytes of it were in earlier chunks, already
//   forwarded). To drop a control frame (e.g. the pong answering the
//   gateway's own ping), forward chunk[0, frameStart) and chunk[frameEnd, ..)
//   when frameStart >= 0. A frame that straddles chunks cannot be dropped
//   because its head has gone (unless the relay held it back: `openBytes`);
//   let it through: an unsolicited Pong is legal (§5.5.3) and the peer
//   ignores it.
//   onMessage(opcode, bytes) when the last frame of a data message ends
//   (opcode 1 or 2; bytes = payload bytes on the wire, all fragments).
// - Holding back: `openBytes` is how many bytes at the end of the stream
//   scanned so far belong to a frame header, or a control frame, not
//   finished yet (at most 131). A relay that keeps those back until the frame
//   is whole never leaves its destination inside a header or control frame,
//   so a rule broken there can be answered with a Close to both peers.
// - Injecting a frame: only between frames. After scan(chunk),
//   `lastBoundary` is the largest offset b in [0, chunk.length] such that the
//   stream is between frames after chunk[0, b), or -1 when the chunk holds no
//   boundary (it lies wholly inside one frame). Forward chunk[0, b), the
//   injected frame, then chunk[b, ..). `atFrameBoundary` is the cheap check
//   for b === chunk.length (inject after the whole chunk, or right away when
//   nothing is in flight). If a boundary is needed but -1 came back, retry on
//   the next chunk. We expose a position rather than call an onBoundary
//   callback per frame: tracking it is one store per frame, and the relay
//   only looks when it has something to inject. Control frames may sit
//   between the fragments of a message (§5.4), so a frame boundary is enough.
//   After a failure, lastBoundary is the boundary before the offending frame.
// - After a Close frame the peer may send nothing more (§5.5.1): `closed`
//   turns true, onControl(0x8, ...) gave its frameEnd, and any bytes after it
//   are ignored, not validated — forward chunk[0, frameEnd) and nothing after.
//
// Decisions:
// - A length not encoded in the minimal number of bytes (§5.2 "MUST") is
//   accepted, as ws and browsers accept it: a proxy stricter than both of its
//   endpoints only breaks working peers.
// - A 64-bit length with the top bit set is 1002 (§5.2); one above 2^53-1
//   cannot be counted exactly in a JS number and is refused with 1009, as ws
//   does.
// - An invalid UTF-8 close reason is 1007 (§7.4.1, §8.1), as in ws.
// - Text messages are not UTF-8 validated here: that means touching every
//   payload byte (and inflating, under permessage-deflate); the endpoints do
//   it. A relay that wants to (relay.validateUtf8) passes a `payload` sink
//   and is shown every data payload byte range as it goes by, still masked:
//   onPayload(chunk, start, end, phase, frameStart), with `maskKey` holding the
//   frame's key and `phase` the offset of chunk[start] in the frame's payload.
//   Without a sink this costs one null check per data frame. An empty data
//   frame is shown as an empty range, so the sink sees every frame.
// - A relay that limits the message rate passes a `gate`: it is told when a
//   data message begins, once its first header is known to be valid, so a
//   message over the rate can be cut before its first byte goes out.
//   Without a gate this costs one null check per message.
// - maxMessageBytes counts wire payload bytes of the data frames of one
//   message and is checked when a header announces its length, before any of
//   that payload is forwarded. Control frames do not count.

import { isUtf8 } from 'node:buffer';
import { isValidCloseCode, MAX_CONTROL_PAYLOAD, Opcode } from './frames.js';

export interface FrameTrackerOptions {
  /** true: the stream comes from a client, every frame must be masked; false: none may be. */
  readonly fromClient: boolean;
  /** permessage-deflate was negotiated: RSV1 may be set on the first frame of a data message. */
  readonly rsv1Allowed: boolean;
  /** Largest data message, payload bytes on the wire across all its fragments; 0 = unlimited. */
  readonly maxMessageBytes: number;
  /** Shown every data payload range (see the top comment); omit unless needed. */
  readonly payload?: PayloadSink | undefined;
  /** Told when each data message begins (see the top comment); omit unless needed. */
  readonly gate?: MessageGate | undefined;
}

/** Told when a data message begins; `frameStart` is its first frame's offset in the chunk being scanned. */
export interface MessageGate {
  onMessageStart(frameStart: number): void;
}

/** Sees data-frame payload bytes as they go by (still masked: see FrameTracker.maskKey). */
export interface PayloadSink {
  onPayload(chunk: Buffer, start: number, end: number, phase: number, frameStart: number): void;
}

/** One object with methods, given at construction: no closure per frame. */
export interface FrameEvents {
  onControl(opcode: number, payload: Buffer, frameStart: number, frameEnd: number): void;
  onMessage(opcode: number, bytes: number): void;
}

export type FrameErrorCode =
  | 'RSV2_RSV3_SET'
  | 'RSV1_NOT_NEGOTIATED'
  | 'RSV1_ON_CONTINUATION'
  | 'RSV1_ON_CONTROL'
  | 'RESERVED_OPCODE'
  | 'MASK_REQUIRED'
  | 'MASK_FORBIDDEN'
  | 'CONTROL_FRAGMENTED'
  | 'CONTROL_TOO_LONG'
  | 'UNEXPECTED_CONTINUATION'
  | 'MESSAGE_IN_PROGRESS'
  | 'LENGTH_MSB_SET'
  | 'LENGTH_UNSUPPORTED'
  | 'MESSAGE_TOO_BIG'
  | 'CLOSE_PAYLOAD_ONE_BYTE'
  | 'INVALID_CLOSE_CODE'
  | 'INVALID_CLOSE_REASON';

// States of the scanning loop, named as in ws's lib/receiver.js.
const GET_HEADER = 0; // between frames, or collecting a header split across chunks
const SKIP_DATA = 1; // inside a data frame's payload: bytes are counted, not read
const GET_CONTROL = 2; // inside a control frame's payload: bytes are unmasked into scratch
const CLOSED = 3; // a Close frame was seen; nothing after it is a frame
const FAILED = 4;

// One small scratch buffer per tracker, carved in three: a header carried
// across chunks (2 + 8-byte length + 4-byte mask key), the mask key of the
// control frame being read, and that frame's unmasked payload. allocUnsafe
// takes it from Node's shared pool, so a connection does not cost an
// ArrayBuffer of its own; and it is only taken on first need (whole data
// frames never touch it), so a direction that sees only data holds none.
const HDR_AT = 0;
const MASK_AT = 14;
const CTL_AT = 18;
const SCRATCH_SIZE = CTL_AT + MAX_CONTROL_PAYLOAD;
const MAX_SAFE_HIGH_WORD = 0x1fffff; // 2^53 - 1 >> 32
const EMPTY = Buffer.alloc(0);

function headerSize(b1: number): number {
  const len7 = b1 & 0x7f;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

export class FrameTracker {
  readonly #events: FrameEvents;
  readonly #fromClient: boolean;
  readonly #rsv1Allowed: boolean;
  readonly #maxMessageBytes: number;
  readonly #sink: PayloadSink | null;
  readonly #gate: MessageGate | null;
  /** With a sink: the current data frame's mask key (zeros when unmasked). */
  readonly maskKey: Buffer | null;
  #frameLen = 0;
  #msgRsv1 = false;

  #state = GET_HEADER;
  #scratchBuf: Buffer | null = null;
  #hdrLen = 0;
  #hdrNeed = 0;

  #opcode = 0;
  #fin = false;
  #remaining = 0;
  /** Offset of the current frame's first byte relative to the chunk being scanned. */
  #frameStart = 0;

  /** Opcode (1 or 2) of the data message in progress, 0 when none. */
  #msgOpcode = 0;
  #msgBytes = 0;

  #ctlLen = 0;

  #lastBoundary = 0;
  #closeCode = 0;
  #error: string | null = null;
  #errorCode: FrameErrorCode | null = null;

  constructor(opts: FrameTrackerOptions, events: FrameEvents) {
    if (!(opts.maxMessageBytes >= 0 && Number.isSafeInteger(opts.maxMessageBytes))) {
      throw new RangeError(`maxMessageBytes must be a non-negative integer, got ${opts.maxMessageBytes}`);
    }
    this.#events = events;
    this.#fromClient = opts.fromClient;
    this.#rsv1Allowed = opts.rsv1Allowed;
    this.#maxMessageBytes = opts.maxMessageBytes;
    this.#sink = opts.payload ?? null;
    this.#gate = opts.gate ?? null;
    this.maskKey = this.#sink === null ? null : this.#scratch.subarray(MASK_AT, MASK_AT + 4);
  }

  get #scratch(): Buffer {
    return (this.#scratchBuf ??= Buffer.allocUnsafe(SCRATCH_SIZE));
  }

  /** Opcode (1 or 2) of the data message in progress, 0 when none. */
  get messageOpcode(): number {
    return this.#msgOpcode;
  }

  /** RSV1 was set on the first frame of the message in progress (permessage-deflate: compressed). */
  get messageCompressed(): boolean {
    return this.#msgRsv1;
  }

  /** True when no partial frame is outstanding: a frame may be injected after the last chunk. */
  get atFrameBoundary(): boolean {
    return (this.#state === GET_HEADER && this.#hdrLen === 0) || this.#state === CLOSED;
  }

  /** Largest offset in the last scanned chunk that lies between frames; -1 if none. */
  get lastBoundary(): number {
    return this.#lastBoundary;
  }

  /**
   * Where the next chunk will first be between frames, read before scanning
   * it: the payload bytes left in the frame in progress (0 when between
   * frames), or -1 when unknown (a header is split across chunks, or the
   * tracker failed). Lets an injected frame go at the first boundary rather
   * than the last one, at no cost to scan().
   */
  get bytesToBoundary(): number {
    const s = this.#state;
    if (s === SKIP_DATA || s === GET_CONTROL) return this.#remaining;
    if (s === GET_HEADER) return this.#hdrLen === 0 ? 0 : -1;
    return s === CLOSED ? 0 : -1;
  }

  /**
   * Bytes at the end of what was scanned that belong to a frame header, or a
   * control frame, not finished yet; 0 when none (between frames, inside a
   * data frame's payload, or after a Close or a failure). At most 131.
   */
  get openBytes(): number {
    const s = this.#state;
    return (s === GET_HEADER && this.#hdrLen !== 0) || s === GET_CONTROL ? -this.#frameStart : 0;
  }

  /** With a sink: the payload length of the current (or last) data frame. */
  get frameLength(): number {
    return this.#frameLen;
  }

  /** A data message has begun and its final frame has not ended yet. */
  get messageInProgress(): boolean {
    return this.#msgOpcode !== 0;
  }

  /** A Close frame has been seen; the stream is over. */
  get closed(): boolean {
    return this.#state === CLOSED;
  }

  /** The RFC rule broken, once scan() has returned a close code; else null. */
  get error(): string | null {
    return this.#error;
  }

  get errorCode(): FrameErrorCode | null {
    return this.#errorCode;
  }

  scan(chunk: Buffer): number {
    const len = chunk.length;
    const state = this.#state;

    // The common case for large messages: the whole chunk is payload.
    if (state === SKIP_DATA && this.#remaining > len) {
      if (this.#sink !== null) this.#sink.onPayload(chunk, 0, len, this.#frameLen - this.#remaining, this.#frameStart);
      this.#remaining -= len;
      this.#frameStart -= len;
      this.#lastBoundary = -1;
      return 0;
    }
    if (state >= CLOSED) {
      this.#lastBoundary = state === CLOSED ? 0 : -1;
      return this.#closeCode;
    }

    this.#lastBoundary = state === GET_HEADER && this.#hdrLen === 0 ? 0 : -1;
    let pos = 0;
    while (pos < len) {
      const s = this.#state;
      if (s === SKIP_DATA) {
        const rem = this.#remaining;
        if (this.#sink !== null) {
          this.#sink.onPayload(chunk, pos, rem > len - pos ? len : pos + rem, this.#frameLen - rem, this.#frameStart);
        }
        if (rem > len - pos) {
          this.#remaining = rem - (len - pos);
          break;
        }
        pos += rem;
        this.#remaining = 0;
        this.#endDataFrame(pos);
      } else if (s === GET_HEADER) {
        let parsed = false;
        if (this.#hdrLen === 0) {
          this.#frameStart = pos;
          // Fast path: the whole header is in this chunk; read it in place.
          if (len - pos >= 2) {
            const need = headerSize(chunk[pos + 1]!);
            if (len - pos >= need) {
              if (this.#parseHeader(chunk, pos) !== 0) return this.#closeCode;
              pos += need;
              parsed = true;
            }
          }
        }
        if (!parsed) {
          // Slow path: carry header bytes across chunks, at most 14 of them.
          const hdr = this.#scratch;
          while (pos < len) {
            hdr[HDR_AT + this.#hdrLen++] = chunk[pos++]!;
            if (this.#hdrLen === 2) this.#hdrNeed = headerSize(hdr[HDR_AT + 1]!);
            if (this.#hdrLen >= 2 && this.#hdrLen === this.#hdrNeed) {
              this.#hdrLen = 0;
              if (this.#parseHeader(hdr, HDR_AT) !== 0) return this.#closeCode;
              parsed = true;
              break;
            }
          }
        }
        if (parsed && this.#remaining === 0) {
          if (this.#state === SKIP_DATA) {
            if (this.#sink !== null) this.#sink.onPayload(chunk, pos, pos, 0, this.#frameStart);
            this.#endDataFrame(pos);
          } else if (this.#endControlFrame(pos) !== 0) return this.#closeCode;
        }
      } else if (s === GET_CONTROL) {
        const scratch = this.#scratch;
        let n = this.#ctlLen;
        const end = pos + Math.min(this.#remaining, len - pos);
        this.#remaining -= end - pos;
        while (pos < end) {
          scratch[CTL_AT + n] = chunk[pos++]! ^ scratch[MASK_AT + (n & 3)]!;
          n++;
        }
        this.#ctlLen = n;
        if (this.#remaining === 0 && this.#endControlFrame(pos) !== 0) return this.#closeCode;
      } else {
        break; // CLOSED: what follows the Close frame is ignored
      }
    }
    this.#frameStart -= len;
    return 0;
  }

  #parseHeader(buf: Buffer, off: number): number {
    const b0 = buf[off]!;
    const b1 = buf[off + 1]!;
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const len7 = b1 & 0x7f;

    if ((b0 & 0x30) !== 0) {
      return this.#fail(1002, 'RSV2_RSV3_SET', 'RFC 6455 §5.2: RSV2 and RSV3 must be 0 unless an extension defines them');
    }
    if (opcode >= 0x8) {
      if (opcode > 0xa) return this.#fail(1002, 'RESERVED_OPCODE', `RFC 6455 §5.2: opcode 0x${opcode.toString(16)} is reserved`);
      if (!fin) return this.#fail(1002, 'CONTROL_FRAGMENTED', 'RFC 6455 §5.5: control frames must not be fragmented (FIN must be set)');
      if (rsv1) return this.#fail(1002, 'RSV1_ON_CONTROL', 'RFC 7692 §6: RSV1 must be 0 on control frames');
      if (len7 > MAX_CONTROL_PAYLOAD) {
        return this.#fail(1002, 'CONTROL_TOO_LONG', 'RFC 6455 §5.5: control frame payload must be 125 bytes or less');
      }
      if (opcode === Opcode.CLOSE && len7 === 1) {
        return this.#fail(1002, 'CLOSE_PAYLOAD_ONE_BYTE', 'RFC 6455 §5.5.1: a Close payload starts with a 2-byte status code');
      }
    } else if (opcode === Opcode.CONTINUATION) {
      if (this.#msgOpcode === 0) {
        return this.#fail(1002, 'UNEXPECTED_CONTINUATION', 'RFC 6455 §5.4: continuation frame without a message in progress');
      }
      if (rsv1) return this.#fail(1002, 'RSV1_ON_CONTINUATION', 'RFC 7692 §6.1: RSV1 is set only on the first frame of a message');
    } else if (opcode <= Opcode.BINARY) {
      if (this.#msgOpcode !== 0) {
        return this.#fail(1002, 'MESSAGE_IN_PROGRESS', 'RFC 6455 §5.4: new data frame while a fragmented message is in progress');
      }
      if (rsv1 && !this.#rsv1Allowed) {
        return this.#fail(1002, 'RSV1_NOT_NEGOTIATED', 'RFC 6455 §5.2: RSV1 must be 0 when no extension was negotiated');
      }
    } else {
      return this.#fail(1002, 'RESERVED_OPCODE', `RFC 6455 §5.2: opcode 0x${opcode.toString(16)} is reserved`);
    }

    const masked = (b1 & 0x80) !== 0;
    if (masked !== this.#fromClient) {
      return this.#fromClient
        ? this.#fail(1002, 'MASK_REQUIRED', 'RFC 6455 §5.1: a client must mask every frame it sends')
        : this.#fail(1002, 'MASK_FORBIDDEN', 'RFC 6455 §5.1: a server must not mask any frame it sends');
    }

    let length = len7;
    let p = off + 2;
    if (len7 === 126) {
      length = buf.readUInt16BE(p);
      p += 2;
    } else if (len7 === 127) {
      const high = buf.readUInt32BE(p);
      if (high > 0x7fffffff) {
        return this.#fail(1002, 'LENGTH_MSB_SET', 'RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0');
      }
      if (high > MAX_SAFE_HIGH_WORD) {
        return this.#fail(1009, 'LENGTH_UNSUPPORTED', 'payload length above 2^53-1 is not supported');
      }
      length = high * 0x100000000 + buf.readUInt32BE(p + 4);
      p += 8;
    }

    this.#opcode = opcode;
    this.#remaining = length;
    if (opcode >= 0x8) {
      // buf may be the scratch buffer itself (a carried header): the key
      // sits at 10 at most, below MASK_AT, so this copy never overlaps.
      const scratch = this.#scratch;
      if (masked) {
        scratch[MASK_AT] = buf[p]!;
        scratch[MASK_AT + 1] = buf[p + 1]!;
        scratch[MASK_AT + 2] = buf[p + 2]!;
        scratch[MASK_AT + 3] = buf[p + 3]!;
      } else {
        scratch.fill(0, MASK_AT, MASK_AT + 4);
      }
      this.#ctlLen = 0;
      this.#state = GET_CONTROL;
      return 0;
    }

    if (opcode !== Opcode.CONTINUATION) {
      this.#msgOpcode = opcode;
      this.#msgBytes = 0;
      this.#msgRsv1 = rsv1;
    }
    this.#msgBytes += length;
    if (this.#maxMessageBytes > 0 && this.#msgBytes > this.#maxMessageBytes) {
      return this.#fail(1009, 'MESSAGE_TOO_BIG', `message exceeds ${this.#maxMessageBytes} bytes (RFC 6455 §7.4.1, code 1009)`);
    }
    if (this.#gate !== null && opcode !== Opcode.CONTINUATION) this.#gate.onMessageStart(this.#frameStart);
    if (this.#sink !== null) {
      // buf may be the scratch buffer (a carried header): the key sits below MASK_AT there.
      const scratch = this.#scratch;
      for (let i = 0; i < 4; i++) scratch[MASK_AT + i] = masked ? buf[p + i]! : 0;
      this.#frameLen = length;
    }
    this.#fin = fin;
    this.#state = SKIP_DATA;
    return 0;
  }

  #endDataFrame(end: number): void {
    this.#state = GET_HEADER;
    this.#lastBoundary = end;
    if (!this.#fin) return;
    const opcode = this.#msgOpcode;
    const bytes = this.#msgBytes;
    this.#msgOpcode = 0;
    this.#msgBytes = 0;
    this.#events.onMessage(opcode, bytes);
  }

  #endControlFrame(end: number): number {
    const n = this.#ctlLen;
    const scratch = this.#scratch;
    const opcode = this.#opcode;
    if (opcode === Opcode.CLOSE) {
      if (n >= 2) {
        const code = scratch.readUInt16BE(CTL_AT);
        if (!isValidCloseCode(code)) {
          return this.#fail(1002, 'INVALID_CLOSE_CODE', `RFC 6455 §7.4: close code ${code} is not valid on the wire`);
        }
        if (n > 2 && !isUtf8(scratch.subarray(CTL_AT + 2, CTL_AT + n))) {
          return this.#fail(1007, 'INVALID_CLOSE_REASON', 'RFC 6455 §5.5.1: the close reason must be valid UTF-8');
        }
      }
      this.#state = CLOSED;
    } else {
      this.#state = GET_HEADER;
    }
    this.#lastBoundary = end;
    this.#events.onControl(opcode, n === 0 ? EMPTY : scratch.subarray(CTL_AT, CTL_AT + n), this.#frameStart, end);
    return 0;
  }

  #fail(closeCode: number, code: FrameErrorCode, message: string): number {
    this.#state = FAILED;
    this.#closeCode = closeCode;
    this.#errorCode = code;
    this.#error = message;
    return closeCode;
  }
}
