// A small chat backend for wsgate: rooms by path (/chat/<room>, or ?room=<room>), each message
// broadcast to the room's members. It runs from the repository, on the root's `ws` dependency:
//
//   node examples/node-chat/server.js --port 9101 [--host 127.0.0.1] [--id node-9101]
//
// It trusts the X-User-Id header, which wsgate sets from the JWT's `sub` claim (forwardClaims)
// after removing any the client sent; so it listens on loopback and must be reachable only through
// wsgate. Every event it sends is one JSON text message naming the backend, so tests and people see
// which backend serves a room:
//   {"type":"hello","backend":"node-9101","room":"lobby","user":"alice","members":2}
//   {"type":"join"|"leave","backend":…,"room":…,"user":…}
//   {"type":"message","backend":…,"room":…,"user":"alice","text":"hi"}
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';

const USAGE = 'usage: node examples/node-chat/server.js [--port 9101] [--host 127.0.0.1] [--id NAME]';
const ROOM = /^[\w.-]{1,64}$/;
const MAX_MESSAGE = 16 * 1024; // a larger message is closed with 1009 by ws
const MAX_BUFFERED = 1024 * 1024; // a member this far behind misses messages rather than growing our memory

let options;
try {
  options = parseArgs({
    options: { port: { type: 'string', default: '9101' }, host: { type: 'string', default: '127.0.0.1' }, id: { type: 'string' } },
  }).values;
} catch (err) {
  console.error(`${err.message}\n${USAGE}`);
  process.exit(2);
}
const port = Number(options.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be a port number, not ${JSON.stringify(options.port)}\n${USAGE}`);
  process.exit(2);
}
const id = options.id ?? `node-${port}`;
const log = (text) => console.log(`${id}: ${text}`);

/** Room name → the sockets of its members. */
const rooms = new Map();

const server = createServer((req, res) => {
  // For wsgate's healthCheck (type: http, path: /health).
  if (req.url === '/health') return void res.end('ok\n');
  res.writeHead(426, { 'content-type': 'text/plain' }).end('a WebSocket endpoint: connect to /chat/<room>\n');
});
const wss = new WebSocketServer({
  noServer: true,
  maxPayload: MAX_MESSAGE,
  perMessageDeflate: false,
  // Browsers send the JWT as a subprotocol entry beside a real one; wsgate removes the token, this picks chat.v1.
  handleProtocols: (offered) => (offered.has('chat.v1') ? 'chat.v1' : false),
});

server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => socket.destroy());
  const url = new URL(req.url, 'http://backend');
  const room = url.searchParams.get('room') ?? url.pathname.split('/').filter(Boolean).at(-1) ?? 'lobby';
  const user = req.headers['x-user-id'];
  if (typeof user !== 'string' || user === '') return refuse(socket, 401, 'no X-User-Id header: connect through wsgate, with a token');
  if (!ROOM.test(room)) return refuse(socket, 400, 'a room name is 1 to 64 letters, digits, "_", "." or "-"');
  wss.handleUpgrade(req, socket, head, (ws) => join(ws, room, user));
});

function refuse(socket, status, why) {
  socket.end(`HTTP/1.1 ${status} ${status === 401 ? 'Unauthorized' : 'Bad Request'}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${why}\n`);
}

function join(ws, room, user) {
  let members = rooms.get(room);
  if (members === undefined) rooms.set(room, (members = new Set()));
  members.add(ws);
  ws.send(JSON.stringify({ type: 'hello', backend: id, room, user, members: members.size }));
  broadcast(members, { type: 'join', backend: id, room, user }, ws);
  log(`${user} joined ${room} (${members.size} here)`);

  ws.on('message', (data, isBinary) => {
    if (ws.readyState !== ws.OPEN) return; // sent before the client saw our close
    if (isBinary) return void ws.close(1003, 'text messages only');
    broadcast(members, { type: 'message', backend: id, room, user, text: data.toString() });
  });
  // A socket error (a reset, a frame ws refuses) is followed by 'close'; the handler keeps it from being thrown.
  ws.on('error', (err) => log(`${user} in ${room}: ${err.message}`));
  ws.on('close', (code, reason) => {
    members.delete(ws);
    if (members.size === 0 && rooms.get(room) === members) rooms.delete(room);
    broadcast(members, { type: 'leave', backend: id, room, user });
    // 1001 when the client (or wsgate, for it) went away, 1006 when the connection dropped without a close frame.
    log(`${user} left ${room} (${code}${reason.length > 0 ? ` ${reason}` : ''})`);
  });
}

function broadcast(members, event, except) {
  const text = JSON.stringify(event);
  for (const member of members) {
    if (member !== except && member.readyState === member.OPEN && member.bufferedAmount < MAX_BUFFERED) member.send(text);
  }
}

// SIGTERM/SIGINT: stop accepting, say goodbye with 1001 (wsgate passes the close frame on, and the
// client reconnects, to another backend if this one is gone), cut whoever has not answered within 2 s.
function shutdown(signal) {
  log(`${signal}: closing ${wss.clients.size} connection(s) with 1001`);
  server.close();
  server.closeIdleConnections();
  for (const ws of wss.clients) ws.close(1001, 'backend shutting down');
  setTimeout(() => {
    for (const ws of wss.clients) ws.terminate();
  }, 2000).unref();
}
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);

server.on('error', (err) => {
  console.error(`${id}: ${err.message}`);
  process.exit(1);
});
server.listen(port, options.host, () => log(`listening on ${options.host}:${server.address().port}`));
