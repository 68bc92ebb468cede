#!/usr/bin/env bash
# npm run fuzz [-- SECONDS]: coverage-guided, differential fuzzing of the
# request-head parser (src/handshake/request-head.ts against llhttp) with
# Jazzer.js on libFuzzer, for SECONDS (default 180). See README.md.
#
# Jazzer.js and esbuild are installed here, apart from the project's own
# dependencies (npm ci at the root never fetches them). Jazzer.js's native
# addon is built on the first run against Debian's stock libFuzzer
# (libclang-rt-dev), with stock-libfuzzer/ standing in for its fork's
# additions. Where that cannot be built, the same property runs under
# fast-check for the same time instead (bench/fuzz/long-run.ts).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-180}"
work="$root/.tmp/fuzz"
addon="$here/node_modules/@jazzer.js/fuzzer/build/Release/jazzerjs.node"

fast_check() {
  echo "fuzz: $1; running the fast-check property for ${seconds}s instead" >&2
  cd "$root"
  exec node --import tsx bench/fuzz/long-run.ts "$seconds"
}

libfuzzer() {
  ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer_no_main-x86_64.a 2>/dev/null | sort -V | tail -n 1
}

build_addon() {
  local lib src include napi
  lib="$(libfuzzer)"
  if [ -z "$lib" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "fuzz: installing libFuzzer (Debian's libclang-rt-dev)" >&2
    apt-get install -y libclang-rt-dev >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y libclang-rt-dev >/dev/null 2>&1; } || true
    lib="$(libfuzzer)"
  fi
  [ -n "$lib" ] || return 1
  command -v g++ >/dev/null || return 1
  include="$(dirname "$(dirname "$(command -v node)")")/include/node"
  [ -f "$include/node_api.h" ] || include=/usr/include/node
  [ -f "$include/node_api.h" ] || return 1
  napi="$here/node_modules/node-addon-api"
  src="$work/addon-src"
  rm -rf "$src" && mkdir -p "$src" "$(dirname "$addon")"
  cp -r "$here/node_modules/@jazzer.js/fuzzer/." "$src/"
  # Enter libFuzzer through stock-libfuzzer.cpp, which stops the loop on a finding as the fork does.
  sed -i 's/^  fuzzer::FuzzerDriver(&argc, &argv, fuzzCallback);/  StockFuzzerDriver(\&argc, \&argv, fuzzCallback);/; s/^void StartLibFuzzer(/int StockFuzzerDriver(int *argc, char ***argv, fuzzer::UserCallback callback);\nvoid StartLibFuzzer(/' "$src/utils.cpp"
  grep -q StockFuzzerDriver "$src/utils.cpp" || return 1
  echo "fuzz: building Jazzer.js's addon against $lib" >&2
  g++ -O2 -shared -fPIC -std=c++17 -w -DNAPI_VERSION=4 -DNAPI_CPP_EXCEPTIONS \
    -I"$include" -I"$napi" -I"$here/stock-libfuzzer" -I"$src" \
    "$src"/*.cpp "$src"/shared/*.cpp "$here/stock-libfuzzer/stock-libfuzzer.cpp" \
    -Wl,--whole-archive "$lib" -Wl,--no-whole-archive -o "$addon"
}

cd "$here"
if [ ! -x node_modules/.bin/jazzer ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # Scripts off: Jazzer.js's own install step downloads a prebuilt addon from GitHub.
  npm ci --ignore-scripts --no-audit --no-fund >&2 || fast_check "npm ci in bench/fuzz failed"
fi
[ -f "$addon" ] || build_addon || fast_check "cannot build Jazzer.js's addon (it needs g++, Node's headers and libFuzzer: apt-get install libclang-rt-dev)"

mkdir -p "$work/corpus/request-head"
node_modules/.bin/esbuild request-head.fuzz.ts --bundle --platform=node --format=cjs --log-level=warning --outfile="$work/request-head.fuzz.cjs"
cd "$work"
# New inputs go to the first corpus directory (kept under .tmp/ between runs); the seeds are read only.
exec "$here/node_modules/.bin/jazzer" "$work/request-head.fuzz.cjs" "$work/corpus/request-head" "$here/seeds/request-head" --sync -- \
  -max_total_time="$seconds" -use_value_profile=1 -dict="$here/request-head.dict" -max_len=8192 -artifact_prefix="$work/" -print_final_stats=1
