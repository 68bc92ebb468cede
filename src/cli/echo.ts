import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { EchoSession } from '../bench/echo-session.js';
import type { EchoSessionOptions } from '../bench/echo-session.js';
import { answerUpgrade } from '../bench/ws-handshake.js';

export interface EchoServer {
  readonly port: number;
  close(): Promise<void>;
}

const SESSION: EchoSessionOptions = Object.freeze({
  maxPayload: 256 * 1024 * 1024,
  // Past this much unsent echo data, stop reading the client until it drains:
  // a client that never reads must not grow the server without bound.
  highWater: 16 * 1024 * 1024,
  closeTimeoutMs: 5000,
});

const USAGE = `usage: wsgate echo --port P [--host H]

  A small, fast WebSocket echo backend: every message comes back as received
  (same bytes, same text/binary type). Plain HTTP GET or HEAD answers 200 "ok".
  --port P   port to listen on (0 = any free port; the chosen one is printed)
  --host H   address to listen on (default 127.0.0.1)
`;

// Echo clients come and go; a reset is not the server's problem.
function onSocketError(): void {}

function onRequest(req: IncomingMessage, res: ServerResponse): void {
  if (req.method === 'GET' || req.method === 'HEAD') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
    res.end(req.method === 'GET' ? 'ok' : undefined);
    return;
  }
  res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain', 'content-length': '18' });
  res.end('method not allowed');
}

function onRawConnection(socket: Socket): void {
  socket.on('error', onSocketError);
}

function onClientError(_err: Error, socket: Socket): void {
  socket.destroy();
}

/** Starts an echo server (port 0 = any free port). */
export function startEchoServer(opts: { host?: string; port: number }): Promise<EchoServer> {
  const server = createServer(onRequest);
  const sessions = new Set<EchoSession>();
  server.on('connection', onRawConnection);
  server.on('clientError', onClientError);
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const verdict = answerUpgrade(req);
    if (verdict.status !== 101) {
      socket.end(verdict.response, 'latin1');
      return;
    }
    socket.write(verdict.response, 'latin1');
    new EchoSession(socket, head, SESSION, sessions);
  });

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      for (const session of sessions) session.destroy();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };

  return new Promise((resolve, reject) => {
    const onListenError = (err: Error): void => reject(err);
    server.once('error', onListenError);
    server.listen({ host: opts.host ?? '127.0.0.1', port: opts.port, backlog: 4096 }, () => {
      server.removeListener('error', onListenError);
      server.on('error', onSocketError);
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : opts.port;
      resolve({ port, close });
    });
  });
}

/** `wsgate echo --port P [--host H]`: runs until SIGINT or SIGTERM. */
export async function runEcho(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: { port: { type: 'string', short: 'p' }, host: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    process.stderr.write(`wsgate echo: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const port = Number(values.port);
  if (values.port === undefined || !/^\d+$/.test(values.port) || port > 65535) {
    process.stderr.write(`wsgate echo: --port must be a port number (0-65535)\n${USAGE}`);
    return 2;
  }
  const host = values.host ?? '127.0.0.1';
  let server: EchoServer;
  try {
    server = await startEchoServer({ host, port });
  } catch (err) {
    process.stderr.write(`wsgate echo: cannot listen on ${host}:${port}: ${(err as Error).message}\n`);
    return 1;
  }
  const shown = host.includes(':') ? `[${host}]` : host;
  process.stdout.write(`wsgate echo listening on ws://${shown}:${server.port}/\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await server.close();
  return 0;
}
