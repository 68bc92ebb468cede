import type { Socket } from 'node:net';
import { GatewayError, upstreamErrorCode } from '../errors.js';
import { nativeModule } from '../relay/native-module.js';
import { openBareTcp, shareReads, sharedReadBuffer, uvError, type BareHandle } from '../relay/handle-io.js';
import { socketOn } from './raw-dial.js';
import { DialAttempt, type Answer } from './dial-attempt.js';
import type { Answered, DialDone, DialOptions, Upgraded } from './connect.js';

// A dial by the native module (native/dial.c), for sessions a relay core
// will carry: the connection is made, written and read in C, in the core's
// own epoll set, and moves into the core's session with the 101 as it is.
// No Node handle, no connect request, no duplicate descriptor: per tunnel
// handshake, 5 system calls and the TCPWrap's construction and teardown
// fewer than a bare dial (raw-dial.ts). JavaScript still judges the answer
// (AnswerReader), chunk by chunk, and keeps the timeout. The chunks are read
// into the shared read buffer (handle-io.ts), as a CoreHandle's are: no
// Buffer, backing store and finalizer per chunk.
//
// An answer that is not a 101, or a session the core does not take after
// all, gets the connection back as a bare Node handle (`handle`), and from
// there a socket, as a bare dial's answer would.

/** A dial inside the module; only ever passed back to it. */
export interface CoreDialRef {
  readonly __coreDial: never;
}

type EventFn = (owner: CoreDial, kind: number, errno: number, op: number, length: number) => void;

interface DialModule {
  setDialEvents(fn: EventFn, readBuffer: Buffer): void;
  dial(owner: CoreDial, address: string, port: number, ipv6: boolean, request: string, proxyHeader: Buffer | null): CoreDialRef | number;
  dialClose(dial: CoreDialRef): void;
  dialRelease(dial: CoreDialRef): number;
}

// The events (native/dial.c).
const EV_DATA = 0;
const EV_EOF = 1;
const OPS = ['connect', 'write', 'read'] as const;

let readBuffer: Buffer | null = null;

function load(): DialModule | null {
  const mod = nativeModule();
  readBuffer = sharedReadBuffer();
  if (typeof mod === 'string' || typeof (mod as Partial<DialModule>).dial !== 'function' || readBuffer === null) return null;
  (mod as DialModule).setDialEvents(onEvent, readBuffer);
  return mod as DialModule;
}

let dialer: DialModule | null | undefined;

/** The module can dial (it is built). Asked only for sessions a relay core will take. */
export function canDialInCore(): boolean {
  return (dialer ??= load()) !== null;
}

export class CoreDial extends DialAttempt {
  #dial: CoreDialRef | undefined;

  constructor(opts: DialOptions, done: DialDone, ipv6: boolean) {
    super(opts, done);
    const { host, port } = opts.target;
    const r = dialer!.dial(this, host, port, ipv6, opts.request, opts.proxyHeader ?? null);
    if (typeof r === 'number') process.nextTick(() => this.#failed(r, 'connect'));
    else this.#dial = r;
  }

  protected drop(): void {
    if (this.#dial !== undefined) dialer!.dialClose(this.#dial);
  }

  /** @internal from the module */
  event(kind: number, errno: number, op: number, length: number): void {
    if (this.settled) return;
    if (kind === EV_DATA) {
      const answer = this.answer.take(readBuffer!.subarray(0, length));
      if (answer === undefined) return;
      if (answer instanceof GatewayError) this.fail(answer);
      else this.settle(undefined, new CoreAnswer(answer, this.#dial!) as Upgraded | Answered);
      return;
    }
    if (kind === EV_EOF) this.fail(new GatewayError('UPSTREAM_RESET', `${this.opts.target.url}: closed before answering`));
    else this.#failed(errno, OPS[op] ?? 'read');
  }

  #failed(code: number, syscall: string): void {
    const { host, port, url } = this.opts.target;
    const err = uvError(code, syscall);
    err.message += ` ${host}:${port}`;
    this.fail(new GatewayError(upstreamErrorCode(err), `${url}: ${err.message}`, { cause: err }));
  }
}

function onEvent(owner: CoreDial, kind: number, errno: number, op: number, length: number): void {
  owner.event(kind, errno, op, length);
}

/**
 * The answer, with the connection still in the module: `core` for a relay
 * core to take, `handle` (a bare Node handle, made once) or `socket` for
 * anything else; after either of those, `core` is gone. A class, for the
 * reason BareAnswer (raw-dial.ts) is one.
 */
class CoreAnswer {
  readonly kind: Answer['kind'];
  readonly head: Answer['head'];
  readonly rest: Answer['rest'];
  #core: CoreDialRef | undefined;
  #handle: BareHandle | undefined;
  #socket: Socket | undefined;

  constructor(answer: Answer, core: CoreDialRef) {
    this.kind = answer.kind;
    this.head = answer.head;
    this.rest = answer.rest;
    this.#core = core;
  }

  /** For a relay core's open(): it takes the connection as it is, and says so with coreTaken(). */
  get core(): CoreDialRef | undefined {
    return this.#core;
  }

  coreTaken(): void {
    this.#core = undefined;
  }

  get handle(): BareHandle | undefined {
    if (this.#socket !== undefined) return undefined;
    if (this.#handle === undefined) {
      const fd = this.#core === undefined ? -1 : dialer!.dialRelease(this.#core);
      this.#core = undefined;
      const handle = openBareTcp();
      // A descriptor the module let go of cannot fail to open; if it was gone, the handle is closed and reads fail.
      if (fd >= 0) handle.open(fd);
      shareReads(handle);
      this.#handle = handle;
    }
    return this.#handle;
  }

  get socket(): Socket {
    return (this.#socket ??= socketOn(this.handle!));
  }

  /** Closes the connection, wherever it is. */
  discard(): void {
    if (this.#core !== undefined) dialer!.dialClose(this.#core);
    this.#core = undefined;
    if (this.#socket !== undefined) this.#socket.destroy();
    else this.#handle?.close();
  }
}
