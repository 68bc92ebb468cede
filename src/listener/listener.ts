import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Limits, ListenerConfig } from '../config/types.js';

export interface ListenerHandlers {
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer, secure: boolean): void;
  request(req: IncomingMessage, res: ServerResponse, secure: boolean): void;
  clientError(err: NodeJS.ErrnoException, socket: Socket): void;
}

/**
 * An accepting socket. Node's HTTP parser (llhttp) reads the request head;
 * its header-size limit and headers timeout are the gateway's maxHeaderBytes
 * and handshakeTimeout, so a slowloris is cut by the server itself.
 */
export class Listener {
  readonly config: ListenerConfig;
  readonly server: Server;

  constructor(config: ListenerConfig, limits: Limits, handlers: ListenerHandlers) {
    this.config = config;
    const secure = config.tls !== undefined;
    this.server = createServer({
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.handshakeTimeout,
      // The request timeout would also hit long HTTP passthrough bodies; the
      // headers timeout is the slowloris guard, and nothing applies after a 101.
      requestTimeout: 0,
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(limits.handshakeTimeout / 4))),
      noDelay: true,
      keepAliveTimeout: 5_000,
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => handlers.upgrade(req, socket, head, secure));
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => handlers.request(req, res, secure));
    this.server.on('clientError', handlers.clientError);
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`listeners: cannot listen on ${this.config.address}: ${err.message}`, { cause: err }));
      this.server.once('error', onError);
      this.server.listen({ host: this.config.host, port: this.config.port }, () => {
        this.server.off('error', onError);
        this.server.on('error', noop);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting; resolves once every connection of this listener is gone. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
    });
  }
}

function noop(): void {}
