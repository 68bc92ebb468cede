import { FrameHeader, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PONG, OP_TEXT, readFrameHeader, unmask } from './frame-codec.js';

/** What a FrameReader reports. Payloads are given as (buffer, start, end): no view is made per frame. */
export interface FrameSink {
  /**
   * A whole text or binary message (fragments reassembled), unmasked. The sink may overwrite
   * buf[0, end) (the echo builds its reply in place there): the reader never reads it again.
   */
  frameMessage(opcode: number, buf: Buffer, start: number, end: number): void;
  /** A close, ping or pong frame, unmasked; buf[0, end) is the sink's as above. */
  frameControl(opcode: number, buf: Buffer, start: number, end: number): void;
  /** A protocol violation; the reader has stopped. `closeCode` is the one to send (1002, 1009). */
  frameError(closeCode: number, reason: string): void;
}

export interface FrameReaderOptions {
  /** Server side: client frames must be masked. Client side: server frames must not be. */
  readonly fromClient: boolean;
  /** Largest message, in bytes. */
  readonly maxPayload: number;
}

/**
 * Incremental RFC 6455 frame reader. A chunk that holds whole frames (the usual case for small
 * messages) is parsed where it lies; a frame cut across chunks is held until all of it is in, then
 * joined once, so a large message costs one copy however many reads it took.
 */
export class FrameReader {
  readonly #sink: FrameSink;
  readonly #fromClient: boolean;
  readonly #maxPayload: number;
  readonly #h = new FrameHeader();
  /** A frame cut across chunks: its pieces, their size, and the size it needs before parsing can go on. */
  readonly #held: Buffer[] = [];
  #heldBytes = 0;
  #need = 0;
  /** A fragmented message: its opcode (0 = none in progress) and its pieces (copies). */
  #fragOpcode = 0;
  readonly #fragments: Buffer[] = [];
  #fragBytes = 0;
  #stopped = false;

  constructor(sink: FrameSink, options: FrameReaderOptions) {
    this.#sink = sink;
    this.#fromClient = options.fromClient;
    this.#maxPayload = options.maxPayload;
  }

  /** After a close frame or an error: later bytes are ignored. */
  stop(): void {
    this.#stopped = true;
    this.#held.length = 0;
    this.#heldBytes = 0;
    this.#fragments.length = 0;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  feed(chunk: Buffer): void {
    if (this.#stopped) return;
    if (this.#heldBytes === 0) {
      this.#parse(chunk);
      return;
    }
    this.#held.push(chunk);
    this.#heldBytes += chunk.length;
    if (this.#heldBytes < this.#need) return;
    const joined = Buffer.concat(this.#held, this.#heldBytes);
    this.#held.length = 0;
    this.#heldBytes = 0;
    this.#parse(joined);
  }

  #parse(buf: Buffer): void {
    const h = this.#h;
    const end = buf.length;
    let pos = 0;
    while (pos < end && !this.#stopped) {
      const hl = readFrameHeader(buf, pos, end, h);
      if (hl < 0) {
        this.#fail(1009, 'frame length over 2^53');
        return;
      }
      if (hl === 0) {
        this.#hold(buf, pos, h.need);
        return;
      }
      if (!this.#valid(h)) return;
      const start = pos + hl;
      const stop = start + h.payloadLength;
      if (stop > end) {
        this.#hold(buf, pos, hl + h.payloadLength);
        return;
      }
      if (h.masked) unmask(buf, start, stop, start - 4);
      this.#frame(buf, start, stop);
      pos = stop;
    }
  }

  /** Keeps buf[pos, end) until `need` bytes from pos are in. */
  #hold(buf: Buffer, pos: number, need: number): void {
    this.#held.push(pos === 0 ? buf : buf.subarray(pos));
    this.#heldBytes = buf.length - pos;
    this.#need = need;
  }

  #valid(h: FrameHeader): boolean {
    if (h.rsv !== 0) return this.#fail(1002, 'RSV bits set without an extension');
    if (h.masked !== this.#fromClient) return this.#fail(1002, this.#fromClient ? 'unmasked client frame' : 'masked server frame');
    if (h.opcode >= OP_CLOSE) {
      if (h.opcode > OP_PONG) return this.#fail(1002, `unknown opcode ${h.opcode}`);
      if (!h.fin || h.payloadLength > 125) return this.#fail(1002, 'fragmented or oversized control frame');
      return true;
    }
    if (h.opcode > OP_BINARY) return this.#fail(1002, `unknown opcode ${h.opcode}`);
    if (h.payloadLength + this.#fragBytes > this.#maxPayload) return this.#fail(1009, 'message too big');
    return true;
  }

  #frame(buf: Buffer, start: number, end: number): void {
    const op = this.#h.opcode;
    if (op >= OP_CLOSE) {
      this.#sink.frameControl(op, buf, start, end);
      return;
    }
    if (op === OP_CONTINUATION) {
      if (this.#fragOpcode === 0) {
        this.#fail(1002, 'continuation frame without a message');
        return;
      }
      // A copy: the sink may overwrite buf in place before the message is whole.
      this.#fragments.push(Buffer.from(buf.subarray(start, end)));
      this.#fragBytes += end - start;
      if (!this.#h.fin) return;
      const message = Buffer.concat(this.#fragments, this.#fragBytes);
      const opcode = this.#fragOpcode;
      this.#fragments.length = 0;
      this.#fragBytes = 0;
      this.#fragOpcode = 0;
      this.#sink.frameMessage(opcode, message, 0, message.length);
      return;
    }
    if (this.#fragOpcode !== 0) {
      this.#fail(1002, 'new message inside a fragmented one');
      return;
    }
    if (this.#h.fin) {
      this.#sink.frameMessage(op, buf, start, end);
      return;
    }
    this.#fragOpcode = op === OP_TEXT ? OP_TEXT : OP_BINARY;
    this.#fragments.push(Buffer.from(buf.subarray(start, end)));
    this.#fragBytes = end - start;
  }

  #fail(code: number, reason: string): false {
    this.stop();
    this.#sink.frameError(code, reason);
    return false;
  }
}
