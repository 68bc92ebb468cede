import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  constants,
  createServer,
  Http2ServerRequest,
  Http2ServerResponse,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Limits } from '../config/types.js';
import type { GatewayError } from '../errors.js';
import { setClientAnswer } from '../handshake/client-answer.js';
import type { UpgradeRequest } from '../handshake/request-head.js';
import { peerAddress, peerPort, setPeer, type Peer } from '../listener/peer-address.js';
import type { Logger } from '../observability/logger.js';
import type { RelaySocket } from '../relay/handle-io.js';
import { ExtendedConnect, extendedConnectError } from './extended-connect.js';
import { http1Fields } from './http1-fields.js';
import { STREAM_ANSWER } from './stream-answer.js';

const { NGHTTP2_CANCEL } = constants;

/** What the HTTP/2 side hands its streams to: the listener's handlers (the front door). */
export interface Http2Handlers {
  upgrade(req: UpgradeRequest, socket: RelaySocket, head: Buffer, secure: boolean): void;
  /** A WebSocket handshake refused before it reached upgrade() (an extended CONNECT that breaks RFC 8441). */
  refuseUpgrade?(req: UpgradeRequest, socket: RelaySocket, err: GatewayError): void;
  request(req: IncomingMessage, res: ServerResponse, secure: boolean): void;
  readonly log?: Logger | undefined;
}

/**
 * Streams at once per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS).
 * Each WebSocket is one; the per-address session limit (perIp) counts them
 * too, and refuses first at its default of 256.
 */
export const MAX_STREAMS = 1000;
/**
 * Flow-control windows for what clients send: per stream (a WebSocket's
 * uploads), and per connection, which all its streams share. HTTP/2's
 * default, 64 KiB for each, would hold every WebSocket of a connection
 * together to 64 KiB per round trip. A stream whose upstream is slow is not
 * read (backpressure): it holds at most its window, the connection at most
 * its own.
 */
const STREAM_WINDOW = 256 * 1024;
const SESSION_WINDOW = 8 * 1024 * 1024;
/** A connection with no stream left is closed after this, as HTTP/1.1 keep-alive connections are (listener.ts). */
const IDLE_MS = 5_000;
const EMPTY = Buffer.alloc(0);

/** One HTTP/2 connection's bookkeeping. */
interface SessionState {
  readonly session: ServerHttp2Session;
  /** The front's set of open connections, which this one leaves when it closes. */
  readonly open: Set<SessionState>;
  /** The connection's address (PROXY protocol applied), shared by its streams. */
  readonly peer: Peer;
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  /** Streams open now. */
  streams: number;
  /** Set while there is no stream: closes the connection when it fires. */
  idle: NodeJS.Timeout | undefined;
}

const kState = Symbol('wsgate.h2state');

type Stream = ServerHttp2Stream & { [kState]?: SessionState };
type Session = ServerHttp2Session & { [kState]?: SessionState };

/**
 * The HTTP/2 side of a TLS listener. The listener's TLS server reads ALPN;
 * a connection that chose `h2` is handed here (take()) and becomes an
 * HTTP/2 session of Node's, with SETTINGS_ENABLE_CONNECT_PROTOCOL on, so
 * that WebSockets can be opened over its streams by extended CONNECT
 * (RFC 8441). Connections that chose http/1.1 never come here: the
 * listener's HTTP/1.1 path is untouched.
 *
 * An extended CONNECT goes through the same front door as an HTTP/1.1
 * upgrade (validation, limits, auth, routing, the Session and its relay):
 * the stream itself is the session's downstream, answered with HTTP/2
 * frames (stream-answer.ts), relayed through its stream API (there is no
 * file descriptor: tunnel mode runs on the JavaScript tunnel, inspect mode
 * on its stream path), its flow control giving the backpressure. Any
 * other request goes to HTTP passthrough through Node's compatibility
 * request and response.
 *
 * Connections are closed after IDLE_MS without a stream, or when no stream
 * opens within the handshake timeout (a slowloris holds no connection
 * forever). goAway() (the listener closing: shutdown, a reload that drops
 * it) sends GOAWAY on every connection: no new streams, and each connection
 * closes once its streams are done.
 */
export class Http2Front {
  readonly #server: Http2Server;
  readonly #handlers: Http2Handlers;
  readonly #sessions = new Set<SessionState>();
  #handshakeMs: number;
  #goingAway = false;

