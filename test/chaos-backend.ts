// A backend for the resilience tests, run as its own process so that it can
// be SIGKILLed: `node --import tsx test/chaos-backend.ts NAME PORT`.
// Every WebSocket connection gets "hello NAME" first, then an echo of what
// it sends; GET /health answers 200. Prints "listening PORT" once bound.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

const [name = 'backend', portArg = '0'] = process.argv.slice(2);
const server = createServer((req, res) => {
  res.writeHead(req.url === '/health' ? 200 : 404, { 'content-type': 'text/plain' });
  res.end(name);
});
server.on('clientError', (_err, socket) => socket.destroy());
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('error', () => ws.terminate());
  ws.send(`hello ${name}`);
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.listen({ host: '127.0.0.1', port: Number(portArg), backlog: 4096 }, () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
