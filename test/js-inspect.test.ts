// Inspect-mode tests again on the JavaScript relay (src/relay/inspect.ts),
// which runs the inspect sessions the native core cannot take (TLS, streams,
// a core that did not build) and every session with
// WSGATE_INSPECT_CORE=js: it must behave the same. The frame fuzz covers
// every rule through a gateway; the limits and UTF-8 tests the reads that
// cut a frame. (test/inspect-relay.test.ts drives this relay directly.)
process.env.WSGATE_INSPECT_CORE = 'js';
await import('./frame-fuzz.test.js');
await import('./inspect-limits.test.js');
await import('./inspect-utf8.test.js');
