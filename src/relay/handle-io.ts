import type { Socket } from 'node:net';
import { Buffer } from 'node:buffer';
import { getSystemErrorName } from 'node:util';

// The relay's reads and writes on a plain TCP socket go straight to its libuv
// handle, beneath Node's stream layer, the way net.Socket itself drives it:
// the handle's `onread` hands each chunk read to the relay, and a chunk is
// written with the handle's `writeBuffer`. That skips, per chunk, the
// Readable's push/emit, the Writable's write/afterWrite machinery and the
// nextTick behind it: about a quarter of a relayed message's CPU
// (bench/README.md). Chunks are still Node's own Buffers, never copied.
//
// The socket stays a net.Socket for everything else: end(), destroy(),
// 'end', 'error' and 'close' behave as before, because EOF and read errors
// are handed back to it exactly as Node's own onread does. A write goes to
// the handle only while the socket's own write queue is empty, so bytes
// written through socket.write() (close frames, the 101) keep their order.
//
// The handle API is Node's internal `stream_wrap` binding (what net.Socket
// uses). It is checked once at load; without it, on TLS sockets, on any
// other stream, or with WSGATE_STREAM_IO=1, the relay uses the socket's
// public stream API instead. Both paths run the same relay code.

interface WriteReq {
  handle: Handle;
  oncomplete: (this: WriteReq, status: number) => void;
  /** Keeps the chunk alive while libuv still points into it. */
  buffer: Buffer | null;
  bytes: number;
  io: HandleIo;
}

interface Handle {
  onread: (this: Handle, arrayBuffer: ArrayBuffer | undefined) => unknown;
  reading: boolean;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  [kIo]?: HandleIo;
}

interface StreamWrap {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
}

interface Binding {
  readonly wrap: StreamWrap;
  readonly TCP: abstract new (...args: never[]) => unknown;
  readonly UV_EOF: number;
}

const kIo = Symbol('wsgate.io');

/** Node's internals this module needs, or null when they are not there as expected. */
function loadBinding(): Binding | null {
  if (process.env.WSGATE_STREAM_IO === '1') return null;
  try {
    const binding = (process as unknown as { binding(name: string): unknown }).binding;
    const wrap = binding('stream_wrap') as StreamWrap;
    const TCP = (binding('tcp_wrap') as { TCP: Binding['TCP'] }).TCP;
    const UV_EOF = (binding('uv') as { UV_EOF: number }).UV_EOF;
    const ok =
      typeof wrap.WriteWrap === 'function' &&
      wrap.streamBaseState instanceof Int32Array &&
      [wrap.kReadBytesOrError, wrap.kArrayBufferOffset, wrap.kLastWriteWasAsync, UV_EOF].every(Number.isInteger) &&
      typeof TCP === 'function' &&
      typeof (TCP.prototype as Partial<Handle>).writeBuffer === 'function' &&
      typeof (TCP.prototype as Partial<Handle>).readStart === 'function';
    return ok ? { wrap, TCP, UV_EOF } : null;
  } catch {
    return null;
  }
}

const binding = loadBinding();
/** Plain TCP sockets are relayed through their handles (false: the stream API for every socket). */
export const HANDLE_IO: boolean = binding !== null;
const state = binding?.wrap.streamBaseState ?? new Int32Array(0);
const kReadBytes = binding?.wrap.kReadBytesOrError ?? 0;
const kOffset = binding?.wrap.kArrayBufferOffset ?? 0;
const kAsync = binding?.wrap.kLastWriteWasAsync ?? 0;
const UV_EOF = binding?.UV_EOF ?? 0;

/** The relay's handlers for one socket; `this` is the socket in both, as with stream events. */
export interface IoHandlers {
  chunk(socket: Socket, chunk: Buffer): void;
  /** Everything written to the socket has gone out. */
  drain(this: Socket): void;
}

/** The direct-handle state of one relayed socket. */
class HandleIo {
  /** Bytes in writes libuv has not finished. */
  pending = 0;
  /** Reading was stopped for backpressure. */
  stopped = false;
  /** EOF was read: never start reading again. */
  eof = false;
  /** Reused while writes complete at once; an async write keeps its own. */
  req: WriteReq | null = null;

  constructor(
    readonly socket: Socket,
    readonly handle: Handle,
    readonly handlers: IoHandlers,
  ) {}
}

interface IoSocket extends Socket {
  [kIo]?: HandleIo;
  [kHandlers]?: IoHandlers;
  _handle: Handle | null;
  _readableState: { ended: boolean };
}

const kHandlers = Symbol('wsgate.io-handlers');

function onData(this: IoSocket, chunk: Buffer): void {
  this[kHandlers]!.chunk(this, chunk);
}

/**
 * Starts reading `socket` for the relay: through its handle when it is a
 * plain TCP socket, else through 'data' events; the handlers get the chunks
 * and the drains either way. `first` (bytes read ahead during the handshake)
 * and then whatever the socket had buffered come before anything read now.
 */
