import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { SecureContext, TLSSocket } from 'node:tls';
import type { Limits, ListenerConfig } from '../config/types.js';
import type { ErrorCode, GatewayError } from '../errors.js';
import { Http2Front } from '../http2/http2-front.js';
import type { Logger } from '../observability/logger.js';
import { IpFilter } from '../policy/ip-filter.js';
import { LogThrottle } from '../policy/log-throttle.js';
import { CertificateStore, CertificateWatcher } from './certificates.js';
import { peerAddress, setPeer, type Peer } from './peer-address.js';
import { ProxyHeaderReader } from './proxy-protocol.js';
import { HeadReaders, sweepEvery } from './head-reader.js';
import type { UpgradeRequest } from '../handshake/request-head.js';
import { BARE_TCP, type BareHandle, type RelaySocket } from '../relay/handle-io.js';
import { BareConn } from '../relay/bare-conn.js';
import { CoreAcceptor, type CoreHandle } from '../relay/core-handle.js';

export interface ListenerHandlers {
  upgrade(req: UpgradeRequest, socket: RelaySocket, head: Buffer, secure: boolean): void;
  /** A WebSocket handshake refused before it could reach upgrade(): an HTTP/2 extended CONNECT that breaks RFC 8441. */
  refuseUpgrade?(req: UpgradeRequest, socket: RelaySocket, err: GatewayError): void;
  request(req: IncomingMessage, res: ServerResponse, secure: boolean): void;
  clientError(err: NodeJS.ErrnoException, socket: RelaySocket): void;
  /**
   * A new connection, its PROXY header read and the listener's IP lists
   * passed (peerAddress() is final): false closes it before any byte of it
   * is parsed. Whatever it counts, it releases on the socket's 'close'.
   */
  accept?(socket: RelaySocket): boolean;
  /** A connection closed by the listener itself (its IP lists, a bad PROXY header), for the metrics. */
  refused?(code: ErrorCode): void;
  /** Where TLS, PROXY protocol and accept-time refusals are logged. */
  readonly log?: Logger;
}

type ConnectionListener = (this: Server, socket: Socket) => void;

type SecureListener = (this: Server, socket: TLSSocket) => void;

type OnConnection = (this: ServerHandle, err: number, client: BareHandle | undefined) => void;

interface ServerHandle {
  onconnection: OnConnection;
}

/**
 * An accepting socket. On plain listeners, WebSocket upgrades are read by
 * the gateway's own HeadReaders; everything else, and every request on TLS
 * listeners, by Node's HTTP parser (llhttp). Both cut a head past the
 * gateway's maxHeaderBytes (431) or not complete within handshakeTimeout (408).
 *
 * In front of the parser, on every new connection: the PROXY protocol header
 * (when configured), the listener's IP lists, the gateway's accept hook. For
 * that the server's own 'connection' listeners (HTTP, or TLS then HTTP) are
 * taken off and called by hand once the connection may go on.
 *
 * Plain listeners without PROXY protocol take their connections as bare
 * handles (BareConn, src/relay/bare-conn.ts) rather than net.Sockets: an
 * upgrade then reaches the relay with no socket built for it, which saves
 * about 30% of a handshake's instructions in either relay mode. A plain HTTP
 * request gets a socket on its handle when the head reader hands it to
 * Node's HTTP server.
 *
 * With `tls`, the server speaks TLS, picks certificates by SNI, and swaps
 * them without dropping connections: on reloadCertificates() (a config
 * reload, SIGHUP) and when the files change. ALPN offers HTTP/1.1 and, with
 * `http2`, HTTP/2: a connection that chose h2 leaves Node's HTTP/1.1 server
 * for the listener's Http2Front (src/http2/), where WebSockets ride
 * extended CONNECT streams (RFC 8441); the HTTP/1.1 path does not change.
 *
 * A config reload (reload()) changes, for the connections accepted from then
 * on, everything but the address and whether it speaks TLS: the handshake
 * limits (both head parsers, the TLS handshake), the IP lists, PROXY
 * protocol on or off, the TLS settings, HTTP/2 on or off. The listening
 * socket stays bound.
 */
export class Listener {
  #config: ListenerConfig;
  readonly server: Server;
  readonly #handlers: ListenerHandlers;
  readonly #dispatch: readonly ConnectionListener[];
  readonly #certs: CertificateStore | undefined;
  /** Plain listeners only: on TLS, Node's server reads the decrypted head. */
  readonly #heads: HeadReaders | undefined;
  readonly #refusals = new LogThrottle(10);
  #filter: IpFilter | undefined;
  #watcher: CertificateWatcher | undefined;
  /** TLS listeners that offer (or once offered) HTTP/2: where h2 connections go. */
  #h2: Http2Front | undefined;
  /** Plain listeners: the native module accepts their connections (src/relay/core-handle.ts). */
  #acceptor: CoreAcceptor | undefined;

