// The relay tests again on Node's public stream API: the path the relay takes
// when it cannot drive a socket's handle directly (TLS sockets, a Node.js
// without the internal binding, or WSGATE_RELAY_IO=stream). See src/relay/handle-io.ts.
process.env.WSGATE_RELAY_IO = 'stream';
await import('./handle-io.test.js');
await import('./tunnel.test.js');
await import('./inspect-relay.test.js');
