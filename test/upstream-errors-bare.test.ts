// The upstream failure tests again with the JavaScript inspect relay: a
// session no core takes has its plain targets dialed on bare TCP handles
// (src/upstream/raw-dial.ts), not by the native module (core-dial.ts, which
// the two other runs of this file go through), and every failure must map
// the same way.
process.env.WSGATE_INSPECT_CORE = 'js';
await import('./upstream-errors.test.js');
