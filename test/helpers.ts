// Shared fixtures for the integration tests: real backends, a real gateway,
// raw sockets. Everything binds 127.0.0.1 on ephemeral ports (freePort: just below them).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { after, before } from 'node:test';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Server as HttpsServer } from 'node:https';
import { WebSocket, WebSocketServer, type ServerOptions } from 'ws';
import { parseConfig } from '../src/config/load.js';
import { createGateway, type Gateway } from '../src/gateway.js';

export interface Backend {
  readonly port: number;
  readonly url: string;
  readonly wss: WebSocketServer;
  readonly server: Server;
  /** Every upgrade request the backend accepted, in order. */
  readonly requests: IncomingMessage[];
  /** The plain HTTP requests it answered ("http ok"). */
  readonly plain: IncomingMessage[];
  close(): Promise<void>;
}

/** Listens on 127.0.0.1, on a free port; resolves to the port. */
export async function listenLocal(server: NetServer, host = '127.0.0.1'): Promise<number> {
  server.listen(0, host);
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

// Below the kernel's ephemeral range: a port from listen(0) is in it, and between our close and the
// gateway's bind, any connection another test opens may take it as its source port (EADDRINUSE).
const EPHEMERAL_LOW = (() => {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
})();

/** A port free on 127.0.0.1 now, outside the ephemeral range, for a process the test starts (which binds it itself). */
export async function freePort(): Promise<number> {
  const low = Math.max(1024, EPHEMERAL_LOW - 10_000);
  for (;;) {
    const port = low + Math.floor(Math.random() * (EPHEMERAL_LOW - low));
    const s = createNetServer();
    const bound = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (!bound) continue;
    await new Promise<void>((r) => s.close(() => r()));
    return port;
  }
}

/** Closes an HTTP(S) server and every connection it still has (and the ws server on it, if any). */
export async function closeHttp(server: Server | HttpsServer, wss?: WebSocketServer): Promise<void> {
  if (wss !== undefined) {
    for (const c of wss.clients) c.terminate();
    wss.close();
  }
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

/** A ws echo backend that records the requests it accepts, upgrades and plain ones. */
export async function startBackend(options: Omit<ServerOptions, 'server' | 'port'> = {}): Promise<Backend> {
  const plain: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    plain.push(req);
    res.end('http ok\n');
  });
  const wss = new WebSocketServer({ server, perMessageDeflate: false, ...options });
  const requests: IncomingMessage[] = [];
  wss.on('connection', (ws, req) => {
    requests.push(req);
    ws.on('error', () => ws.terminate());
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  const port = await listenLocal(server);
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    wss,
    server,
    requests,
    plain,
    async close() {
      await closeHttp(server, wss);
    },
  };
}

export interface RunningGateway {
  readonly gw: Gateway;
  readonly port: number;
  readonly url: string;
  /** Parsed JSON log lines. */
  readonly logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/**
 * A backend and a gateway in front of it, for one describe block: both
 * started before its tests and closed after them. The config is built from
 * the started backend (its url, say); `env` fills its ${VAR}s.
 */
export function withGateway<B extends { close(): Promise<unknown> }>(
  startBackendOf: () => Promise<B>,
  config: (backend: B) => string,
  env?: Record<string, string>,
): { readonly backend: B; readonly gw: RunningGateway } {
  const fx = {} as { backend: B; gw: RunningGateway };
  before(async () => {
    fx.backend = await startBackendOf();
    fx.gw = await startGateway(config(fx.backend), env);
  });
  after(async () => {
    await fx.gw.close();
    await fx.backend.close();
  });
  return fx;
}

/** Starts an embedded gateway from YAML text; `${VAR}`s come from `env`. */
export async function startGateway(yaml: string, env: Record<string, string> = {}): Promise<RunningGateway> {
  const config = parseConfig(yaml, { ...env });
  const logs: Record<string, unknown>[] = [];
  const gw = createGateway(config, {
    logDestination: {
      write(line: string) {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  });
  await gw.start();
  const port = gw.addresses[0]!.port;
  return { gw, port, url: `ws://127.0.0.1:${port}`, logs, close: () => gw.stop() };
}

/** The smallest config: one listener, one route, the given targets. */
export function simpleConfig(targets: readonly string[], extra = ''): string {
  return `
listeners: [{ address: 127.0.0.1:0 }]
routes: [{ match: { path: / }, upstream: app }]
upstreams:
  app:
    targets: [${targets.map((t) => `{ url: "${t}" }`).join(', ')}]
shutdown: { drainTimeout: 0 }
${extra}`;
}

/** Opens a ws client and waits for it to be open. */
export async function openClient(url: string, options: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, options);
  ws.on('error', () => {});
  await once(ws, 'open');
  return ws;
}

/** Sends one message and waits for the next one back. */
export async function echo(ws: WebSocket, data: string): Promise<string> {
  ws.send(data);
  const [msg] = (await once(ws, 'message')) as [Buffer];
  return msg.toString();
}

/** Writes raw bytes and collects everything until the server closes (or `until` matches). */
export async function rawExchange(port: number, data: string | Buffer, until?: RegExp, timeoutMs = 10_000): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs}ms; got ${JSON.stringify(text)}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(text);
    };
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (until?.test(text)) done();
    });
    socket.on('close', done);
    socket.write(data);
  });
}

/** A valid opening handshake, for raw-socket tests. */
export function upgradeRequest(path = '/', extraHeaders: readonly string[] = [], host = 'localhost'): string {
  return [
    `GET ${path} HTTP/1.1`,
    `Host: ${host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    ...extraHeaders,
    '',
    '',
  ].join('\r\n');
}

/** Status code of a raw HTTP answer. */
export function statusOf(answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
}

/** Polls until `check` is true or the deadline passes. */
export async function eventually(check: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A raw TCP server for scripted upstream behaviour. */
export async function rawServer(onSocket: (s: Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const { createServer: createNetServer } = await import('node:net');
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  const port = await listenLocal(server);
  return {
    port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Reads an HTTP head off a raw socket; bytes behind it stay in the (paused) socket for its next reader. */
export function readHead(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end === -1) return;
      socket.off('data', onData);
      socket.pause();
      if (end + 4 < text.length) socket.unshift(Buffer.from(text.slice(end + 4), 'latin1'));
      resolve(text.slice(0, end));
    };
    socket.on('data', onData);
  });
}

/** Completes a server-side upgrade by hand on a raw socket; resolves with the request text. */
export async function acceptUpgrade(socket: Socket, extra: Buffer = Buffer.alloc(0)): Promise<string> {
  const text = await readHead(socket);
  const key = /sec-websocket-key: (.*)\r\n/i.exec(text + '\r\n')?.[1] ?? '';
  const accept = createHash('sha1')
    .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
    .digest('base64');
  const head = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`;
  socket.write(Buffer.concat([Buffer.from(head), extra]));
  return text;
}
