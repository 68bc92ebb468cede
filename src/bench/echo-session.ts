// One upgraded connection of `wsgate echo`: reads client frames and writes each
// message back. The reply is built in place in the buffer the frames arrived in
// (an unmasked header is 4 bytes shorter than a masked one, so replies never
// overtake the frames still to read), and a chunk's replies go out in one write.
import { isUtf8 } from 'node:buffer';
import type { Socket } from 'node:net';
import { encodeClose, encodeFrame, headerLength, isValidCloseCode, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, writeFrameHeader } from './frame-codec.js';
import { FrameReader } from './frame-reader.js';
import type { FrameSink } from './frame-reader.js';

export interface EchoSessionOptions {
  readonly maxPayload: number;
  /** Past this many unsent bytes, stop reading the client until its socket drains. */
  readonly highWater: number;
  /** After our close frame, how long the client has to close the connection. */
  readonly closeTimeoutMs: number;
}

const NO_STATUS = encodeFrame(OP_CLOSE, Buffer.alloc(0), false);

export class EchoSession implements FrameSink {
  readonly #socket: Socket;
  readonly #sessions: Set<EchoSession>;
  readonly #reader: FrameReader;
  readonly #highWater: number;
  readonly #closeTimeoutMs: number;
  /** The buffer replies are being built in, and the span built so far. */
  #out: Buffer | undefined;
  #outStart = 0;
  #outEnd = 0;
  #closeTimer: NodeJS.Timeout | undefined;
  #ended = false;

  /** Joins `sessions` until its connection closes. */
  constructor(socket: Socket, head: Buffer, options: EchoSessionOptions, sessions: Set<EchoSession>) {
    this.#socket = socket;
    this.#sessions = sessions;
    sessions.add(this);
    this.#highWater = options.highWater;
    this.#closeTimeoutMs = options.closeTimeoutMs;
    this.#reader = new FrameReader(this, { fromClient: true, maxPayload: options.maxPayload });
    socket.on('data', this.#onData);
    socket.on('drain', this.#onDrain);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onClose);
    socket.setNoDelay(true);
    // The head is a view into the HTTP parser's buffer: copy it before writing replies into it.
    if (head.length > 0) this.#onData(Buffer.from(head));
  }

  /** Server shutdown: cut the connection. */
  destroy(): void {
    this.#socket.destroy();
  }

  frameMessage(opcode: number, buf: Buffer, start: number, end: number): void {
    if (opcode === OP_TEXT && !isUtf8(buf.subarray(start, end))) {
      this.frameError(1007, 'invalid UTF-8 in a text message');
      return;
    }
    this.#reply(opcode, buf, start, end);
  }

  frameControl(opcode: number, buf: Buffer, start: number, end: number): void {
    if (opcode === OP_PING) {
      this.#reply(OP_PONG, buf, start, end);
      return;
    }
    if (opcode !== OP_CLOSE) return;
    this.#reader.stop();
    const length = end - start;
    if (length === 0) {
      this.#flush();
      this.#finish(NO_STATUS);
      return;
    }
    const code = length >= 2 ? buf.readUInt16BE(start) : 0;
    if (!isValidCloseCode(code) || !isUtf8(buf.subarray(start + 2, end))) {
      this.#flush();
      this.#finish(encodeClose(length >= 2 && isValidCloseCode(code) ? 1007 : 1002, false));
      return;
    }
    // The usual answer: the client's status code back (the reason is dropped).
    this.#reply(OP_CLOSE, buf, start, start + 2);
    this.#flush();
    this.#finish(undefined);
  }

  frameError(closeCode: number, _reason: string): void {
    this.#reader.stop();
    this.#flush();
    this.#finish(encodeClose(closeCode, false));
  }

  /** Appends an unmasked frame carrying buf[start, end) to the replies of this chunk. */
  #reply(opcode: number, buf: Buffer, start: number, end: number): void {
    const length = end - start;
    const hl = headerLength(length, false);
    if (buf === this.#out) {
      // Frames of one chunk: move this one's payload down behind the previous reply.
      const at = this.#outEnd;
      if (at + hl !== start) buf.copy(buf, at + hl, start, end);
      writeFrameHeader(buf, at, opcode, length, false);
      this.#outEnd = at + hl + length;
      return;
    }
    this.#flush();
    if (start >= hl) {
      // The masked header before the payload has room for the unmasked one.
      writeFrameHeader(buf, start - hl, opcode, length, false);
      this.#out = buf;
      this.#outStart = start - hl;
      this.#outEnd = end;
      return;
    }
    // A reassembled message at the start of its own buffer: no room in front.
    this.#socket.write(encodeFrame(opcode, buf.subarray(start, end), false));
  }

  #flush(): void {
    const out = this.#out;
    if (out === undefined) return;
    this.#out = undefined;
    if (this.#outEnd > this.#outStart) this.#socket.write(out.subarray(this.#outStart, this.#outEnd));
  }

  /** After a close frame or an error: send `last` (when given), end our side, and cut a client that lingers. */
  #finish(last: Buffer | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    if (last !== undefined) this.#socket.write(last);
    this.#socket.end();
    this.#closeTimer = setTimeout(this.#onCloseTimeout, this.#closeTimeoutMs);
  }

  #onData = (chunk: Buffer): void => {
    this.#reader.feed(chunk);
    this.#flush();
    if (this.#socket.writableLength > this.#highWater && !this.#socket.isPaused()) this.#socket.pause();
  };

  #onDrain = (): void => {
    if (this.#socket.isPaused() && !this.#ended) this.#socket.resume();
  };

  /** The client half-closed without a close frame: nothing more will come, so end ours too. */
  #onEnd = (): void => {
    if (!this.#ended) {
      this.#ended = true;
      this.#reader.stop();
      this.#socket.end();
    }
  };

  #onCloseTimeout = (): void => {
    this.#closeTimer = undefined;
    this.#socket.destroy();
  };

  #onClose = (): void => {
    this.#sessions.delete(this);
    if (this.#closeTimer !== undefined) clearTimeout(this.#closeTimer);
    this.#closeTimer = undefined;
  };
}