  constructor(handlers: Http2Handlers, limits: Limits) {
    this.#handlers = handlers;
    this.#handshakeMs = limits.handshakeTimeout;
    this.#server = createServer({
      settings: {
        enableConnectProtocol: true,
        maxConcurrentStreams: MAX_STREAMS,
        maxHeaderListSize: limits.maxHeaderBytes,
        initialWindowSize: STREAM_WINDOW,
      },
    });
    this.#server.on('session', this.#onSession);
    this.#server.on('stream', this.#onStream);
    this.#server.on('sessionError', this.#onSessionError);
  }

  /** Open HTTP/2 connections. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** A TLS connection that negotiated h2. */
  take(socket: TLSSocket): void {
    this.#server.emit('connection', socket);
  }

  /** A reload's limits, for connections from now on. */
  setLimits(limits: Limits): void {
    this.#handshakeMs = limits.handshakeTimeout;
    this.#server.updateSettings({ maxHeaderListSize: limits.maxHeaderBytes });
  }

  /** GOAWAY on every connection, now and from now on: their open streams run to their end. */
  goAway(): void {
    this.#goingAway = true;
    for (const s of this.#sessions) s.session.close();
  }

  /** Cuts every connection (the end of a shutdown). */
  destroy(): void {
    for (const s of this.#sessions) s.session.destroy();
  }

  #onSession = (session: Session): void => {
    const socket = session.socket as TLSSocket;
    const state: SessionState = {
      session,
      open: this.#sessions,
      peer: { address: peerAddress(socket), port: peerPort(socket) },
      localAddress: socket.localAddress,
      localPort: socket.localPort,
      streams: 0,
      idle: undefined,
    };
    session[kState] = state;
    this.#sessions.add(state);
    session.on('close', onSessionClose);
    session.on('error', noop);
    session.on('frameError', noop);
    session.setLocalWindowSize(SESSION_WINDOW);
    if (this.#goingAway) {
      session.close();
      return;
    }
    // The first stream must come within the handshake timeout, as an HTTP/1.1 head must.
    state.idle = setTimeout(closeIdle, this.#handshakeMs, state).unref();
  };

  #onSessionError = (err: Error, session: ServerHttp2Session): void => {
    this.#handlers.log?.debug({ client: (session as Session)[kState]?.peer.address, err: err.message }, 'HTTP/2 connection failed');
  };

  #onStream = (stream: Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]): void => {
    stream.on('error', onStreamError);
    const state = (stream.session as Session | undefined)?.[kState];
    if (state === undefined) {
      stream.destroy();
      return;
    }
    stream[kState] = state;
    state.streams++;
    if (state.idle !== undefined) {
      clearTimeout(state.idle);
      state.idle = undefined;
    }
    stream.once('close', onStreamClose);
    if (headers[':method'] === 'CONNECT') this.#extendedConnect(stream, state, headers, rawHeaders);
    else this.#request(stream, headers, rawHeaders);
  };

  #extendedConnect(stream: Stream, state: SessionState, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    const down = asDownstream(stream, state);
    const req = new ExtendedConnect(down, headers, rawHeaders);
    const invalid = extendedConnectError(headers);
    if (invalid === undefined) this.#handlers.upgrade(req, down, EMPTY, true);
    else if (this.#handlers.refuseUpgrade !== undefined) this.#handlers.refuseUpgrade(req, down, invalid);
    else STREAM_ANSWER.refuse(stream, invalid.spec.httpStatus, invalid.spec.text, undefined);
  }

  /**
   * A plain request, as Node's compatibility layer would make it, but read
   * the way the front door and passthrough read an HTTP/1.1 one: `host`
   * from :authority, rawHeaders without pseudo-headers (http1Fields).
   */
  #request(stream: Stream, headers: IncomingHttpHeaders, rawHeaders: string[]): void {
    const authority = headers[':authority'];
    if (headers.host === undefined && authority !== undefined) headers.host = authority;
    const req = new Http2ServerRequest(stream, headers, {}, http1Fields(headers, rawHeaders));
    const res = new Http2ServerResponse(stream);
    // As the compatibility layer does: a 100 for 100-continue, a 417 for any other expectation.
    const expect = headers.expect;
    if (expect !== undefined) {
      if (expect.toLowerCase() !== '100-continue') {
        res.statusCode = 417;
        res.end();
        return;
      }
      res.writeContinue();
    }
    this.#handlers.request(req as unknown as IncomingMessage, res as unknown as ServerResponse, true);
  }
}

/**
 * The stream as a session's downstream: answered with frames, known by its
 * connection's address (and local address, for a PROXY header upstream),
 * and cut with RST_STREAM(CANCEL).
 */
function asDownstream(stream: Stream, state: SessionState): RelaySocket {
  setClientAnswer(stream, STREAM_ANSWER);
  setPeer(stream as unknown as Socket, state.peer);
  const local = stream as unknown as { localAddress?: string | undefined; localPort?: number | undefined };
  local.localAddress = state.localAddress;
  local.localPort = state.localPort;
  nodeDestroy ??= stream.destroy;
  stream.destroy = destroyStream;
  return stream as unknown as RelaySocket;
}

let nodeDestroy: ServerHttp2Stream['destroy'] | undefined;

/**
 * The relays end a downstream with destroy() when they cut it. Node resets
 * a stream destroyed without an error with NO_ERROR; RFC 8441 §6 makes a
 * cut (what a TCP RST is to RFC 6455) RST_STREAM(CANCEL). A stream whose
 * own side was ended first (END_STREAM) is finished, not cut: Node's reset
 * stays.
 */
function destroyStream(this: Stream, err?: Error): Stream {
  if (err === undefined && !this.closed && !this.writableEnded) {
    const session = this.session;
    if (session !== undefined && !session.destroyed) this.close(NGHTTP2_CANCEL);
  }
  return nodeDestroy!.call(this, err) as Stream;
}

function onStreamClose(this: Stream): void {
  const state = this[kState]!;
  if (--state.streams > 0 || state.session.closed || state.session.destroyed) return;
  state.idle = setTimeout(closeIdle, IDLE_MS, state).unref();
}

function closeIdle(state: SessionState): void {
  state.idle = undefined;
  if (state.streams === 0) state.session.close();
}

function onSessionClose(this: Session): void {
  const state = this[kState];
  if (state === undefined) return;
  clearTimeout(state.idle);
  state.idle = undefined;
  state.open.delete(state);
}

function onStreamError(this: Stream): void {
  this.destroy();
}

function noop(): void {}
