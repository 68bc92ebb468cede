// The upstream failure tests again in tunnel mode: there, plain targets with
// an IP address are dialed on bare TCP handles (src/upstream/raw-dial.ts)
// rather than through net.Socket, and every failure must map the same way.
process.env.WSGATE_TEST_RELAY_MODE = 'tunnel';
await import('./upstream-errors.test.js');
