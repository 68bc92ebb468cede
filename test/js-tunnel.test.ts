// The tunnel tests again on the JavaScript tunnel (src/relay/tunnel.ts), which
// runs the sessions the native core cannot take (TLS, a core that did not
// build) and every session with WSGATE_RELAY_IO=handle.
process.env.WSGATE_RELAY_IO = 'handle';
await import('./tunnel.test.js');
await import('./native-relay.test.js');
