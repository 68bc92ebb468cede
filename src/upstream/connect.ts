import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { TargetConfig } from '../config/types.js';
import { GatewayError, upstreamErrorCode } from '../errors.js';
import type { ResponseHead } from './response-head.js';
import { DialAttempt } from './dial-attempt.js';
import { BareDial, canDialBare, familyOf } from './raw-dial.js';
import { canDialInCore, CoreDial, type CoreDialRef } from './core-dial.js';
import type { BareHandle } from '../relay/handle-io.js';
import { upstreamSecureContext } from './upstream-tls.js';

export interface DialOptions {
  readonly target: TargetConfig;
  /** The complete request head, from buildUpstreamHandshake. */
  readonly request: string;
  /** Sec-WebSocket-Accept the upstream must answer with. */
  readonly accept: string;
  /** TCP connect + upstream handshake. */
  readonly timeout: number;
  readonly maxHeadBytes: number;
  /** `ca` is a PEM file; its context is built once per config (upstreamSecureContext). */
  readonly tls: { readonly ca: string | undefined; readonly servername: string | undefined; readonly verify: boolean } | undefined;
  /** A PROXY protocol header to send before anything else (before TLS, on wss:// targets). */
  readonly proxyHeader?: Buffer | undefined;
}

/** The upstream agreed: relay from here. `rest` is what it sent behind its 101. */
export interface Upgraded {
  readonly kind: 'upgraded';
  /** On a bare dial, reading it builds a socket on `handle` (once). */
  readonly socket: Socket;
  /** Set while the connection is a bare TCP handle (BareDial) that no socket owns yet. */
  readonly handle?: BareHandle | undefined;
  /** Set while the connection is the native module's (CoreDial), for a relay core to take. */
  readonly core?: CoreDialRef | undefined;
  coreTaken?(): void;
  discard?(): void;
  readonly head: ResponseHead;
  readonly rest: Buffer | undefined;
}

/** The upstream answered something other than 101; the client gets it as is. */
export interface Answered {
  readonly kind: 'answered';
  readonly socket: Socket;
  readonly handle?: BareHandle | undefined;
  readonly core?: CoreDialRef | undefined;
  discard?(): void;
  readonly head: ResponseHead;
  readonly rest: Buffer | undefined;
}

export type DialResult = Upgraded | Answered;

export type DialDone = (err: GatewayError | undefined, result: DialResult | undefined) => void;

/** One attempt at one target, under way. */
export interface Dial {
  /** The client went away: give up quietly. */
  abort(): void;
}

/**
 * Dials `opts.target`. `bare`: the caller takes a bare TCP handle when it can
 * (the native core in tunnel mode, a BareConn in inspect mode), so plain
 * targets with an IP address are dialed without a net.Socket (raw-dial.ts).
 * `core`: a relay core will take the session, so such targets are dialed
 * by the native module (core-dial.ts), into the core's hands.
 */
export function dialUpstream(opts: DialOptions, done: DialDone, bare: boolean, core = false): Dial {
  if (!bare || !canDialBare(opts)) return new UpstreamDial(opts, done);
  return core && canDialInCore() ? new CoreDial(opts, done, familyOf(opts.target.host) === 6) : new BareDial(opts, done);
}

/** Closes the connection of an answer nobody will use. */
export function discardAnswer(result: DialResult): void {
  if (result.discard !== undefined) result.discard();
  else if (result.handle !== undefined) result.handle.close();
  else result.socket.destroy();
}

/**
 * One attempt at one target: dial, send the handshake, read the answer. The
 * handshake is written by hand on a raw socket rather than through
 * http.request: the 101 hands us the socket anyway, and skipping the HTTP
 * client saves an agent, a parser and several objects per connection.
 */
export class UpstreamDial extends DialAttempt {
  readonly socket: Socket;

  constructor(opts: DialOptions, done: DialDone) {
    super(opts, done);
    const { host, port } = opts.target;
    const proxyHeader = opts.proxyHeader;
    let tcp: Socket | undefined;
    if (opts.target.secure && proxyHeader !== undefined) {
      // The PROXY header goes on the TCP connection, ahead of the TLS ClientHello.
      tcp = netConnect({ host, port, noDelay: true });
      tcp.on('error', noop);
      tcp.once('connect', () => tcp!.write(proxyHeader));
    }
    this.socket = opts.target.secure
      ? tlsConnect({
          host,
          port,
          socket: tcp,
          servername: opts.tls?.servername ?? (isIpLiteral(host) ? undefined : host),
          secureContext: upstreamSecureContext(opts.tls),
          rejectUnauthorized: opts.tls?.verify ?? true,
          ALPNProtocols: ['http/1.1'],
        })
      : netConnect({ host, port, noDelay: true });
    // Plain sockets got noDelay at creation; one setsockopt less per handshake.
    if (opts.target.secure) this.socket.setNoDelay(true);
    this.socket.on('error', this.#onError);
    this.socket.on('data', this.#onData);
    this.socket.on('close', this.#onClose);
    this.socket.once(opts.target.secure ? 'secureConnect' : 'connect', this.#onConnect);
  }

  protected drop(): void {
    this.socket.destroy();
  }

  #onConnect = (): void => {
    const proxyHeader = this.opts.proxyHeader;
    if (proxyHeader !== undefined && !this.opts.target.secure) this.socket.write(proxyHeader);
    this.socket.write(this.opts.request, 'latin1');
  };

  #onData = (chunk: Buffer): void => {
    const answer = this.answer.take(chunk);
    if (answer === undefined) return;
    this.socket.off('data', this.#onData);
    this.socket.off('close', this.#onClose);
    this.socket.off('error', this.#onError);
    // The next owner attaches its own handlers; until then errors are swallowed
    // rather than crashing the process.
    this.socket.on('error', noop);
    if (answer instanceof GatewayError) {
      this.fail(answer);
      return;
    }
    // Stop the flow until the relay (or the answer forwarder) takes over.
    this.socket.pause();
    this.settle(undefined, { ...answer, socket: this.socket });
  };

  #onError = (err: NodeJS.ErrnoException): void => {
    this.fail(new GatewayError(upstreamErrorCode(err), `${this.opts.target.url}: ${err.message}`, { cause: err }));
  };

  #onClose = (): void => {
    this.fail(new GatewayError('UPSTREAM_RESET', `${this.opts.target.url}: closed before answering`));
  };
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

function noop(): void {}
