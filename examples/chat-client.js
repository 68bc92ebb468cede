// A terminal client for the example chat: every line you type is sent to the room, every event
// the backend sends is printed.
//
//   node examples/chat-client.js [URL] [USER]
//
// URL defaults to ws://127.0.0.1:8080/chat/node/lobby, USER to $USER. The token comes from
// token.js ($JWT_SECRET or the demo secret). Like examples/browser/wsgate-reconnect.js, it
// reconnects by itself: soon, after a random delay, when the backend or the gateway goes away or
// drains (1001, 1012); with a growing delay after anything else.
import { createInterface } from 'node:readline';
import { WebSocket } from 'ws';
import { mintToken } from './token.js';

const url = process.argv[2] ?? 'ws://127.0.0.1:8080/chat/node/lobby';
const user = process.argv[3] ?? process.env.USER ?? 'guest';
let ws;
let failures = 0;
let quitting = false;

async function connect() {
  ws = new WebSocket(url, { headers: { authorization: `Bearer ${await mintToken(user)}` } });
  ws.on('open', () => (failures = 0));
  ws.on('message', (data) => console.log(String(data)));
  ws.on('unexpected-response', (_req, res) => {
    // 401/403: a token problem that retrying will not fix.
    console.error(`wsgate answered ${res.statusCode} ${res.statusMessage}`);
    process.exit(1);
  });
  ws.on('error', (err) => console.error(`error: ${err.message}`));
  ws.on('close', (code, reason) => {
    if (quitting) return;
    const delay = code === 1001 || code === 1012 ? 250 + Math.random() * 2000 : Math.min(30_000, 1000 * 2 ** failures++) * (0.5 + Math.random());
    console.error(`closed ${code} ${reason}; reconnecting in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(() => void connect(), delay);
  });
}

await connect();
createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(line);
    else console.error('(not connected: line dropped)');
  })
  .on('close', () => {
    quitting = true;
    ws.close(1000, 'bye');
  });
