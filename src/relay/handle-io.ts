import type { Socket } from 'node:net';
import type { BareConn } from './bare-conn.js';
import { Buffer } from 'node:buffer';
import { getSystemErrorName } from 'node:util';
import { nativeModule } from './native-module.js';

// The relay's reads and writes on a plain TCP socket go straight to its libuv
// handle, beneath Node's stream layer, the way net.Socket itself drives it:
// the handle's `onread` hands each chunk read to the relay, and a chunk is
// written with the handle's `writeBuffer`. That skips, per chunk, the
// Readable's push/emit, the Writable's write/afterWrite machinery and the
// nextTick behind it: 40% of the user-space instructions of a relayed echo
// (`bench/instructions.ts --load chatty`, tunnel mode: 31.9k with streams,
// 19.3k here).
//
// The socket stays a net.Socket for everything else: end(), destroy(),
// 'end', 'error' and 'close' behave as before, because EOF and read errors
// are handed back to it exactly as Node's own onread does. A write goes to
// the handle only while the socket's own write queue is empty, so bytes
// written through socket.write() (close frames, the 101) keep their order.
//
// The handle API is Node's internal `stream_wrap` binding (what net.Socket
// uses). It is checked once at load; without it, on any other stream, or
// with WSGATE_RELAY_IO=stream, the relay uses the socket's public stream API
// instead. Both paths run the same relay code. TLS sockets take the stream
// API too: their TLSWrap takes one write at a time (a second one aborts the
// process), and queueing the rest is exactly what the Writable is for.
//
// Reads on a handle go into one buffer that every plain TCP handle shares
// (Node's `useUserBuffer`), not into a buffer of their own: bare accepts and
// bare dials call shareReads() before their first read, a Port for any other
// handle it takes. By default Node allocates 64 KiB for every read, copies
// what was read into a new buffer of the right size and wraps that in an
// ArrayBuffer: a malloc, a copy and garbage per read, a third of the
// user-space instructions of an inspect-mode echo (`bench/instructions.ts
// --load chatty`: 20.8k, 12.8k without). The catch is that a chunk in the
// shared buffer is good only until the next read, and a libuv write keeps a
// pointer into its data until it completes. So such a chunk is written with
// native/relay.c's tryWrite, which keeps nothing, and only what the socket
// does not take at once (or all of it, while earlier writes are still
// queued) is copied: under backpressure, and never more than Node copied
// anyway. A reader that keeps what it read (the head readers, BareConn's
// hold, a net.Socket built on the handle) gets a copy: bareRead(),
// socketReads(). Without the native module, reads keep Node's own buffers.

export interface WriteReq {
  handle: Handle;
  oncomplete: (this: WriteReq, status: number) => void;
  /** Keeps the chunk alive while libuv still points into it. */
  buffer: Buffer | null;
  bytes: number;
  /** Unset for writes on a bare handle. */
  port?: Port;
  /** writeBare's callback. */
  done?: ((status: number) => void) | undefined;
}

export interface Handle {
  readonly fd: number;
  onread: (this: Handle, arrayBuffer: ArrayBuffer | undefined) => unknown;
  reading: boolean;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  useUserBuffer(buffer: Uint8Array): void;
  [kPort]?: Port;
  /** Reads go to the shared read buffer. */
  [kShared]?: true;
  /** A net.Socket's own onread, behind socketReads(). */
  [kNodeRead]?: (this: Handle, arrayBuffer: ArrayBuffer | undefined) => unknown;
  /** A connection the native module accepted (src/relay/core-handle.ts): what a core takes instead of a descriptor to duplicate. */
  readonly accepted?: object;
  /** Gives the connection up to a Node TCP handle (a plain HTTP request needs a net.Socket); undefined when it cannot. */
  toTcp?(): BareHandle | undefined;
}

type TryWrite = (fd: number, data: Uint8Array) => number;

