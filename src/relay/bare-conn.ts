import { EventEmitter } from 'node:events';
import { Socket } from 'node:net';
import { bareRead, bareShutdown, isEof, shareReads, socketReads, stopReading, uvError, writeBare, type BareHandle, type Handle } from './handle-io.js';

// A TCP connection on a bare libuv handle, for connections that never need a
// net.Socket: clients accepted on plain listeners (src/listener/listener.ts)
// and upstreams of a bare dial (src/upstream/raw-dial.ts). A net.Socket is a
// Duplex with two stream states, a write queue and a dozen listeners, built
// and torn down once per connection; the relay reads and writes the handle
// directly anyway (Port, handle-io.ts) and only uses the socket's lifecycle.
// This is that lifecycle and nothing else, with the same events in the same
// order, so everything that handles a connection drives both alike:
// - 'data' while reading on its own (resume(); the head reader), until a
//   relay's Port takes the handle's reads;
// - hold(): reading goes on while the upstream is dialed, what comes (and a
//   FIN) is kept for whoever takes the connection next (release());
// - 'end' once the peer's FIN is read (a tick later, as Node does); without
//   allowHalfOpen the write side is ended first, as a socket does;
// - end(): FIN once libuv has written everything before it;
// - 'drain' when the writes libuv held are all out;
// - destroy(err?): the handle is closed; 'error' (when there is one and
//   someone listens) and then 'close' follow once libuv has closed it;
// - once both FINs are through, it closes itself, as a socket does.
// Writes go to libuv at once: libuv keeps them in order, so there is no queue
// here and cork() has nothing to gather.
// Whatever needs a real socket (Node's HTTP server for a plain request) gets
// one built on the handle by toSocket().

interface ConnHandle extends BareHandle {
  conn?: BareConn;
}

/**
 * What hold() keeps before it stops reading and lets TCP hold the rest:
 * bytes, and reads (a client trickling single bytes would otherwise cost a
 * Buffer each).
 */
const HOLD_MAX_BYTES = 64 * 1024;
const HOLD_MAX_CHUNKS = 16;

interface Address {
  address?: string;
  port?: number;
}

/**
 * Where a connection's news goes while its request head is read
 * (listener/head-reader.ts), in place of the 'data', 'end' and 'close'
 * events: four listeners added and removed on every connection were a
 * measurable share of a handshake. 'close' is emitted as well.
 */
export interface HeadSink extends CloseWatcher {
  data(chunk: Buffer): void;
  end(): void;
}

/** Hears of a connection's close without a listener. */
export interface CloseWatcher {
  closed(): void;
}

export class BareConn extends EventEmitter {
  readonly handle: ConnHandle;
  /** Takes 'data' and 'end' (and hears of the close) while set. */
  sink: HeadSink | undefined;
  /** Hears of the close without a listener (a session, between the request head and the 101). */
  watcher: CloseWatcher | undefined;
  readonly allowHalfOpen: boolean;
  destroyed = false;
  /** end() was called: nothing more may be written. */
  writableEnded = false;
  /** Bytes libuv holds until the peer's window opens. */
  writableLength = 0;
  /** The peer's FIN was read. */
  readableEnded = false;
  /** A relay's Port reads the handle: its reads are not ours to start or stop. */
  relayed = false;
  /** Ended before any relay: what the peer still sends is dropped while we wait for its FIN. */
  #discard = false;
  /** 'end' was emitted. */
  #endEmitted = false;
  /** Our FIN is out. */
  #finished = false;
  /** Chunks read while held; undefined: not held. */
  #held: Buffer[] | undefined;
  #heldBytes = 0;
  /** The peer's FIN came while held. */
  #heldFin = false;
  #peer: Address | undefined;
  #local: Address | undefined;

  constructor(handle: BareHandle, allowHalfOpen = false) {
    super();
    this.handle = handle;
    this.allowHalfOpen = allowHalfOpen;
    shareReads(handle);
  }

  get writable(): boolean {
    return !this.destroyed && !this.writableEnded;
  }

