#!/bin/sh
# npm run test:asan: the native relay cores (native/relay.c, native/inspect.c, native/frame-tracker.c, native/watch.c, native/dial.c, native/conn.c, native/accept-key.c) built with
# AddressSanitizer and UndefinedBehaviorSanitizer, then the tests that drive
# it run on that build. Any ASan or UBSan report fails the run.
#
# The build goes to build/asan/, never to build/Release (what `npm test` and
# production load); src/relay/native-module.ts loads it from
# WSGATE_NATIVE_PATH. Node itself is not built with ASan, so the ASan runtime
# must come first in the process: it is preloaded. Leak detection is off:
# Node does not free everything at exit, and that is not the core's.
set -eu
cd "$(dirname "$0")/.."

CC=${CC:-gcc}
out=build/asan
mkdir -p "$out"

# Node's headers: where node-gyp found them for build/ (nodedir), else next to node itself.
node_include=""
for dir in \
  "$(node -p 'process.config.variables.node_prefix || ""')/include/node" \
  "$(dirname "$(dirname "$(node -p process.execPath)")")/include/node" \
  "${HOME:-/root}/.cache/node-gyp/$(node -p process.versions.node)/include/node" \
  /usr/include/node; do
  if [ -f "$dir/node_api.h" ]; then node_include=$dir; break; fi
done
if [ -z "$node_include" ]; then
  echo "test:asan: cannot find Node's headers (node_api.h); install them or run node-gyp once" >&2
  exit 1
fi

sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# shellcheck disable=SC2086
"$CC" -shared -fPIC -g -O1 $sanitize -Wall -Wextra -Wno-unused-parameter -Werror \
  -DNAPI_VERSION=8 -I"$node_include" native/relay.c native/inspect.c native/frame-tracker.c native/watch.c native/dial.c native/conn.c native/accept-key.c -o "$out/wsgate_relay.node"
echo "test:asan: built $out/wsgate_relay.node with $("$CC" --version | head -n 1) against $node_include"

libasan=$("$CC" -print-file-name=libasan.so)
libubsan=$("$CC" -print-file-name=libubsan.so)
if [ ! -e "$libasan" ]; then
  echo "test:asan: $CC has no libasan.so (install its AddressSanitizer runtime, e.g. libasan8)" >&2
  exit 1
fi

log=$out/sanitizer
rm -f "$log".*
export WSGATE_NATIVE_PATH="$PWD/$out/wsgate_relay.node"
# More fuzz runs than in npm test: this run is not on everyone's path.
export WSGATE_FUZZ_SCALE="${WSGATE_FUZZ_SCALE:-5}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$log"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$log"
preload="$libasan $libubsan"
# The sanitized build must be the one loaded (test/native-relay.test.ts also fails without a core).
LD_PRELOAD="$preload" node --import tsx --input-type=module -e "
  const { nativeModule } = await import('./src/relay/native-module.ts');
  const m = nativeModule();
  if (typeof m !== 'object') { console.error('test:asan: ' + m); process.exit(1); }
"
status=0
LD_PRELOAD="$preload" node --import tsx --test --test-reporter=spec --test-concurrency=1 --test-timeout=300000 \
  test/native-relay.test.ts test/tunnel.test.ts test/frame-fuzz.test.ts test/native-inspect.test.ts \
  test/inspect-validation.test.ts test/inspect-limits.test.ts test/inspect-utf8.test.ts test/inspect-lifecycle.test.ts \
  test/core-dial.test.ts test/upstream-errors.test.ts test/upstream-errors-tunnel.test.ts test/core-accept.test.ts \
  test/handshake.test.ts test/http-passthrough.test.ts test/js-inspect.test.ts "$@" || status=$?

if ls "$log".* >/dev/null 2>&1; then
  echo "test:asan: sanitizer reports:" >&2
  cat "$log".* >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "test:asan: the tests failed (exit $status)" >&2
  exit "$status"
fi
echo "test:asan: no AddressSanitizer or UndefinedBehaviorSanitizer report"