  constructor(config: ListenerConfig, limits: Limits, handlers: ListenerHandlers) {
    this.#config = config;
    this.#handlers = handlers;
    this.#filter = IpFilter.from(config.ipAllow, config.ipDeny);
    const secure = config.tls !== undefined;
    const options = {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.handshakeTimeout,
      // The request timeout would also hit long HTTP passthrough bodies; the
      // headers timeout is the slowloris guard, and nothing applies after a 101.
      requestTimeout: 0,
      connectionsCheckingInterval: sweepEvery(limits.handshakeTimeout),
      noDelay: true,
      keepAliveTimeout: 5_000,
    };
    if (config.tls === undefined) {
      this.server = createServer(options);
    } else {
      const certs = new CertificateStore(config.tls);
      this.#certs = certs;
      // Certificates are loaded in listen(), where a failure can be reported.
      this.server = createHttpsServer({
        ...options,
        minVersion: config.tls.minVersion,
        ALPNProtocols: config.http2 ? ALPN_H2 : ALPN_HTTP1,
        // The TLS handshake is part of the handshake budget: a client that stalls it is a slowloris too.
        handshakeTimeout: limits.handshakeTimeout,
        SNICallback: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => cb(null, certs.contextFor(servername)),
      }) as unknown as Server;
      this.server.on('tlsClientError', this.#onTlsError);
      if (config.http2) this.#h2 = new Http2Front(handlers, limits);
      // After the TLS handshake: h2 connections to the Http2Front, the others to Node's HTTP/1.1 server as before.
      const http1 = this.server.listeners('secureConnection') as SecureListener[];
      this.server.removeAllListeners('secureConnection');
      this.server.on('secureConnection', (socket: TLSSocket) => {
        if (socket.alpnProtocol === 'h2' && this.#h2 !== undefined) this.#h2.take(socket);
        else for (const listener of http1) listener.call(this.server, socket);
      });
    }
    if (!secure) {
      this.#heads = new HeadReaders(limits.maxHeaderBytes, limits.handshakeTimeout, {
        upgrade: (req, socket, rest) => handlers.upgrade(req, socket, rest, false),
        other: (socket) => this.#toHttpServer(socket),
        clientError: handlers.clientError,
      });
    }
    this.#dispatch = this.server.listeners('connection') as ConnectionListener[];
    this.server.removeAllListeners('connection');
    this.server.on('connection', this.#onConnection);
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => handlers.upgrade(req, socket, head, secure));
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => handlers.request(req, res, secure));
    this.server.on('clientError', handlers.clientError);
  }

  get config(): ListenerConfig {
    return this.#config;
  }

  /** TLS listeners: the certificates in service (metrics read their expiry). */
  certificates(): Array<{ readonly name: string; readonly cert: Buffer }> {
    return this.#certs?.inService() ?? [];
  }

  listen(): Promise<AddressInfo> {
    if (this.#certs !== undefined) {
      try {
        this.#certs.load();
      } catch (err) {
        return Promise.reject(new Error(`listeners: ${this.#config.address}: TLS certificate: ${(err as Error).message}`, { cause: err }));
      }
      this.#useCertificates();
    }
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`listeners: cannot listen on ${this.config.address}: ${err.message}`, { cause: err }));
      this.server.once('error', onError);
      this.server.listen({ host: this.config.host, port: this.config.port }, () => {
        this.server.off('error', onError);
        this.server.on('error', noop);
        this.#acceptBare();
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * Takes on a reloaded config (same address, same TLS-or-not) for new
   * connections: the handshake limits, then what reloadCertificates() takes.
   * Open connections are untouched. True when new certificates are in service.
   */
  reload(config: ListenerConfig, limits: Limits): boolean {
    this.#applyLimits(limits);
    this.#applyHttp2(config, limits);
    return this.reloadCertificates(config);
  }

  /**
   * HTTP/2 on or off for new connections: the TLS server reads its ALPN
   * list as each connection arrives. Turned off, the Http2Front stays for
   * the h2 connections still open.
   */
  #applyHttp2(config: ListenerConfig, limits: Limits): void {
    if (config.tls === undefined) return;
    if (config.http2) this.#h2 ??= new Http2Front(this.#handlers, limits);
    (this.server as unknown as { ALPNProtocols: Buffer }).ALPNProtocols = alpnWire(config.http2 ? ALPN_H2 : ALPN_HTTP1);
  }

  /**
   * Both parsers' limits, and the TLS handshake's. Node's server reads
   * maxHeaderSize as a connection arrives and headersTimeout at each check,
   * as the head readers do; the checks' period and the TLS handshake
   * timeout are fixed at construction, and are reset here by hand.
   */
  #applyLimits(limits: Limits): void {
    const server = this.server as Server & { maxHeaderSize?: number; connectionsCheckingInterval: number };
    server.maxHeaderSize = limits.maxHeaderBytes;
    server.headersTimeout = limits.handshakeTimeout;
    const every = sweepEvery(limits.handshakeTimeout);
    if (server.connectionsCheckingInterval !== every) {
      server.connectionsCheckingInterval = every;
      if (server.listening) restartConnectionChecks(server);
    }
    this.#heads?.setLimits(limits.maxHeaderBytes, limits.handshakeTimeout);
    this.#h2?.setLimits(limits);
    if (this.#certs !== undefined) setTlsHandshakeTimeout(server, limits.handshakeTimeout);
  }

  /**
   * Takes on a reloaded config's listener settings: IP lists, PROXY
   * protocol (read per connection), and the TLS settings (minVersion) and
   * certificates, re-read from disk (new paths too). A certificate that
   * cannot be read or parsed leaves the old ones in service and is logged.
   * Open connections are untouched. True when new certificates are in service.
   */
  reloadCertificates(config: ListenerConfig = this.#config): boolean {
    this.#config = config;
    this.#filter = IpFilter.from(config.ipAllow, config.ipDeny);
    const certs = this.#certs;
    if (certs === undefined || config.tls === undefined) return false;
    let changed: boolean;
    try {
      changed = certs.load(config.tls);
    } catch (err) {
      this.#handlers.log?.error({ listener: config.address, err: (err as Error).message }, 'TLS certificates not reloaded; the previous ones stay in service');
      return false;
    }
    if (changed) {
      this.#useCertificates();
      this.#handlers.log?.info({ listener: config.address, files: certs.files() }, 'TLS certificates reloaded');
    }
    return changed;
  }

  #useCertificates(): void {
    const certs = this.#certs!;
    (this.server as unknown as { setSecureContext(options: object): void }).setSecureContext(certs.primary!);
    // The files may have moved (a reload with new paths): watch where they are now.
    this.#watcher?.close();
    this.#watcher = new CertificateWatcher(
      certs.files(),
      () => this.reloadCertificates(),
      (err) => this.#handlers.log?.warn({ listener: this.#config.address, err: err.message }, 'cannot watch the TLS certificate files'),
    );
  }

  /**
   * Plain listeners: new connections come as bare handles, unless PROXY
   * protocol is on (then Node's own accept). With the native module, they are
   * accepted in it two turns of the loop after the listen (by then libuv has
   * added the listening socket to its set, and the module takes it out).
   */
  #acceptBare(): void {
    const handle = (this.server as unknown as { _handle: (ServerHandle & { fd?: number }) | null })._handle;
    if (!BARE_TCP || this.#heads === undefined || handle === null || typeof handle.onconnection !== 'function') return;
    const nodeAccept = handle.onconnection;
    // eslint-disable-next-line no-restricted-syntax -- once per listener, and it lives as long as the listener
    handle.onconnection = (err: number, client: BareHandle | undefined): void => {
      this.#acceptor?.quiet();
      if (err !== 0 || client === undefined || this.#config.proxyProtocol) {
        nodeAccept.call(handle, err, client);
        return;
      }
      client.setNoDelay(true); // the server's noDelay option
      // As http.Server's sockets: half-open allowed, the relay decides when to end.
      this.#admit(new BareConn(client, true), undefined, false);
    };
    // A cluster worker under round-robin scheduling has no descriptor: the primary accepts. A PROXY
    // protocol listener reads the header on Node's socket: its connections stay with Node's accept.
    const fd = handle.fd;
    if (fd === undefined || fd < 0 || this.#config.proxyProtocol) return;
    // Two turns: the listen may have come in this turn's poll phase, and libuv adds its watcher at the next one.
    setImmediate(() =>
      setImmediate(() => {
        if (this.server.listening && this.#acceptor === undefined) {
          this.#acceptor = CoreAcceptor.start(fd, (client: CoreHandle) => {
            if (!this.#config.proxyProtocol) this.#admit(new BareConn(client, true), undefined, false);
            else {
              // PROXY protocol, turned on by a reload: Node's accept path reads the header.
              const tcp = client.toTcp();
              if (tcp !== undefined) nodeAccept.call(handle, 0, tcp);
            }
          });
        }
      }),
    );
  }

  #onConnection = (socket: Socket): void => {
    if (!this.#config.proxyProtocol) {
      this.#admit(socket, undefined, false);
      return;
    }
    socket.on('error', destroySocket);
    new ProxyHeaderReader(socket, this.server.headersTimeout, (err: string | undefined, source: Peer | undefined, rest: Buffer | undefined) => {
      socket.off('error', destroySocket);
      if (err !== undefined) {
        this.#refuse(socket, 'PROXY_PROTOCOL_INVALID', 'PROXY protocol header invalid; connection closed', err);
        return;
      }
      if (source !== undefined) setPeer(socket, source);
      this.#admit(socket, rest, true);
    });
  };

  #admit(socket: RelaySocket, rest: Buffer | undefined, paused: boolean): void {
    if (socket.destroyed) return;
    if (this.#filter !== undefined && !this.#filter.allows(peerAddress(socket))) {
      this.#refuse(socket, 'IP_FORBIDDEN', 'connection refused by the listener IP lists', undefined);
      return;
    }
    if (this.#handlers.accept !== undefined && !this.#handlers.accept(socket)) {
      socket.destroy();
      return;
    }
    if (rest !== undefined) (socket as Socket).unshift(rest);
    if (this.#heads !== undefined) {
      this.#heads.read(socket);
      if (paused) socket.resume();
      return;
    }
    // TLS listeners: their connections are always sockets.
    for (const listener of this.#dispatch) listener.call(this.server, socket as Socket);
  }

  /** Node's HTTP server takes over; it reads what was put back first, once the flow resumes. */
  #toHttpServer(socket: Socket): void {
    for (const listener of this.#dispatch) listener.call(this.server, socket);
    socket.resume();
  }

  #refuse(socket: RelaySocket, code: ErrorCode, msg: string, reason: string | undefined): void {
    socket.destroy();
    this.#handlers.refused?.(code);
    const log = this.#handlers.log;
    if (log === undefined) return;
    const dropped = this.#refusals.take(Date.now());
    if (dropped >= 0) log.warn({ listener: this.#config.address, client: peerAddress(socket), code, reason, suppressed: dropped || undefined }, msg);
  }

  #onTlsError = (err: Error, socket: TLSSocket): void => {
    this.#handlers.log?.debug({ listener: this.#config.address, client: peerAddress(socket), err: err.message }, 'TLS handshake failed');
    socket.destroy();
  };

  /** Stops accepting (HTTP/2 connections get GOAWAY); resolves once every connection of this listener is gone. */
  close(): Promise<void> {
    this.#acceptor?.stop();
    this.#acceptor = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#heads?.close();
    this.#h2?.goAway();
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }

  /** Cuts every connection left: HTTP/1.1 ones (keep-alive, half-sent requests) and HTTP/2 ones. */
  closeAllConnections(): void {
    this.server.closeAllConnections();
    this.#h2?.destroy();
  }
}

