// The soak's flooding backend: on every WebSocket it accepts, it sends binary
// messages without pause, as far as its own socket takes them (it stops while
// more than HIGH_WATER bytes wait in its buffer, so it never grows without
// bound), and echoes what it receives. Slow consumers connect to it through the
// gateway: when they stop reading, the gateway's backpressure is what stops it.
// Run as `node --import tsx bench/soak/flood-backend.ts --port P`.
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';

const MESSAGE_BYTES = 8 * 1024;
const TICK_MS = 100;
/** Messages per tick per connection while its buffer has room: 80 KiB/s each. */
const PER_TICK = 1;
const HIGH_WATER = 256 * 1024;

const { values } = parseArgs({ options: { port: { type: 'string' } } });
const port = Number(values.port ?? '0');
const payload = Buffer.alloc(MESSAGE_BYTES, 0x61);
const clients = new Set<WebSocket>();

const server = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 1024 * 1024 });
server.on('error', (err) => {
  process.stderr.write(`flood backend: ${err.message}\n`);
  process.exit(1);
});
server.on('listening', () => {
  const address = server.address();
  const p = typeof address === 'object' && address !== null ? address.port : port;
  process.stdout.write(`flood backend listening on ws://127.0.0.1:${p}/\n`);
});
server.on('connection', (ws) => {
  clients.add(ws);
  // Resets and cut close handshakes are the soak's doing, not this backend's problem.
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('close', () => clients.delete(ws));
});

const timer = setInterval(() => {
  for (const ws of clients) {
    if (ws.readyState !== ws.OPEN) continue;
    for (let i = 0; i < PER_TICK && ws.bufferedAmount < HIGH_WATER; i++) ws.send(payload, { binary: true });
  }
}, TICK_MS);

function shutdown(): void {
  clearInterval(timer);
  for (const ws of clients) ws.terminate();
  server.close(() => process.exit(0));
}
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);