export function startIo(socket: Socket, handlers: IoHandlers, first: Buffer | undefined): void {
  const s = socket as IoSocket;
  const handle = s._handle as Handle | null | undefined;
  if (!isTcpHandle(handle) || s.destroyed) {
    s[kHandlers] = handlers;
    socket.on('data', onData);
    socket.on('drain', handlers.drain);
    // resume() lets buffered chunks flow from the next tick, after `first`;
    // a pause by the handler for `first` still holds.
    socket.resume();
    if (first !== undefined && first.length > 0) handlers.chunk(socket, first);
    return;
  }
  const io = new HandleIo(socket, handle, handlers);
  s[kIo] = io;
  handle[kIo] = io;
  handle.onread = onRead;
  // The socket's own 'drain' still matters for what goes through socket.write().
  socket.on('drain', handlers.drain);
  if (first !== undefined && first.length > 0) handlers.chunk(socket, first);
  // A paused socket may hold chunks read before the relay took over.
  if (socket.readableLength > 0 && !s.destroyed) {
    const early = socket.read() as Buffer | null;
    if (early !== null) handlers.chunk(socket, early);
  }
  if (s._readableState.ended) io.eof = true;
  else if (!io.stopped && !s.destroyed && !handle.reading) {
    handle.reading = true;
    handle.readStart();
  }
}

function isTcpHandle(handle: unknown): handle is Handle {
  return binding !== null && handle instanceof binding.TCP;
}

function onRead(this: Handle, arrayBuffer: ArrayBuffer | undefined): void {
  const n = state[kReadBytes]!;
  const io = this[kIo]!;
  if (n > 0) {
    io.handlers.chunk(io.socket, Buffer.from(arrayBuffer!, state[kOffset]!, n));
    return;
  }
  if (n === 0) return;
  // EOF and errors go back to the socket as Node's own onread hands them:
  // its 'end', 'error' and 'close' follow as usual.
  const socket = io.socket;
  if (n !== UV_EOF) {
    socket.destroy(uvError(n, 'read'));
    return;
  }
  if (io.eof) return;
  io.eof = true;
  socket.push(null);
  socket.read(0);
}

function onWriteDone(this: WriteReq, status: number): void {
  const io = this.io;
  io.pending -= this.bytes;
  this.buffer = null;
  if (status < 0) {
    io.socket.destroy(uvError(status, 'write'));
    return;
  }
  if (io.pending === 0 && io.socket.writableLength === 0) io.handlers.drain.call(io.socket);
}

function uvError(code: number, syscall: string): NodeJS.ErrnoException {
  const name = getSystemErrorName(code);
  return Object.assign(new Error(`${syscall} ${name}`), { errno: code, code: name, syscall });
}

/** Writes `chunk` to `socket`; returns the bytes now waiting to go out to it. */
export function send(socket: Socket, chunk: Buffer): number {
  const io = (socket as IoSocket)[kIo];
  if (io === undefined || socket.writableLength !== 0) {
    if (socket.write(chunk)) return 0;
    return io === undefined ? socket.writableLength : io.pending + socket.writableLength;
  }
  const handle = io.handle;
  if ((socket as IoSocket)._handle !== handle) return 0; // destroyed: dropped, as a destroyed socket's write is
  let req = io.req;
  if (req === null) {
    req = new binding!.wrap.WriteWrap();
    req.handle = handle;
    req.oncomplete = onWriteDone;
    req.io = io;
    req.buffer = null;
  }
  const err = handle.writeBuffer(req, chunk);
  if (err !== 0) {
    socket.destroy(uvError(err, 'write'));
    return 0;
  }
  if (state[kAsync] === 0) {
    io.req = req;
    return io.pending;
  }
  // libuv holds the rest until the socket can take it.
  io.req = null;
  req.bytes = chunk.length;
  req.buffer = chunk;
  return (io.pending += chunk.length);
}

/** Bytes waiting to go out to `socket`. */
export function buffered(socket: Socket): number {
  const io = (socket as IoSocket)[kIo];
  return io === undefined ? socket.writableLength : io.pending + socket.writableLength;
}

/** Stops reading `socket` (backpressure) until resumeReading(). */
export function pauseReading(socket: Socket): void {
  const io = (socket as IoSocket)[kIo];
  if (io === undefined) {
    socket.pause();
    return;
  }
  io.stopped = true;
  if (io.handle.reading && (socket as IoSocket)._handle === io.handle) {
    io.handle.reading = false;
    io.handle.readStop();
  }
}

export function resumeReading(socket: Socket): void {
  const io = (socket as IoSocket)[kIo];
  if (io === undefined) {
    if (socket.isPaused() && !socket.destroyed) socket.resume();
    return;
  }
  io.stopped = false;
  if (!io.handle.reading && !io.eof && (socket as IoSocket)._handle === io.handle) {
    io.handle.reading = true;
    io.handle.readStart();
  }
}

/** Reading `socket` is stopped for backpressure. */
export function readingPaused(socket: Socket): boolean {
  const io = (socket as IoSocket)[kIo];
  return io === undefined ? socket.isPaused() : io.stopped;
}

/** The relay drives this socket's handle directly (for tests and logs). */
export function onHandleIo(socket: Socket): boolean {
  return (socket as IoSocket)[kIo] !== undefined;
}