const ALPN_H2 = ['h2', 'http/1.1'];
const ALPN_HTTP1 = ['http/1.1'];

/** An ALPN protocol list as the TLS server keeps it: each name after its length byte (RFC 7301 §3.1). */
function alpnWire(protocols: readonly string[]): Buffer {
  return Buffer.concat(protocols.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])));
}

function noop(): void {}

/**
 * Node's HTTP server checks its connections' timeouts on an interval set up
 * when it starts listening, from connectionsCheckingInterval; that setup
 * (its 'listening' listener) clears the old interval and starts one at the
 * current period. Without it (a Node that moved it) the checks keep their
 * old period, at most a second.
 */
function restartConnectionChecks(server: Server): void {
  const setup = server.listeners('listening').find((f) => f.name === 'setupConnectionsTracking');
  setup?.call(server);
}

/**
 * The TLS server takes its handshake timeout as a constructor option and
 * passes it to each new TLSSocket from a symbol-keyed field, read per
 * connection: setting that field is the only way to change it in place.
 */
function setTlsHandshakeTimeout(server: Server, ms: number): void {
  const key = Object.getOwnPropertySymbols(server).find((s) => s.description === 'handshake-timeout');
  if (key !== undefined) (server as unknown as Record<symbol, unknown>)[key] = ms;
}

function destroySocket(this: Socket): void {
  this.destroy();
}
