// node-http-proxy as a WebSocket reverse proxy, for the benchmark suite.
// Env: PORT (listen on 127.0.0.1:PORT), BACKEND_PORT (the echo backend).
// Run: node --import tsx bench/http-proxy.ts
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import httpProxy from 'http-proxy';

const port = Number(process.env.PORT);
const backendPort = Number(process.env.BACKEND_PORT);
if (!Number.isInteger(port) || !Number.isInteger(backendPort)) {
  process.stderr.write('bench/http-proxy.ts: set PORT and BACKEND_PORT\n');
  process.exit(2);
}

const proxy = httpProxy.createProxyServer({ target: `http://127.0.0.1:${backendPort}`, ws: true, xfwd: false });

// http-proxy reports failures of both plain requests and upgrades here; without
// a listener it throws. Answer 502 where a response is possible, else drop the socket.
proxy.on('error', (_err: Error, _req: IncomingMessage, target: ServerResponse | Socket) => {
  if ('writeHead' in target) {
    if (!target.headersSent) target.writeHead(502, { 'content-type': 'text/plain' });
    target.end('bad gateway');
  } else {
    target.destroy();
  }
});

const server = createServer((req, res) => proxy.web(req, res));
server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
  socket.on('error', () => socket.destroy());
  proxy.ws(req, socket, head);
});
server.on('clientError', (_err, socket: Socket) => socket.destroy());
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  process.stdout.write(`http-proxy listening on 127.0.0.1:${port} -> 127.0.0.1:${backendPort}\n`);
});

function stop(): void {
  proxy.close();
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
