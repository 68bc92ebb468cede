// The upstream failure tests again in tunnel mode: there, as in inspect mode,
// plain targets with an IP address are dialed by the native module
// (src/upstream/core-dial.ts) for the tunnel core, and every failure must
// map the same way.
process.env.WSGATE_TEST_RELAY_MODE = 'tunnel';
await import('./upstream-errors.test.js');