interface StreamWrap {
  WriteWrap: new () => WriteReq;
  ShutdownWrap: new () => ShutdownReq;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
}

interface Binding {
  readonly wrap: StreamWrap;
  readonly TCP: new (type: number) => BareHandle;
  readonly TCPConnectWrap: new () => ConnectReq;
  readonly SOCKET: number;
  readonly UV_EOF: number;
  readonly UV_ENOTCONN: number;
}

/** A TCP handle with no net.Socket around it (src/upstream/raw-dial.ts). */
export interface BareHandle extends Handle {
  connect(req: ConnectReq, address: string, port: number): number;
  connect6(req: ConnectReq, address: string, port: number): number;
  setNoDelay(enable: boolean): number;
  writeLatin1String(req: WriteReq, data: string): number;
  writeUtf8String(req: WriteReq, data: string): number;
  getpeername(out: object): number;
  getsockname(out: object): number;
  shutdown(req: ShutdownReq): number;
  /** Bytes libuv holds until the peer's window opens. */
  readonly writeQueueSize: number;
  close(callback?: () => void): void;
  /** Takes a connected descriptor (uv_tcp_open). */
  open(fd: number): number;
}

export interface ShutdownReq {
  handle: Handle;
  oncomplete: (this: ShutdownReq, status: number) => void;
  done?: (status: number) => void;
}

export interface ConnectReq {
  oncomplete: (this: ConnectReq, status: number) => void;
}

const kPort = Symbol('wsgate.port');
const kShared = Symbol('wsgate.sharedReads');
const kNodeRead = Symbol('wsgate.nodeRead');

