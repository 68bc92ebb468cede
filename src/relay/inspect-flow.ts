import { countSize, type SizeCounts } from './relay-tally.js';
import { FrameTracker, type FrameEvents, type MessageGate, type PayloadSink } from './frame-parser.js';
import { CloseCode, Opcode } from './frames.js';
import { isGatewayPong } from './keepalive.js';
import { TokenBucket } from './message-rate.js';
import { Utf8Stream } from './utf8-stream.js';
import type { Port, PortHandlers, RelaySocket } from './handle-io.js';

// One direction of an inspect relay: bytes read from `src`, tracked frame by
// frame, written to `dst`.
//
// The common chunk (whole data frames, nothing to inject or drop) costs one
// tracker scan and one write, done in `receive` below. Everything else —
// a Close frame going by, a gateway pong to drop, a frame waiting to be
// injected, a broken rule — raises `slow`, and the chunk goes through
// `Flow.chunk`, which writes the chunk in pieces around those frames.
// Chunks are never copied: pieces are subarrays of the received Buffer.
// Reads and writes go through the sockets' Ports (handle-io.ts).
//
// A chunk that ends inside a frame header or a control frame keeps those
// bytes back (at most 131, copied) until the frame is whole: so `dst` is
// never left inside one, and whatever rule such a frame breaks, both peers
// can still be sent a Close. Offsets below are the chunk's; a negative one
// lies in those held bytes, which come first (-held: before all of them).
// The one place `dst` can still be left inside a frame is a text frame found
// not UTF-8 after its head went out with an earlier chunk: it is finished
// with padding that is not UTF-8 either (at most MAX_PAD bytes; beyond that
// `dst` is cut), so the endpoint cannot take it as text, and the Close follows.

/** Most bytes held back: a control frame, header (2 + 4-byte key) and payload (125). */
const MAX_HELD = 131;
/** Most padding written to finish a text frame that turned out not UTF-8 halfway. */
const MAX_PAD = 64 * 1024;
const ZEROS = Buffer.alloc(16 * 1024);
/** A cut inside a frame whose head has gone out: below any offset in a chunk or its held bytes. */
const STUCK = -0x40000000;
/** No position (no rate cut, nowhere to inject): the same out-of-range value. */
const NONE = STUCK;

/** What a flow reports to the relay that owns it. */
export interface FlowOwner {
  /** Traffic seen; the idle sweeper clears it. */
  active: boolean;
  /** A Close frame went out on `flow` toward its destination. */
  closeWritten(flow: Flow): void;
  /** The source of `flow` sent a Close frame; `code` is 1005 when it carried none. */
  closeReceived(flow: Flow, code: number): void;
  /** The source of `flow` broke a rule; `code` is the close code it deserves. */
  violation(flow: Flow, code: number, rule: string): void;
}

export interface FlowOptions {
  readonly fromClient: boolean;
  readonly rsv1Allowed: boolean;
  readonly maxMessageBytes: number;
  /** Messages per second (0 = unlimited). */
  readonly messageRate: number;
  readonly maxBufferedBytes: number;
  /** Check that text messages are UTF-8 (1007); only uncompressed ones can be. */
  readonly validateUtf8: boolean;
  /** Where message sizes are counted (metrics), or null. */
  readonly sizes: SizeCounts | null;
}

export class Flow implements FrameEvents, PayloadSink, MessageGate {
  readonly owner: FlowOwner;
  readonly src: RelaySocket;
  readonly dst: RelaySocket;
  readonly srcPort: Port<Flow>;
  readonly dstPort: Port<Flow>;
  readonly fromClient: boolean;
  readonly tracker: FrameTracker;
  readonly maxBuffered: number;
  readonly #bucket: TokenBucket | null;
  readonly #rate: number;
  readonly #utf8: Utf8Stream | null;
  readonly #sizes: SizeCounts | null;
  /** Bytes read from src (all of them, forwarded or not). */
  bytes = 0;
  /** Data messages completed by src. */
  messages = 0;
  /** src sent something since the keepalive last looked. */
  heard = false;
  /** The next chunk cannot take the fast path. */
  slow = false;
  /** A Close frame has gone out toward dst (forwarded or ours), or dst is gone: nothing more is written. */
  outClosed = false;
  /** src broke a rule: nothing more it sends is forwarded. */
  failed = false;
  /** dst was left inside a frame for good (a text frame found not UTF-8 after its head went out, too long to pad). */
  stuck = false;

  #queue: Buffer[] | null = null;
  #closeQueued = false;

