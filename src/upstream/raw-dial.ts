import { isIP, Socket } from 'node:net';
import { GatewayError, upstreamErrorCode } from '../errors.js';
import {
  BARE_TCP,
  bareConnectReq,
  bareRead,
  isEof,
  openBareTcp,
  shareReads,
  socketReads,
  uvError,
  writeBare,
  type BareHandle,
  type ConnectReq,
  type Handle,
} from '../relay/handle-io.js';
import { DialAttempt, type Answer } from './dial-attempt.js';
import type { Answered, DialDone, DialOptions, Upgraded } from './connect.js';

// A dial on a bare TCP handle: Node's own handle, driven the way net.Socket
// drives it, but with no net.Socket around it. Tunnel sessions hand the
// connection to the native relay core right after the 101, and inspect
// sessions relay it as a BareConn (src/relay/bare-conn.ts), so a socket would
// be built only to be torn down again: a quarter of a tunnel handshake's
// instructions (`bench/instructions.ts`: 331k with it, 251k without). The
// answer carries the bare handle, and builds a socket on it only if something
// asks for one (a non-101 answer to pass on, or a session the core cannot take).
//
// Only for plain targets with an IP address: names (DNS) and TLS take
// UpstreamDial, as do builds without the internals (BARE_TCP).

/** A bare dial can reach `opts.target`. */
export function canDialBare(opts: DialOptions): boolean {
  const { host, secure } = opts.target;
  return BARE_TCP && !secure && familyOf(host) !== 0;
}

/** Targets' hosts come from the config: a few, dialled over and over, and net.isIP is a regular expression. */
const families = new Map<string, number>();

/** 4 or 6 for an IP address, 0 for a name. */
export function familyOf(host: string): number {
  let family = families.get(host);
  if (family === undefined) {
    if (families.size >= 1024) families.clear();
    family = isIP(host);
    families.set(host, family);
  }
  return family;
}

interface DialReq extends ConnectReq {
  dial: BareDial;
}

interface DialHandle extends BareHandle {
  dial?: BareDial;
}

export class BareDial extends DialAttempt {
  readonly #handle: DialHandle;

  constructor(opts: DialOptions, done: DialDone) {
    super(opts, done);
    const { host, port } = opts.target;
    const handle: DialHandle = openBareTcp();
    this.#handle = handle;
    handle.dial = this;
    handle.setNoDelay(true);
    shareReads(handle);
    const req = bareConnectReq() as DialReq;
    req.dial = this;
    req.oncomplete = onConnect;
    let err = familyOf(host) === 6 ? handle.connect6(req, host, port) : handle.connect(req, host, port);
    if (err === 0) {
      // Reading starts with the connect, so libuv registers the descriptor
      // for both in one epoll_ctl (it reads nothing before the connect is
      // through); started after it, it costs two more.
      handle.onread = onRead;
      handle.reading = true;
      err = handle.readStart();
    }
    if (err !== 0) process.nextTick(() => this.#failed(err, 'connect'));
  }

  protected drop(): void {
    this.#handle.close();
  }

  /** @internal the connect request completed */
  connected(status: number): void {
    if (this.settled) return;
    if (status < 0) {
      this.#failed(status, 'connect');
      return;
    }
    const handle = this.#handle;
    const proxyHeader = this.opts.proxyHeader;
    // Writes libuv holds for later (the upstream's window is full) report their errors here.
    const written = (st: number): void => {
      if (st < 0) this.#failed(st, 'write');
    };
    let err = proxyHeader === undefined ? 0 : writeOrError(handle, proxyHeader, written);
    if (err === 0) err = writeOrError(handle, this.opts.request, written);
    if (err !== 0) this.#failed(err, 'write');
  }

  /** @internal */
  read(chunk: Buffer | number): void {
    if (this.settled) return;
    if (typeof chunk === 'number') {
      if (chunk === 0) return;
      if (isEof(chunk)) this.fail(new GatewayError('UPSTREAM_RESET', `${this.opts.target.url}: closed before answering`));
      else this.#failed(chunk, 'read');
      return;
    }
    const answer = this.answer.take(chunk);
    if (answer === undefined) return;
    if (answer instanceof GatewayError) {
      this.fail(answer);
      return;
    }
    // The handle reads on: whoever takes the answer takes the handle in this
    // same tick (a relay's Port, the native core, a socket built on it, or a
    // close), and a read stopped here and started there again would cost two
    // epoll_ctl calls.
    const handle = this.#handle;
    handle.dial = undefined;
    this.settle(undefined, new BareAnswer(answer, handle) as Upgraded | Answered);
  }

  #failed(code: number, syscall: string): void {
    const { host, port, url } = this.opts.target;
    const err = uvError(code, syscall);
    err.message += ` ${host}:${port}`;
    this.fail(new GatewayError(upstreamErrorCode(err), `${url}: ${err.message}`, { cause: err }));
  }
}

function writeOrError(handle: BareHandle, data: string | Buffer, done: (status: number) => void): number {
  const r = writeBare(handle, data, done);
  return r < 0 ? r : 0;
}

function onConnect(this: ConnectReq, status: number): void {
  (this as DialReq).dial.connected(status);
}

function onRead(this: Handle, arrayBuffer: ArrayBuffer | undefined): void {
  // The answer reader copies what it keeps.
  (this as DialHandle).dial?.read(bareRead(arrayBuffer, false));
}

/**
 * The answer, with the connection as a bare handle: `handle` while nothing
 * asked for a socket, `socket` builds one on the handle (once) and from then
 * on the socket owns it. A class, not an object literal with getters: V8
 * puts a literal's accessor functions in the old generation, where, once
 * dead, they keep what they captured (the handle, and with it the session)
 * alive through every young collection until the next full one.
 */
class BareAnswer {
  readonly kind: Answer['kind'];
  readonly head: Answer['head'];
  readonly rest: Answer['rest'];
  readonly #handle: BareHandle;
  #socket: Socket | undefined;

  constructor(answer: Answer, handle: BareHandle) {
    this.kind = answer.kind;
    this.head = answer.head;
    this.rest = answer.rest;
    this.#handle = handle;
  }

  get handle(): BareHandle | undefined {
    return this.#socket === undefined ? this.#handle : undefined;
  }

  get socket(): Socket {
    return (this.#socket ??= socketOn(this.#handle));
  }
}

/** A socket that owns `handle` from now on, paused, as UpstreamDial leaves its sockets: the next owner starts the flow. */
export function socketOn(handle: BareHandle): Socket {
  const socket = new Socket({ handle, readable: true, writable: true, pauseOnCreate: true } as ConstructorParameters<typeof Socket>[0]);
  socketReads(handle);
  socket.on('error', noop);
  return socket;
}

function noop(): void {}