  get remoteAddress(): string | undefined {
    return (this.#peer ??= this.#name('getpeername')).address;
  }

  get remotePort(): number | undefined {
    return (this.#peer ??= this.#name('getpeername')).port;
  }

  get localAddress(): string | undefined {
    return (this.#local ??= this.#name('getsockname')).address;
  }

  get localPort(): number | undefined {
    return (this.#local ??= this.#name('getsockname')).port;
  }

  #name(which: 'getpeername' | 'getsockname'): Address {
    const out: Address = {};
    if (!this.destroyed) this.handle[which](out);
    return out;
  }

  /** Reads on its own, as 'data' events, until paused or a Port takes over. */
  resume(): void {
    const handle = this.handle;
    if (this.destroyed || this.readableEnded || handle.reading) return;
    handle.conn = this;
    handle.onread = onRead;
    handle.reading = true;
    handle.readStart();
  }

  pause(): void {
    stopReading(this.handle);
  }

  /**
   * Between the request head and the relay: reading goes on, and what comes
   * is kept. A read stopped here and started again by the relay's Port would
   * cost two epoll_ctl calls per handshake; reading on also sees a client
   * that leaves while the upstream is dialed.
   */
  hold(): void {
    if (!this.destroyed) this.#held ??= [];
  }

  /** Bytes kept by hold() so far. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** The peer's FIN came and is held back until release(). */
  get finHeld(): boolean {
    return this.#heldFin;
  }

  /**
   * Ends a hold: `take` gets the chunks kept, in order (without it they are
   * dropped); a FIN kept is read now, so 'end' follows as usual. Returns
   * the bytes taken.
   */
  release(take?: (chunk: Buffer) => void): number {
    const held = this.#held;
    if (held === undefined) return 0;
    this.#held = undefined;
    this.#heldBytes = 0;
    let bytes = 0;
    if (take !== undefined) {
      for (const chunk of held) {
        take(chunk);
        bytes += chunk.length;
      }
    }
    if (this.#heldFin) {
      this.#heldFin = false;
      this.readEnd();
    }
    return bytes;
  }

  /** A Buffer, or a string sent as UTF-8 (as socket.write sends one) or, with 'latin1', one byte per character. */
  write(chunk: Buffer | string, encoding?: 'utf8' | 'latin1'): boolean {
    if (this.destroyed || this.writableEnded) return false;
    const utf8 = encoding !== 'latin1';
    const bytes = typeof chunk !== 'string' ? chunk.length : utf8 ? Buffer.byteLength(chunk) : chunk.length;
    const r = writeBare(this.handle, chunk, (status) => this.#written(status, bytes), utf8);
    if (r < 0) {
      this.destroy(uvError(r, 'write'));
      return false;
    }
    if (r === 1) this.writableLength += bytes;
    return this.writableLength === 0;
  }

  #written(status: number, bytes: number): void {
    this.writableLength -= bytes;
    if (status < 0) this.destroy(uvError(status, 'write'));
    else if (this.writableLength === 0 && !this.destroyed) this.emit('drain');
  }

  cork(): void {}

  uncork(): void {}

  end(last?: Buffer | string): this {
    if (this.destroyed || this.writableEnded) return this;
    this.release();
    if (last !== undefined) this.write(last);
    if (this.destroyed) return this;
    this.writableEnded = true;
    if (this.readableEnded && this.handle.writeQueueSize === 0) {
      // The peer's FIN is in and libuv holds nothing to write: the close
      // that follows sends our FIN, and a shutdown first would be one more
      // system call for nothing.
      this.#finish();
      return this;
    }
    const err = bareShutdown(this.handle, (status) => {
      if (status < 0) this.destroy(uvError(status, 'shutdown'));
      else this.#finish();
    });
    if (err === 1) this.#finish();
    else if (err < 0) this.destroy(uvError(err, 'shutdown'));
    // As a socket does once ended: read on, so the peer's FIN (and with it 'close') is seen.
    if (!this.relayed && !this.destroyed) {
      this.#discard = true;
      this.resume();
    }
    return this;
  }

  /**
   * Ends the connection when the peer has said it sends nothing more (its
   * WebSocket Close is in). With nothing left in libuv, the handle is closed
   * at once and the close sends our FIN: a shutdown, then reading on for the
   * peer's FIN, would cost three system calls and a turn of the loop. Data
   * the peer sends anyway meets a reset.
   */
  hangUp(): void {
    if (this.destroyed || this.writableEnded) return;
    if (this.handle.writeQueueSize !== 0 || this.#held !== undefined) {
      this.end();
      return;
    }
    this.writableEnded = true;
    this.destroy();
  }

  /** @internal a chunk read while reading on its own */
  data(chunk: Buffer): void {
    const held = this.#held;
    if (held !== undefined) {
      held.push(chunk);
      if ((this.#heldBytes += chunk.length) >= HOLD_MAX_BYTES || held.length >= HOLD_MAX_CHUNKS) this.pause();
    } else if (!this.#discard) {
      if (this.sink !== undefined) this.sink.data(chunk);
      else this.emit('data', chunk);
    }
  }

  #finish(): void {
    this.#finished = true;
    if (this.#endEmitted) this.destroy();
  }

  /** The peer's FIN was read (here or by a Port). */
  readEnd(): void {
    if (this.readableEnded || this.destroyed) return;
    if (this.#held !== undefined) {
      this.#heldFin = true;
      this.pause();
      return;
    }
    this.readableEnded = true;
    this.pause();
    process.nextTick(emitEnd, this);
  }

  /** @internal */
  ended(): void {
    if (this.destroyed) return;
    this.#endEmitted = true;
    if (!this.allowHalfOpen && !this.writableEnded) this.end();
    if (this.sink !== undefined) this.sink.end();
    else this.emit('end');
    if (this.#finished) this.destroy();
  }

  destroy(err?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.#held = undefined;
    this.pause();
    this.handle.close(() => {
      if (err !== undefined && this.listenerCount('error') > 0) this.emit('error', err);
      this.sink?.closed();
      this.watcher?.closed();
      this.emit('close', err !== undefined);
    });
    return this;
  }

  /**
   * Hands the connection to a net.Socket built on its handle, `rest` (bytes
   * read already) put back in front; only before anything was written or
   * ended. This BareConn is done with, but still emits 'close' with the socket.
   */
  toSocket(rest: Buffer | undefined): Socket {
    this.pause();
    this.handle.conn = undefined;
    // A connection the native module accepted becomes a Node TCP handle first.
    const handle = this.handle.toTcp?.() ?? this.handle;
    this.destroyed = true;
    const socket = new Socket({ handle, readable: true, writable: true, allowHalfOpen: this.allowHalfOpen, pauseOnCreate: true } as ConstructorParameters<
      typeof Socket
    >[0]);
    socketReads(handle);
    if (rest !== undefined && rest.length > 0) socket.unshift(rest);
    socket.once('close', (hadError: boolean) => this.emit('close', hadError));
    return socket;
  }
}

function onRead(this: Handle, arrayBuffer: ArrayBuffer | undefined): void {
  const conn = (this as ConnHandle).conn;
  if (conn === undefined) return;
  const chunk = bareRead(arrayBuffer);
  if (typeof chunk !== 'number') conn.data(chunk);
  else if (chunk === 0) return;
  else if (isEof(chunk)) conn.readEnd();
  else conn.destroy(uvError(chunk, 'read'));
}

function emitEnd(conn: BareConn): void {
  conn.ended();
}
