import { close as closeFd } from 'node:fs';
import { nativeModule } from './native-module.js';
import {
  HANDLE_IO,
  openBareTcp,
  setLastWriteAsync,
  setReadResult,
  sharedReadBuffer,
  UV_EOF_CODE,
  type BareHandle,
  type ConnectReq,
  type ShutdownReq,
  type WriteReq,
} from './handle-io.js';

// Client connections accepted by the native module (native/conn.c) on plain
// listeners. Node's accept builds a TCPWrap per connection, and once a relay
// core takes the session the descriptor is duplicated into the core's epoll
// set while Node deletes and closes its own. Here the connection lives in
// that set from accept4() on and moves into the core as it is.
//
// CoreHandle is the handle API BareConn (bare-conn.ts) and the relay's Port
// (handle-io.ts) already drive on Node's TCP handles, over the module: reads
// into the shared read buffer reported through the stream state as Node's
// onread reports them, writes that complete at once or when the module says
// its queue is out, shutdown, close, the addresses. So a connection accepted
// here goes through the head reader, the handshake, refusals, the JavaScript
// relays and the cores exactly as one Node accepted; a plain HTTP request
// takes the descriptor back as a Node TCP handle (toTcp()).

/** A connection inside the module; only ever passed back to it. */
export interface AcceptedRef {
  readonly __accepted: never;
}

/** A listening socket the module accepts on. */
export interface AcceptorRef {
  readonly __acceptor: never;
}

type AcceptedFn = (owner: CoreAcceptor, conn: AcceptedRef, address: string, port: number, family: number, fd: number) => CoreHandle;
type EventFn = (owner: CoreHandle, kind: number, value: number, op: number) => void;

interface ConnModule {
  setConnEvents(accepted: AcceptedFn, event: EventFn, readBuffer: Buffer): void;
  acceptStart(owner: CoreAcceptor, fd: number): AcceptorRef | number;
  acceptQuiet(acceptor: AcceptorRef): number;
  acceptStop(acceptor: AcceptorRef): void;
  connRead(conn: AcceptedRef, on: boolean): number;
  connWrite(conn: AcceptedRef, data: Uint8Array | string, utf8: boolean): number;
  connShutdown(conn: AcceptedRef): number;
  connClose(conn: AcceptedRef): void;
  connRelease(conn: AcceptedRef): number;
  connQueued(conn: AcceptedRef): number;
  connSockname(conn: AcceptedRef): [string, number, number] | undefined;
}

// The events (native/conn.c).
const EV_DATA = 0;
const EV_EOF = 1;
const EV_ERROR = 2;
const EV_DRAINED = 3;
const EV_SHUTDOWN = 4;
const OP_WRITE = 1;
const UV_EBADF = -9;
const UV_EINVAL = -22;
const UV_ECANCELED = -125;

/** The module, or why there is none (undefined: turned off). */
function load(): ConnModule | string | undefined {
  if (process.env.WSGATE_ACCEPT === 'node') return undefined;
  // The JavaScript relay paths, kept as they are for the tests that choose them.
  const io = process.env.WSGATE_RELAY_IO;
  if (io === 'handle' || io === 'stream') return undefined;
  const buffer = sharedReadBuffer();
  if (!HANDLE_IO || buffer === null) return 'this Node.js lacks the socket internals, or the native module is missing';
  const mod = nativeModule();
  if (typeof mod === 'string') return mod;
  if (typeof (mod as Partial<ConnModule>).acceptStart !== 'function') return 'the native module is older than this code: run npm ci';
  (mod as ConnModule).setConnEvents(onAccepted, onEvent, buffer);
  return mod as ConnModule;
}

const loaded = load();
const native = typeof loaded === 'object' ? loaded : null;
/** Plain listeners accept in the native module. */
export const CORE_ACCEPT: boolean = native !== null;

let accepted = 0;

/** Connections the module has accepted in this process (for tests: which accept a listener runs). */
export function acceptedInCore(): number {
  return accepted;
}

interface Address {
  address?: string;
  port?: number;
  family?: string;
}

export class CoreHandle implements BareHandle {
  /** What a relay core takes (handle-io.ts coreClient()). */
  readonly accepted: AcceptedRef;
  fd: number;
  onread: BareHandle['onread'] = noRead;
  reading = false;
  readonly #peer: Address;
  /** Writes the module still holds bytes of, completed in order once its queue is out. */
  #writes: WriteReq[] = [];
  #shutdown: ShutdownReq | undefined;
  #closed = false;

  constructor(conn: AcceptedRef, address: string, port: number, family: number, fd: number) {
    this.accepted = conn;
    this.fd = fd;
    this.#peer = { address, port, family: family === 6 ? 'IPv6' : 'IPv4' };
  }

  readStart(): number {
    return native!.connRead(this.accepted, true);
  }

  readStop(): number {
    native!.connRead(this.accepted, false);
    return 0;
  }

  writeBuffer(req: WriteReq, data: Uint8Array): number {
    return this.#wrote(req, native!.connWrite(this.accepted, data, false));
  }

  writeLatin1String(req: WriteReq, data: string): number {
    return this.#wrote(req, native!.connWrite(this.accepted, data, false));
  }

