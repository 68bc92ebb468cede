import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { TargetConfig } from '../config/types.js';
import { GatewayError, upstreamErrorCode } from '../errors.js';
import { parseResponseHead, type ResponseHead } from './response-head.js';
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
  readonly socket: Socket;
  readonly head: ResponseHead;
  readonly rest: Buffer | undefined;
}

/** The upstream answered something other than 101; the client gets it as is. */
export interface Answered {
  readonly kind: 'answered';
  readonly socket: Socket;
  readonly head: ResponseHead;
  readonly rest: Buffer | undefined;
}

export type DialResult = Upgraded | Answered;

/**
 * One attempt at one target: dial, send the handshake, read the answer. The
 * handshake is written by hand on a raw socket rather than through
 * http.request: the 101 hands us the socket anyway, and skipping the HTTP
 * client saves an agent, a parser and several objects per connection.
 */
export class UpstreamDial {
  readonly socket: Socket;
  readonly #opts: DialOptions;
  readonly #done: (err: GatewayError | undefined, result: DialResult | undefined) => void;
  readonly #timer: NodeJS.Timeout;
  #chunks: Buffer[] | undefined;
  #settled = false;

  constructor(opts: DialOptions, done: (err: GatewayError | undefined, result: DialResult | undefined) => void) {
    this.#opts = opts;
    this.#done = done;
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
    this.#timer = setTimeout(this.#onTimeout, opts.timeout);
  }

  /** The client went away: give up quietly. */
  abort(): void {
    if (this.#settled) return;
    this.#settle(undefined, undefined);
    this.socket.destroy();
  }

  #onConnect = (): void => {
    const proxyHeader = this.#opts.proxyHeader;
    if (proxyHeader !== undefined && !this.#opts.target.secure) this.socket.write(proxyHeader);
    this.socket.write(this.#opts.request);
  };

  #onData = (chunk: Buffer): void => {
    let buf = chunk;
    if (this.#chunks !== undefined) {
      this.#chunks.push(chunk);
      buf = Buffer.concat(this.#chunks);
    }
    const end = buf.indexOf('\r\n\r\n', 0, 'latin1');
    if (end === -1) {
      if (buf.length > this.#opts.maxHeadBytes) {
        this.#fail(new GatewayError('UPSTREAM_BAD_RESPONSE', `response head over ${this.#opts.maxHeadBytes} bytes`));
      } else {
        this.#chunks = [buf];
      }
      return;
    }
    const head = parseResponseHead(buf.toString("latin1", 0, end));
    if (head === undefined) {
      this.#fail(new GatewayError('UPSTREAM_BAD_RESPONSE', 'unparseable response head'));
      return;
    }
    const rest = end + 4 < buf.length ? buf.subarray(end + 4) : undefined;
    this.socket.off('data', this.#onData);
    this.socket.off('close', this.#onClose);
    this.socket.off('error', this.#onError);
    if (head.status === 101) {
      const problem = checkUpgrade(head, this.#opts.accept);
      if (problem !== undefined) {
        this.socket.on('error', noop);
        this.#fail(new GatewayError('UPSTREAM_BAD_RESPONSE', problem));
        return;
      }
    }
    // The next owner attaches its own handlers; until then errors are swallowed
    // rather than crashing the process.
    this.socket.on('error', noop);
    // Stop the flow until the relay (or the answer forwarder) takes over.
    this.socket.pause();
    this.#settle(undefined, { kind: head.status === 101 ? 'upgraded' : 'answered', socket: this.socket, head, rest });
  };

  #onError = (err: NodeJS.ErrnoException): void => {
    this.#fail(new GatewayError(upstreamErrorCode(err), `${this.#opts.target.url}: ${err.message}`, { cause: err }));
  };

  #onClose = (): void => {
    this.#fail(new GatewayError('UPSTREAM_RESET', `${this.#opts.target.url}: closed before answering`));
  };

  #onTimeout = (): void => {
    this.#fail(new GatewayError('UPSTREAM_TIMEOUT', `${this.#opts.target.url}: no answer within ${this.#opts.timeout}ms`));
  };

  #fail(err: GatewayError): void {
    if (this.#settled) return;
    this.socket.destroy();
    this.#settle(err, undefined);
  }

  #settle(err: GatewayError | undefined, result: DialResult | undefined): void {
    this.#settled = true;
    this.#chunks = undefined;
    clearTimeout(this.#timer);
    this.#done(err, result);
  }
}

function checkUpgrade(head: ResponseHead, accept: string): string | undefined {
  if (head.get('upgrade')?.toLowerCase() !== 'websocket') return '101 without Upgrade: websocket';
  if (!/(^|[\s,])upgrade([\s,]|$)/i.test(head.get('connection') ?? '')) return '101 without Connection: upgrade';
  if (head.get('sec-websocket-accept') !== accept) return '101 with a wrong Sec-WebSocket-Accept';
  return undefined;
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

function noop(): void {}