/** Node's internals this module needs, or null when they are not there as expected. */
function loadBinding(): Binding | null {
  if (process.env.WSGATE_RELAY_IO === 'stream') return null;
  try {
    const binding = (process as unknown as { binding(name: string): unknown }).binding;
    const wrap = binding('stream_wrap') as StreamWrap;
    const tcpWrap = binding('tcp_wrap') as { TCP: Binding['TCP']; TCPConnectWrap: Binding['TCPConnectWrap']; constants: { SOCKET: number } };
    const { TCP, TCPConnectWrap } = tcpWrap;
    const SOCKET = tcpWrap.constants?.SOCKET;
    const { UV_EOF, UV_ENOTCONN } = binding('uv') as { UV_EOF: number; UV_ENOTCONN: number };
    const ok =
      typeof wrap.WriteWrap === 'function' &&
      typeof wrap.ShutdownWrap === 'function' &&
      wrap.streamBaseState instanceof Int32Array &&
      [wrap.kReadBytesOrError, wrap.kArrayBufferOffset, wrap.kLastWriteWasAsync, UV_EOF, UV_ENOTCONN, SOCKET].every(Number.isInteger) &&
      typeof TCP === 'function' &&
      typeof TCPConnectWrap === 'function' &&
      typeof (TCP.prototype as Partial<Handle>).writeBuffer === 'function' &&
      typeof (TCP.prototype as Partial<Handle>).readStart === 'function';
    return ok ? { wrap, TCP, TCPConnectWrap, SOCKET, UV_EOF, UV_ENOTCONN } : null;
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

/** native/relay.c's tryWrite; null: no native module (or a build older than this code). */
function loadTryWrite(): TryWrite | null {
  if (binding === null || typeof (binding.TCP.prototype as Partial<Handle>).useUserBuffer !== 'function') return null;
  const native = nativeModule();
  const fn = typeof native === 'object' ? (native as { tryWrite?: unknown }).tryWrite : undefined;
  return typeof fn === 'function' ? (fn as TryWrite) : null;
}

const tryWrite = loadTryWrite();
/** The read buffer plain TCP handles share (null: each read gets Node's own buffer). */
const readBuffer: Buffer | null = tryWrite !== null ? Buffer.allocUnsafeSlow(65_536) : null;
const readArrayBuffer: ArrayBufferLike | null = readBuffer?.buffer ?? null;
/** Plain TCP handles read into the shared buffer (false: the native module is missing, or too old). */
export const SHARED_READS: boolean = readBuffer !== null;

/** The shared read buffer, for connections the native module reads into it (src/relay/core-handle.ts). */
export function sharedReadBuffer(): Buffer | null {
  return readBuffer;
}

/**
 * What a handle that is not Node's tells its onread and its writer, as
 * Node's own handles do through the stream state: the bytes read into the
 * shared buffer (or a libuv error, UV_EOF), and whether the last write waits.
 */
export function setReadResult(n: number): void {
  state[kReadBytes] = n;
}

export function setLastWriteAsync(async: boolean): void {
  state[kAsync] = async ? 1 : 0;
}

/** libuv's EOF code (UV_EOF), as onread gets it. */
export const UV_EOF_CODE: number = UV_EOF;

/** What a core takes for a connection: the native module's own when it accepted it, else the descriptor to duplicate. */
export function coreClient(handle: Handle): number | object {
  return handle.accepted ?? handle.fd;
}

/** What a relay does with its ports' events; the port's `owner` is the relay's own context. */
export interface PortHandlers<O> {
  /** A chunk read from the port's socket. */
  chunk(port: Port<O>, chunk: Buffer): void;
  /** Everything written to the port's socket has gone out. */
  drain(port: Port<O>): void;
}

interface PortSocket extends Socket {
  [kPort]?: Port;
  _handle: Handle | null;
  _readableState: { ended: boolean };
}

/** What a relay relays: a net.Socket, or a bare connection (bare-conn.ts) with the same lifecycle. */
export type RelaySocket = Socket | BareConn;

/** One relayed socket, read and written through its handle when it can be, else through its stream API. */
export class Port<O = unknown> {
  readonly socket: RelaySocket;
  /** A BareConn: no stream state to look at, EOF goes to its readEnd(). */
  readonly bare: boolean;
  readonly handlers: PortHandlers<O>;
  /** Set by the relay before start(). */
  owner!: O;
  /** null: the stream API. */
  readonly handle: Handle | null;
  /** Bytes in handle writes libuv has not finished. */
  pending = 0;
  /** Reading is stopped for backpressure. */
  paused = false;
  /** EOF was read: never start reading again. */
  eof = false;
  /** Bytes may be waiting in the socket's own write queue: look before writing to the handle. */
  viaStream = true;
  /** Reused while writes complete at once; an async write keeps its own. */
  req: WriteReq | null = null;

  constructor(socket: RelaySocket, handlers: PortHandlers<O>) {
    this.socket = socket;
    this.handlers = handlers;
    this.bare = 'readEnd' in socket;
    this.handle = this.bare ? (socket as BareConn).handle : tcpHandleOf(socket as Socket);
  }

  /** The relay drives the socket's handle directly. */
  get onHandle(): boolean {
    return this.handle !== null;
  }

  /**
   * Starts reading. `first` (bytes read ahead during the handshake) and then
   * whatever the socket had buffered go to the chunk handler before anything
   * read from now on.
   */
  start(first: Buffer | undefined): void {
    const socket = this.socket as PortSocket;
    socket[kPort] = this as Port;
    // The socket's own 'drain' still matters for what goes through socket.write().
    socket.on('drain', onStreamDrain);
    const handle = this.handle;
    if (handle === null) {
      socket.on('data', onStreamData);
      // resume() lets buffered chunks flow from the next tick, after `first`;
      // a pause by the handler for `first` still holds.
      socket.resume();
      if (first !== undefined && first.length > 0) this.handlers.chunk(this, first);
      return;
    }
    if (this.bare) (this.socket as BareConn).relayed = true;
    handle[kPort] = this as Port;
    handle.onread = onRead;
    shareReads(handle);
    if (first !== undefined && first.length > 0) this.handlers.chunk(this, first);
    takeBuffered(this.socket, (chunk) => this.handlers.chunk(this, chunk));
    if (readEnded(this.socket)) this.eof = true;
    // A bare dial, and a client held since its head, hand their handles over still reading.
    else if (this.paused || socket.destroyed) stopReading(handle);
    else if (!handle.reading) {
      handle.reading = true;
      handle.readStart();
    }
  }

  /** Writes `chunk` (the hot path); returns the bytes now waiting to go out. */
  send(chunk: Buffer): number {
    const handle = this.handle;
    if (handle === null || (this.viaStream && !this.#streamQueueEmpty())) {
      this.socket.write(ownCopy(chunk));
      return this.pending + this.socket.writableLength;
    }
    if (tryWrite !== null) {
      // Reads go to the shared buffer: write what the socket takes now, and
      // copy what libuv has to keep (it would point into the next read).
      if (this.pending === 0) {
        // A closed handle's fd is -1: the write fails as writeBuffer's would.
        const n = tryWrite(handle.fd, chunk);
        if (n === chunk.length) return 0;
        if (n < 0) {
          this.socket.destroy(uvError(n, 'write'));
          return 0;
        }
        chunk = chunk.subarray(n);
      }
      chunk = ownCopy(chunk);
    }
    let req = this.req;
    if (req === null) {
      req = new binding!.wrap.WriteWrap();
      req.handle = handle;
      req.oncomplete = onWriteDone;
      req.port = this as Port;
      req.buffer = null;
    }
    // A destroyed socket's closed handle answers with an error: dropped, as
    // a destroyed socket's write is.
    const err = handle.writeBuffer(req, chunk);
    if (err !== 0) {
      this.socket.destroy(uvError(err, 'write'));
      return 0;
    }
    if (state[kAsync] === 0) {
      this.req = req;
      return this.pending;
    }
    // libuv holds the rest until the socket can take it.
    this.req = null;
    req.bytes = chunk.length;
    req.buffer = chunk;
    return (this.pending += chunk.length);
  }

  /** Writes through the socket's stream API (the slow paths: cork, frames of the gateway's own). */
  write(chunk: Buffer): void {
    this.viaStream = true;
    this.socket.write(ownCopy(chunk));
  }

  /** Bytes waiting to go out. */
  get buffered(): number {
    return this.pending + this.socket.writableLength;
  }

  /** Stops reading (backpressure) until resume(). */
  pause(): void {
    this.paused = true;
    const handle = this.handle;
    // No handle: a stream socket (a BareConn always has one).
    if (handle === null) (this.socket as Socket).pause();
    else stopReading(handle);
  }

  resume(): void {
    this.paused = false;
    const handle = this.handle;
    if (handle === null) {
      if (!this.socket.destroyed) (this.socket as Socket).resume();
    } else if (!handle.reading && !this.eof && !this.socket.destroyed) {
      handle.reading = true;
      handle.readStart();
    }
  }

  #streamQueueEmpty(): boolean {
    if (this.socket.writableLength !== 0) return false;
    this.viaStream = false;
    return true;
  }
}

/**
 * From now on the handle reads into the shared read buffer (when there is
 * one). Its reader must then take a read with no ArrayBuffer: a Port's
 * onRead, bareRead(), or a net.Socket's own onread behind socketReads().
 */
export function shareReads(handle: Handle): void {
  if (readBuffer === null || handle[kShared] === true) return;
  handle[kShared] = true;
  handle.useUserBuffer(readBuffer);
}

/**
 * For a net.Socket just built on `handle`: Node's own onread wants a buffer
 * per read, so a read into the shared buffer is copied into one first, as
 * Node itself did before. The rare path: a plain HTTP request, an upstream's
 * non-101 answer.
 */
export function socketReads(handle: Handle): void {
  if (handle[kShared] !== true) return;
  handle[kNodeRead] = handle.onread;
  handle.onread = onSocketRead;
}

function onSocketRead(this: Handle, arrayBuffer: ArrayBuffer | undefined): void {
  const n = state[kReadBytes]!;
  if (arrayBuffer === undefined && n > 0) {
    const copy = Buffer.from(readBuffer!.subarray(0, n));
    state[kOffset] = copy.byteOffset;
    arrayBuffer = copy.buffer as ArrayBuffer;
  }
  // What it returns is dropped: the shared buffer stays the handle's.
  this[kNodeRead]!.call(this, arrayBuffer);
}

/** Stops reading a handle (idempotent); `reading` is the flag net.Socket keeps on it too. */
export function stopReading(handle: Handle): void {
  if (!handle.reading) return;
  handle.reading = false;
  handle.readStop();
}

/** Bytes read from the peer and not taken yet (what takeBuffered() would hand over). */
export function bufferedBytes(socket: RelaySocket): number {
  return 'readEnd' in socket ? socket.heldBytes : socket.readableLength;
}

/** The peer's FIN was read already. */
export function readEnded(socket: RelaySocket): boolean {
  return 'readEnd' in socket ? socket.readableEnded || socket.finHeld : (socket as PortSocket)._readableState.ended;
}

/**
 * Hands the chunks a paused socket read before its relay took over to
 * `take`, one by one, as they were read: flowing-mode read() does that (in
 * paused mode it would join them: a copy). Returns their bytes. A BareConn
 * hands over what it held since the head (and a FIN it held is read then).
 */
export function takeBuffered(socket: RelaySocket, take: (chunk: Buffer) => void): number {
  if ('readEnd' in socket) return socket.release(take);
  if (socket.readableLength === 0 || socket.destroyed) return 0;
  let bytes = 0;
  socket.resume();
  let chunk: Buffer | null;
  while ((chunk = socket.read() as Buffer | null) !== null) {
    take(chunk);
    bytes += chunk.length;
  }
  socket.pause();
  return bytes;
}

/** The socket's libuv TCP handle when the relay can drive it; null: use the stream API. */
export function tcpHandleOf(socket: Socket): Handle | null {
  const handle = (socket as PortSocket)._handle;
  return binding !== null && handle instanceof binding.TCP && !socket.destroyed ? handle : null;
}

/** `chunk`, or a copy of it when it lies in the shared read buffer (whatever keeps it must not see the next read). */
function ownCopy(chunk: Buffer): Buffer {
  return chunk.buffer === readArrayBuffer ? Buffer.from(chunk) : chunk;
}

/** Never returns a value: a handle reading into a user buffer would take it as the next buffer. */
function onRead(this: Handle, arrayBuffer: ArrayBuffer | undefined): void {
  const n = state[kReadBytes]!;
  const port = this[kPort]!;
  if (n > 0) {
    // No ArrayBuffer: the read went to the shared buffer.
    port.handlers.chunk(port, arrayBuffer === undefined ? Buffer.from(readArrayBuffer!, 0, n) : Buffer.from(arrayBuffer, state[kOffset]!, n));
    return;
  }
  if (n === 0) return;
  // EOF and errors go back to the socket as Node's own onread hands them:
  // its 'end', 'error' and 'close' follow as usual.
  const socket = port.socket;
  if (n !== UV_EOF) {
    socket.destroy(uvError(n, 'read'));
    return;
  }
  if (port.eof) return;
  port.eof = true;
  if (port.bare) {
    (socket as BareConn).readEnd();
    return;
  }
  (socket as Socket).push(null);
  (socket as Socket).read(0);
}

function onWriteDone(this: WriteReq, status: number): void {
  const port = this.port!;
  port.pending -= this.bytes;
  this.buffer = null;
  if (status < 0) {
    port.socket.destroy(uvError(status, 'write'));
    return;
  }
  if (port.pending === 0 && port.socket.writableLength === 0) port.handlers.drain(port);
}

function onStreamData(this: PortSocket, chunk: Buffer): void {
  const port = this[kPort]!;
  port.handlers.chunk(port, chunk);
}

function onStreamDrain(this: PortSocket): void {
  const port = this[kPort]!;
  if (port.pending === 0) port.handlers.drain(port);
}

/** A libuv error code as Node words it ("read ECONNRESET"). */
export function uvError(code: number, syscall: string): NodeJS.ErrnoException {
  const name = getSystemErrorName(code);
  return Object.assign(new Error(`${syscall} ${name}`), { errno: code, code: name, syscall });
}

/** Bare TCP handles are available: a dial can do without net.Socket (src/upstream/raw-dial.ts). */
export const BARE_TCP: boolean = binding !== null;

/** A new, unconnected TCP handle with no net.Socket around it; needs BARE_TCP. */
export function openBareTcp(): BareHandle {
  const handle = new binding!.TCP(binding!.SOCKET);
  handle.reading = false;
  return handle;
}

export function bareConnectReq(): ConnectReq {
  return new binding!.TCPConnectWrap();
}

/**
 * Writes `data` (a Buffer, or a latin1 string; UTF-8 with `utf8`) to a bare
 * handle: 0 when it went out at once, 1 when libuv holds it until
 * `done(status)`, or a libuv error.
 */
export function writeBare(handle: BareHandle, data: string | Buffer, done: (status: number) => void, utf8 = false): number {
  const req = new binding!.wrap.WriteWrap();
  req.handle = handle;
  // A module function and a field, never a function literal assigned here:
  // V8 allocates a function literal assigned to a property in the old
  // generation, and there, once dead, it keeps what it captured (here the
  // whole session) alive through every young collection until the next full
  // one. This closure made inspect mode promote ~5 kB per handshake.
  req.oncomplete = onBareWriteDone;
  req.done = done;
  req.buffer = typeof data === 'string' ? null : data;
  const err = typeof data !== 'string' ? handle.writeBuffer(req, data) : utf8 ? handle.writeUtf8String(req, data) : handle.writeLatin1String(req, data);
  if (err !== 0) return err;
  return state[kAsync] === 0 ? 0 : 1;
}

function onBareWriteDone(this: WriteReq, status: number): void {
  const done = this.done!;
  this.buffer = null;
  this.done = undefined;
  done(status);
}

/**
 * Sends FIN on a bare handle once libuv has written what it holds: 0 when
 * `done(status)` follows, 1 when it is done already, or a libuv error.
 */
export function bareShutdown(handle: BareHandle, done: (status: number) => void): number {
  const req = new binding!.wrap.ShutdownWrap();
  req.handle = handle;
  req.done = done;
  req.oncomplete = onShutdown;
  const err = handle.shutdown(req);
  // As net.Socket reads it: 1 is a shutdown finished at once; a peer already gone has nothing to shut.
  return err === 1 || err === binding!.UV_ENOTCONN ? 1 : err;
}

function onShutdown(this: ShutdownReq, status: number): void {
  this.done!(status);
}

/** In a bare handle's onread: the chunk read, or the libuv code (UV_EOF or an error) when there is none. */
export function bareRead(arrayBuffer: ArrayBuffer | undefined, keep = true): Buffer | number {
  const n = state[kReadBytes]!;
  if (n <= 0) return n;
  if (arrayBuffer !== undefined) return Buffer.from(arrayBuffer, state[kOffset]!, n);
  // A shared handle's read: a caller that keeps the chunk gets a copy.
  const chunk = readBuffer!.subarray(0, n);
  return keep ? Buffer.from(chunk) : chunk;
}

export function isEof(code: number): boolean {
  return code === UV_EOF;
}

/** The port of a relayed socket (for tests and introspection). */
export function portOf(socket: Socket): Port | undefined {
  return (socket as PortSocket)[kPort];
}