  writeUtf8String(req: WriteReq, data: string): number {
    return this.#wrote(req, native!.connWrite(this.accepted, data, true));
  }

  #wrote(req: WriteReq, r: number): number {
    if (r < 0) return r;
    setLastWriteAsync(r === 1);
    if (r === 1) this.#writes.push(req);
    return 0;
  }

  get writeQueueSize(): number {
    return this.#writes.length === 0 ? 0 : native!.connQueued(this.accepted);
  }

  shutdown(req: ShutdownReq): number {
    const r = native!.connShutdown(this.accepted);
    if (r === 0) this.#shutdown = req;
    return r;
  }

  close(callback?: () => void): void {
    if (this.#closed) return;
    this.#closed = true;
    native!.connClose(this.accepted);
    this.fd = -1;
    this.reading = false;
    // As libuv does for a handle closed with requests in flight: they are cancelled, then the close callback runs.
    const writes = this.#writes;
    const shut = this.#shutdown;
    this.#writes = [];
    this.#shutdown = undefined;
    setImmediate(() => {
      for (const req of writes) req.oncomplete(UV_ECANCELED);
      shut?.oncomplete(UV_ECANCELED);
      callback?.();
    });
  }

  getpeername(out: Address): number {
    Object.assign(out, this.#peer);
    return 0;
  }

  getsockname(out: Address): number {
    const name = this.#closed ? undefined : native!.connSockname(this.accepted);
    if (name === undefined) return UV_EBADF;
    out.address = name[0];
    out.port = name[1];
    out.family = name[2] === 6 ? 'IPv6' : 'IPv4';
    return 0;
  }

  /** TCP_NODELAY is set at the accept, as the listener's noDelay asks. */
  setNoDelay(): number {
    return 0;
  }

  /** Reads always go to the shared read buffer. */
  useUserBuffer(): void {}

  connect(_req: ConnectReq, _address: string, _port: number): number {
    return UV_EINVAL;
  }

  connect6(_req: ConnectReq, _address: string, _port: number): number {
    return UV_EINVAL;
  }

  open(): number {
    return UV_EINVAL;
  }

  toTcp(): BareHandle | undefined {
    if (this.#closed) return undefined;
    const fd = native!.connRelease(this.accepted);
    if (fd < 0) return undefined;
    this.#closed = true;
    this.fd = -1;
    const tcp = openBareTcp();
    if (tcp.open(fd) !== 0) {
      closeFd(fd, noop);
      return undefined;
    }
    return tcp;
  }

  /** @internal what the module reports */
  event(kind: number, value: number, op: number): void {
    switch (kind) {
      case EV_DATA:
        setReadResult(value);
        this.onread(undefined);
        break;
      case EV_EOF:
        setReadResult(UV_EOF_CODE);
        this.onread(undefined);
        break;
      case EV_ERROR:
        // A write's failure goes to the writes waiting, as libuv reports it; otherwise it is the read's.
        if (op === OP_WRITE && this.#writes.length > 0) this.#completeWrites(value);
        else {
          setReadResult(value);
          this.onread(undefined);
        }
        break;
      case EV_DRAINED:
        this.#completeWrites(0);
        break;
      case EV_SHUTDOWN: {
        const req = this.#shutdown;
        this.#shutdown = undefined;
        req?.oncomplete(value);
        break;
      }
      default:
        break;
    }
  }

  #completeWrites(status: number): void {
    const writes = this.#writes;
    this.#writes = [];
    for (const req of writes) req.oncomplete(status);
  }
}

/** Accepts on a listening socket in the module, handing each connection to `take`. */
export class CoreAcceptor {
  #ref: AcceptorRef | undefined;
  readonly take: (handle: CoreHandle) => void;

  private constructor(take: (handle: CoreHandle) => void) {
    this.take = take;
  }

  /** Starts accepting on `fd` (a listening socket Node opened); undefined when the module cannot (it is off, or out of descriptors). */
  static start(fd: number, take: (handle: CoreHandle) => void): CoreAcceptor | undefined {
    if (native === null) return undefined;
    const acceptor = new CoreAcceptor(take);
    const ref = native.acceptStart(acceptor, fd);
    if (typeof ref === 'number') return undefined;
    acceptor.#ref = ref;
    return acceptor;
  }

  /** Node accepted a connection itself: its watcher of the socket was still in its set (libuv adds it lazily); take it out now. */
  quiet(): void {
    if (this.#ref !== undefined) native!.acceptQuiet(this.#ref);
  }

  stop(): void {
    if (this.#ref !== undefined) native!.acceptStop(this.#ref);
    this.#ref = undefined;
  }
}

function onAccepted(owner: CoreAcceptor, conn: AcceptedRef, address: string, port: number, family: number, fd: number): CoreHandle {
  const handle = new CoreHandle(conn, address, port, family, fd);
  accepted++;
  owner.take(handle);
  return handle;
}

function onEvent(owner: CoreHandle, kind: number, value: number, op: number): void {
  owner.event(kind, value, op);
}

function noRead(): void {}

function noop(): void {}
