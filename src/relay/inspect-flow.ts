import { countSize, type SizeCounts } from './relay-tally.js';
import { FrameTracker, type FrameEvents, type PayloadSink } from './frame-parser.js';
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

export class Flow implements FrameEvents, PayloadSink {
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
  /** dst was left inside a frame for good (a rule broken inside a frame or header begun in an earlier chunk). */
  stuck = false;

  #queue: Buffer[] | null = null;
  #closeQueued = false;

  // Set by the tracker's events during one scan, reset after the chunk.
  #closeStart = 0;
  #closeEnd = -1;
  #closeCode = 0;
  #rateCut = -1;
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
    } else if (opcode === Opcode.PONG && this.fromClient && frameStart >= 0 && isGatewayPong(payload)) {
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
    if (!this.#utf8!.write(chunk, start, end, t.maskKey!, phase)) this.#utf8Failed(chunk, frameStart);
  }

  #utf8Failed(chunk: Buffer | null, frameStart: number): void {
    this.#utf8Bad = true;
    // The cut goes before the frame holding the bad byte, when it began in this chunk.
    this.#utf8Chunk = chunk;
    this.#utf8Cut = frameStart;
    this.slow = true;
  }

  onMessage(opcode: number, bytes: number): void {
    this.messages++;
    if (this.#sizes !== null) countSize(this.#sizes, bytes);
    if (this.#utf8 !== null && opcode === Opcode.TEXT && !this.tracker.messageCompressed) {
      if (!this.#utf8.end() && !this.#utf8Bad) this.#utf8Failed(this.#textChunk, this.#textFrameStart);
      this.#textChunk = null;
    }
    if (this.#bucket !== null && !this.#bucket.take() && this.#rateCut < 0 && !this.outClosed) {
      // The tracker has just set lastBoundary to the end of this message.
      this.#rateCut = this.tracker.lastBoundary;
      this.slow = true;
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
    const closeEnd = this.#closeEnd;
    // The first rule broken in the chunk decides where it is cut (-1: inside
    // a frame that began earlier, so dst is left stuck).
    let violation = code;
    let end = code !== 0 ? this.tracker.lastBoundary : chunk.length;
    let rule = code !== 0 ? (this.tracker.error ?? 'protocol error') : '';
    const rateCut = this.#rateCut;
    if (rateCut >= 0 && (violation === 0 || rateCut < end)) {
      violation = CloseCode.POLICY;
      end = rateCut;
      rule = `more than ${this.#rate} messages per second`;
    }
    if (this.#utf8Bad) {
      const cut = this.#utf8Chunk === chunk ? this.#utf8Cut : -1;
      if (violation === 0 || cut < end) {
        violation = CloseCode.INVALID_PAYLOAD;
        end = cut;
        rule = 'RFC 6455 §8.1: a text message must be valid UTF-8';
      }
    }
    if (violation === 0 && closeEnd >= 0) end = closeEnd;

    if (!this.outClosed) {
      if (end < 0) {
        this.stuck = true;
      } else {
        // Injected frames go at the first boundary; when it was not known
        // (a header split across chunks), at the last one, or just before src's Close.
        let at = -1;
        if (this.#queue !== null && violation === 0) {
          if (first >= 0) at = first <= chunk.length ? first : -1;
          else at = closeEnd >= 0 ? this.#closeStart : this.tracker.lastBoundary;
          // Nothing goes after src's Close (whose head may be in an earlier chunk).
          if (closeEnd >= 0 && at >= closeEnd) at = -1;
        }
        this.#forward(chunk, end, at);
      }
    }
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
    this.slow = this.#queue !== null || this.outClosed || this.failed;
  }

  /**
   * Sends a frame of the gateway's own toward dst: now if dst is between
   * frames, else at the next boundary. false: impossible, dst is stuck
   * inside a frame. After a Close (sent or queued) nothing more is taken.
   */
  inject(frame: Buffer, isClose: boolean): boolean {
    if (this.outClosed || this.#closeQueued) return true;
    if (this.stuck) return false;
    if (this.#queue === null && (this.failed || this.tracker.atFrameBoundary)) {
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

  /** Writes chunk[0, end) minus dropped pongs, with the queued frames at boundary `at` (-1: none). */
  #forward(chunk: Buffer, end: number, at: number): void {
    const dst = this.dst;
    const port = this.dstPort;
    const drops = this.#drops;
    if (at < 0 && (drops === null || drops.length === 0)) {
      if (end > 0) port.send(end === chunk.length ? chunk : chunk.subarray(0, end));
    } else {
      dst.cork();
      let pos = 0;
      let ins = at;
      if (drops !== null) {
        for (let i = 0; i < drops.length; i += 2) {
          const s = drops[i]!;
          if (s >= end) break;
          // A boundary is never inside a dropped frame: it is before it or past it.
          if (ins >= 0 && ins <= s) {
            if (ins > pos) port.write(chunk.subarray(pos, ins));
            pos = ins;
            ins = -1;
            this.#flushQueue();
            if (this.outClosed) break;
          }
          if (s > pos) port.write(chunk.subarray(pos, s));
          pos = drops[i + 1]!;
        }
      }
      if (ins >= pos && !this.outClosed) {
        if (ins > pos) port.write(chunk.subarray(pos, ins));
        pos = ins;
        this.#flushQueue();
      }
      if (!this.outClosed && end > pos) port.write(chunk.subarray(pos, end));
      dst.uncork();
    }
    if (!this.outClosed && port.buffered >= this.maxBuffered) this.srcPort.pause();
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
    this.#rateCut = -1;
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
  const code = f.tracker.scan(chunk);
  if (code === 0 && !f.slow) {
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
