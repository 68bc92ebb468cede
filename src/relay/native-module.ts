import { createRequire } from 'node:module';

// wsgate's native module (native/relay.c, built by `npm ci` with node-gyp):
// the tunnel-mode relay core (native-tunnel.ts) and the direct write behind
// the shared read buffer (handle-io.ts). It is optional: without it both
// fall back to JavaScript, at a higher CPU cost.
//
// WSGATE_NATIVE_PATH loads another build of it instead (an absolute path):
// `npm run test:asan` runs the tests on one built with AddressSanitizer.

let loaded: object | string | undefined;

/** The loaded module, or why it could not be loaded. */
export function nativeModule(): object | string {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)(process.env.WSGATE_NATIVE_PATH || '../../build/Release/wsgate_relay.node') as object;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      loaded =
        code === 'MODULE_NOT_FOUND'
          ? 'not built (npm ci builds it with node-gyp: it needs g++, make and python3)'
          : `cannot load it: ${(err as Error).message}`;
    }
  }
  return loaded;
}