  // Set by the tracker's events during one scan, reset after the chunk.
  #closeStart = 0;
  #closeEnd = -1;
  #closeCode = 0;
  #rateCut = NONE;
  /** [start, end) pairs of gateway pongs to leave out. */
  #drops: number[] | null = null;
  #dropBytes = 0;
  // UTF-8: where the text frame being checked starts (in which chunk), and
  // where to cut once it failed.
  #textChunk: Buffer | null = null;
  #textFrameStart = -1;
  #utf8Bad = false;
  #utf8Chunk: Buffer | null = null;
  #utf8Cut = -1;
  /** Payload offset of the text frame's first byte in #textChunk. */
  #textPhase = 0;
  /** Padding owed to finish the text frame cut inside (0: none), and its first byte, masked. */
  #padLen = 0;
  #padByte = 0;
  /** An unfinished header or control frame from the end of earlier chunks, not forwarded yet. */
  #held: Buffer | null = null;
  #heldLen = 0;

  constructor(owner: FlowOwner, src: Port<Flow>, dst: Port<Flow>, opts: FlowOptions) {
    this.owner = owner;
    this.srcPort = src;
    this.dstPort = dst;
    src.owner = this;
    this.src = src.socket;
    this.dst = dst.socket;
    this.fromClient = opts.fromClient;
    this.maxBuffered = opts.maxBufferedBytes;
    this.#utf8 = opts.validateUtf8 ? new Utf8Stream() : null;
    this.#sizes = opts.sizes;
    this.tracker = new FrameTracker(
      {
        fromClient: opts.fromClient,
        rsv1Allowed: opts.rsv1Allowed,
        maxMessageBytes: opts.maxMessageBytes,
        payload: this.#utf8 === null ? undefined : this,
        gate: opts.messageRate > 0 ? this : undefined,
      },
      this,
    );
    this.#rate = opts.messageRate;
    this.#bucket = opts.messageRate > 0 ? new TokenBucket(opts.messageRate) : null;
  }

  /** Injected frames are waiting for a frame boundary. */
  get pending(): boolean {
    return this.#queue !== null;
  }

