import { EventEmitter } from 'node:events';
import { bareShutdown, uvError, writeBare, type BareHandle } from './handle-io.js';

// A relayed TCP connection on a bare libuv handle, for the sides of an
// inspect session that never needed a net.Socket: the upstream of a bare dial
// (src/upstream/raw-dial.ts). A net.Socket is a Duplex with two stream states,
// a write queue and a dozen listeners, built and torn down once per session;
// the relay reads and writes the handle directly anyway (Port, handle-io.ts)
// and only uses the socket's lifecycle. This is that lifecycle and nothing
// else, with the same events in the same order, so the relay drives both
// alike:
// - 'end' once the peer's FIN is read (a tick later, as Node does), with the
//   write side ended first (a socket without allowHalfOpen does that);
// - end(): FIN once libuv has written everything before it;
// - 'drain' when the writes libuv held are all out;
// - destroy(err?): the handle is closed; 'error' (when there is one and
//   someone listens) and then 'close' follow once libuv has closed it;
// - once both FINs are through, it closes itself, as a socket does.
// Writes go to libuv at once: libuv keeps them in order, so there is no queue
// here and cork() has nothing to gather.

export class BareConn extends EventEmitter {
  readonly handle: BareHandle;
  destroyed = false;
  /** end() was called: nothing more may be written. */
  writableEnded = false;
  /** Bytes libuv holds until the peer's window opens. */
  writableLength = 0;
  /** The peer's FIN was read. */
  readableEnded = false;
  /** 'end' was emitted. */
  #endEmitted = false;
  /** Our FIN is out. */
  #finished = false;

  constructor(handle: BareHandle) {
    super();
    this.handle = handle;
  }

  write(chunk: Buffer): boolean {
    if (this.destroyed || this.writableEnded) return false;
    const r = writeBare(this.handle, chunk, (status) => this.#written(status, chunk.length));
    if (r < 0) {
      this.destroy(uvError(r, 'write'));
      return false;
    }
    if (r === 1) this.writableLength += chunk.length;
    return this.writableLength === 0;
  }

  #written(status: number, bytes: number): void {
    this.writableLength -= bytes;
    if (status < 0) this.destroy(uvError(status, 'write'));
    else if (this.writableLength === 0 && !this.destroyed) this.emit('drain');
  }

  cork(): void {}

  uncork(): void {}

  end(): void {
    if (this.destroyed || this.writableEnded) return;
    this.writableEnded = true;
    const err = bareShutdown(this.handle, (status) => {
      if (status < 0) this.destroy(uvError(status, 'shutdown'));
      else this.#finish();
    });
    if (err === 1) this.#finish();
    else if (err < 0) this.destroy(uvError(err, 'shutdown'));
  }

  #finish(): void {
    this.#finished = true;
    if (this.#endEmitted) this.destroy();
  }

  /** The peer's FIN was read (Port's onread). */
  readEnd(): void {
    if (this.readableEnded || this.destroyed) return;
    this.readableEnded = true;
    process.nextTick(emitEnd, this);
  }

  /** @internal */
  ended(): void {
    if (this.destroyed) return;
    this.#endEmitted = true;
    // As a socket without allowHalfOpen: our FIN follows theirs, before 'end' is heard.
    if (!this.writableEnded) this.end();
    this.emit('end');
    if (this.#finished) this.destroy();
  }

  destroy(err?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    const handle = this.handle;
    if (handle.reading) {
      handle.reading = false;
      handle.readStop();
    }
    handle.close(() => {
      if (err !== undefined && this.listenerCount('error') > 0) this.emit('error', err);
      this.emit('close', err !== undefined);
    });
    return this;
  }
}

function emitEnd(conn: BareConn): void {
  conn.ended();
}
