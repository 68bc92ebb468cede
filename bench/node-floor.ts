// The least a Node.js WebSocket proxy can do, for the benchmark suite: Node's
// own floor under wsgate's figures. Raw net sockets; the client's first read
// is taken as its whole request head and sent to the backend untouched, the
// backend's answer comes back untouched, then bytes flow both ways with
// backpressure. No validation, routing, limits, headers or logs: never use it
// for anything but measuring.
// Env: PORT (listen on 127.0.0.1:PORT), BACKEND_PORT (the echo backend).
// Run: node --import tsx bench/node-floor.ts
import { connect, createServer, type Socket } from 'node:net';

const port = Number(process.env.PORT);
const backendPort = Number(process.env.BACKEND_PORT);
if (!Number.isInteger(port) || !Number.isInteger(backendPort)) {
  process.stderr.write('bench/node-floor.ts: set PORT and BACKEND_PORT\n');
  process.exit(2);
}

function pipe(from: Socket, to: Socket): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
  from.on('close', () => to.destroy());
}

const server = createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
  client.on('error', () => client.destroy());
  client.once('data', (head: Buffer) => {
    const upstream = connect({ host: '127.0.0.1', port: backendPort, noDelay: true });
    upstream.on('error', () => client.destroy());
    upstream.write(head);
    pipe(client, upstream);
    pipe(upstream, client);
  });
});
server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => {
  process.stdout.write(`node-floor listening on 127.0.0.1:${port} -> 127.0.0.1:${backendPort}\n`);
});

function stop(): void {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