  onControl(opcode: number, payload: Buffer, frameStart: number, frameEnd: number): void {
    if (opcode === Opcode.CLOSE) {
      this.#closeStart = frameStart;
      this.#closeEnd = frameEnd;
      this.#closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : CloseCode.NO_STATUS;
      this.slow = true;
    } else if (opcode === Opcode.PONG && this.fromClient && frameStart >= -this.#heldLen && isGatewayPong(payload)) {
      (this.#drops ??= []).push(frameStart, frameEnd);
      this.#dropBytes += frameEnd - frameStart;
      this.slow = true;
    }
  }

  onPayload(chunk: Buffer, start: number, end: number, phase: number, frameStart: number): void {
    const t = this.tracker;
    if (t.messageOpcode !== Opcode.TEXT || t.messageCompressed || this.#utf8Bad) return;
    this.#textChunk = chunk;
    this.#textFrameStart = frameStart;
    this.#textPhase = phase;
    if (!this.#utf8!.write(chunk, start, end, t.maskKey!, phase)) this.#utf8Failed(chunk, frameStart);
  }

  #utf8Failed(chunk: Buffer | null, frameStart: number): void {
    this.#utf8Bad = true;
    // The cut goes before the frame holding the bad byte, when it began in this chunk (or its held bytes).
    this.#utf8Chunk = chunk;
    this.#utf8Cut = frameStart;
    this.slow = true;
    if (frameStart < -this.#heldLen) {
      // Its head went out with an earlier chunk, and this chunk starts inside
      // its payload, at #textPhase: the rest is owed before a Close can go.
      const t = this.tracker;
      const rest = t.frameLength - this.#textPhase;
      if (rest <= MAX_PAD) {
        this.#padLen = rest;
        this.#padByte = 0xff ^ t.maskKey![this.#textPhase & 3]!;
      }
    }
  }

  onMessageStart(frameStart: number): void {
    // Charged as the message begins, so the one over the rate is cut before its first byte.
    if (this.#rateCut === NONE && !this.outClosed && !this.#bucket!.take()) {
      this.#rateCut = frameStart;
      this.slow = true;
    }
  }

  onMessage(opcode: number, bytes: number): void {
    this.messages++;
    if (this.#sizes !== null) countSize(this.#sizes, bytes);
    if (this.#utf8 !== null && opcode === Opcode.TEXT && !this.tracker.messageCompressed) {
      if (!this.#utf8.end() && !this.#utf8Bad) this.#utf8Failed(this.#textChunk, this.#textFrameStart);
      this.#textChunk = null;
    }
  }

  /** A chunk when `slow` was already up: injected frames go at the first boundary in it. */
  scanSlow(chunk: Buffer): void {
    const first = this.#queue === null ? -1 : this.tracker.bytesToBoundary;
    this.chunk(chunk, this.tracker.scan(chunk), first);
  }

  /**
   * The slow path for one chunk; `code` is what tracker.scan(chunk) returned,
   * `first` the first boundary in it if known before the scan (else -1).
   */
  chunk(chunk: Buffer, code: number, first: number): void {
    this.bytes += chunk.length;
    this.heard = true;
    if (this.#dropBytes < chunk.length) this.owner.active = true;
    if (this.failed) {
      this.#resetChunk();
      return;
    }
    const len = chunk.length;
    const held = this.#heldLen;
    const closeEnd = this.#closeEnd;
    // The first rule broken in the chunk decides where it is cut. With no
    // boundary in the chunk, the rule was broken in the held frame (the
    // tracker fails only in headers and control frames), dropped whole.
    let violation = code;
    let end = len;
    let rule = '';
    if (code !== 0) {
      const b = this.tracker.lastBoundary;
      end = b >= 0 ? b : held > 0 ? -held : STUCK;
      rule = this.tracker.error ?? 'protocol error';
    }
    const rateCut = this.#rateCut;
    if (rateCut !== NONE && (violation === 0 || rateCut < end)) {
      violation = CloseCode.POLICY;
      end = rateCut;
      rule = `more than ${this.#rate} messages per second`;
    }
    if (this.#utf8Bad) {
      const cut = this.#utf8Chunk === chunk && this.#utf8Cut >= -held ? this.#utf8Cut : STUCK;
      if (violation === 0 || cut < end) {
        violation = CloseCode.INVALID_PAYLOAD;
        end = cut;
        rule = 'RFC 6455 §8.1: a text message must be valid UTF-8';
      }
    }
    // No rule broken: up to src's Close, or up to an unfinished frame kept back.
    if (violation === 0) end = closeEnd >= 0 ? closeEnd : len - this.tracker.openBytes;

    if (!this.outClosed) {
      if (end === STUCK) {
        if (violation === CloseCode.INVALID_PAYLOAD && this.#padLen > 0) this.#pad();
        else this.stuck = true;
      } else {
        // Injected frames go at the first boundary: before the held bytes,
        // or the first one in the chunk; when that was not known (a header
        // split across chunks), at the last one, or just before src's Close.
        let at = NONE;
        if (this.#queue !== null && violation === 0) {
          if (held > 0) at = -held;
          else if (first >= 0) at = first <= len ? first : NONE;
          else if (closeEnd >= 0) at = this.#closeStart;
          else if (this.tracker.lastBoundary >= 0) at = this.tracker.lastBoundary;
          // Nothing goes after src's Close.
          if (closeEnd >= 0 && at >= closeEnd) at = NONE;
        }
        this.#forward(chunk, end, at);
      }
    }
    // What is left past `end` when no rule was broken: an unfinished frame, kept for the next chunk.
    if (violation === 0 && closeEnd < 0 && !this.outClosed && end < len) this.#hold(chunk, end);
    else this.#heldLen = 0;
    const closeCode = this.#closeCode;
    this.#resetChunk();

    if (violation !== 0) {
      this.failed = true;
      this.#utf8Chunk = this.#textChunk = null;
      this.#queue = null;
      this.#closeQueued = false;
      this.slow = true;
      this.owner.violation(this, violation, rule);
      return;
    }
    if (closeEnd >= 0) {
      // src's Close went through, unless one of ours went just before it.
      this.#queue = null;
      this.#closeQueued = false;
      if (!this.outClosed) {
        this.#closeOut();
        this.owner.closeWritten(this);
      }
      this.owner.closeReceived(this, closeCode);
    }
    this.slow = this.#queue !== null || this.outClosed || this.failed || this.#heldLen > 0;
  }

  /**
   * Sends a frame of the gateway's own toward dst: now if dst is between
   * frames, else at the next boundary. false: impossible, dst is stuck
   * inside a frame. After a Close (sent or queued) nothing more is taken.
   */
  inject(frame: Buffer, isClose: boolean): boolean {
    if (this.outClosed || this.#closeQueued) return true;
    if (this.stuck) return false;
    // Held bytes are a frame not forwarded yet: dst is between frames.
    if (this.#queue === null && (this.failed || this.#heldLen > 0 || this.tracker.atFrameBoundary)) {
      this.dstPort.write(frame);
      if (isClose) {
        this.#closeOut();
        this.owner.closeWritten(this);
      }
      return true;
    }
    (this.#queue ??= []).push(frame);
    if (isClose) this.#closeQueued = true;
    this.slow = true;
    return true;
  }

  /** A Close frame can still be sent toward dst (one is not already out or queued). */
  get canClose(): boolean {
    return !this.outClosed && !this.#closeQueued;
  }

  /** dst is gone or ended: write nothing more to it. */
  shut(): void {
    this.#closeOut();
    this.#queue = null;
    this.#closeQueued = false;
  }

  /**
   * Nothing more goes toward dst. src may have been paused for dst's sake;
   * what it sends now is dropped, so read it again: its Close answer is in there.
   */
  #closeOut(): void {
    this.outClosed = true;
    this.slow = true;
    if (this.srcPort.paused) this.srcPort.resume();
  }

  release(): void {
    this.#bucket?.release();
  }

  /** Writes the held bytes and chunk[0, end) minus dropped pongs, with the queued frames at boundary `at` (NONE: none). */
  #forward(chunk: Buffer, end: number, at: number): void {
    const port = this.dstPort;
    const drops = this.#drops;
    if (at === NONE && this.#heldLen === 0 && (drops === null || drops.length === 0)) {
      if (end > 0) port.send(end === chunk.length ? chunk : chunk.subarray(0, end));
    } else {
      this.dst.cork();
      let pos = -this.#heldLen;
      let ins = at;
      if (drops !== null) {
        for (let i = 0; i < drops.length; i += 2) {
          const s = drops[i]!;
          if (s >= end) break;
          // A boundary is never inside a dropped frame: it is before it or past it.
          if (ins !== NONE && ins <= s) {
            this.#put(chunk, pos, ins);
            pos = ins;
            ins = NONE;
            this.#flushQueue();
            if (this.outClosed) break;
          }
          this.#put(chunk, pos, s);
          pos = drops[i + 1]!;
        }
      }
      if (ins !== NONE && ins >= pos && !this.outClosed) {
        this.#put(chunk, pos, ins);
        pos = ins;
        this.#flushQueue();
      }
      if (!this.outClosed) this.#put(chunk, pos, end);
      this.dst.uncork();
    }
    if (!this.outClosed && port.buffered >= this.maxBuffered) this.srcPort.pause();
  }

  /** Writes [from, to) of the held bytes followed by the chunk (chunk offsets). */
  #put(chunk: Buffer, from: number, to: number): void {
    if (from >= to) return;
    if (from < 0) {
      const held = this.#heldLen;
      this.dstPort.write(this.#held!.subarray(held + from, held + Math.min(to, 0)));
      // The socket keeps that buffer until it is written: the next hold takes a new one.
      this.#held = null;
      if (to <= 0) return;
      from = 0;
    }
    this.dstPort.write(chunk.subarray(from, to));
  }

  /** Keeps chunk[from, ..) back: after the held bytes when from < 0 (the held frame goes on), else instead of them. */
  #hold(chunk: Buffer, from: number): void {
    if (from < 0) {
      chunk.copy(this.#held!, this.#heldLen);
      this.#heldLen += chunk.length;
      return;
    }
    // Never larger than MAX_HELD: openBytes is at most a control frame.
    chunk.copy((this.#held ??= Buffer.allocUnsafe(MAX_HELD)), 0, from);
    this.#heldLen = chunk.length - from;
  }

  /**
   * Finishes the text frame left open toward dst (its head went out with an
   * earlier chunk) with #padLen bytes: the first unmasks to 0xFF, which no
   * UTF-8 text holds, so the endpoint fails the message rather than take it.
   */
  #pad(): void {
    const port = this.dstPort;
    port.write(Buffer.of(this.#padByte));
    for (let left = this.#padLen - 1; left > 0; left -= ZEROS.length) port.write(left >= ZEROS.length ? ZEROS : ZEROS.subarray(0, left));
    this.#padLen = 0;
  }

  #flushQueue(): void {
    const queue = this.#queue!;
    this.#queue = null;
    for (const frame of queue) this.dstPort.write(frame);
    if (this.#closeQueued) {
      this.#closeQueued = false;
      this.#closeOut();
      this.owner.closeWritten(this);
    }
  }

  #resetChunk(): void {
    this.#closeEnd = -1;
    this.#rateCut = NONE;
    this.#dropBytes = 0;
    if (this.#drops !== null) this.#drops.length = 0;
  }
}

/** One chunk read from `f.src`. The fast path is the first branch. */
function receive(f: Flow, chunk: Buffer): void {
  if (f.slow) {
    f.scanSlow(chunk);
    return;
  }
  const t = f.tracker;
  const code = t.scan(chunk);
  if (code === 0 && !f.slow && t.openBytes === 0) {
    f.bytes += chunk.length;
    f.heard = true;
    f.owner.active = true;
    if (f.dstPort.send(chunk) >= f.maxBuffered) f.srcPort.pause();
    return;
  }
  f.chunk(chunk, code, -1);
}

/** The Port handlers of an inspect relay: a port's owner is the flow that reads from it. */
export const FLOW_IO: PortHandlers<Flow> = {
  chunk(port: Port<Flow>, chunk: Buffer): void {
    receive(port.owner, chunk);
  },
  drain(port: Port<Flow>): void {
    // `port` can take more: resume the side that writes into it.
    const from = port.owner.dstPort;
    if (from.paused) from.resume();
  },
};
