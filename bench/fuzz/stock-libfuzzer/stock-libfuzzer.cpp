// Jazzer.js builds its addon against its own fork of libFuzzer, downloaded
// from GitHub at build time; its prebuilt addons need glibc 2.38. This file
// lets the addon link against the stock libFuzzer of Debian's
// libclang-rt-dev instead, by supplying the few things the fork adds.
#include <cstdint>
#include <cstdlib>
#include <fuzzer/FuzzerDefs.h>

namespace libfuzzer {
extern void (*PrintCrashingInput)();
}

extern "C" {
void __sanitizer_cov_trace_const_cmp8(uint64_t a, uint64_t b);
void __sanitizer_cov_trace_pc_indir(uintptr_t callee);
void __jazzer_set_death_callback(void (*callback)());

// The fork takes the id of the JavaScript comparison as the PC; stock
// libFuzzer reads its caller's. Coverage (the 8-bit counters) is exact
// either way; only comparison feedback shares one PC here.
void __sanitizer_cov_trace_const_cmp8_with_pc(uintptr_t, uint64_t a, uint64_t b) {
  __sanitizer_cov_trace_const_cmp8(a, b);
}
void __sanitizer_cov_trace_pc_indir_with_pc(void *, uintptr_t callee) { __sanitizer_cov_trace_pc_indir(callee); }

// The fork hands its death callback (save the input, print the stats) to
// __jazzer_set_death_callback; stock libFuzzer to the sanitizer's hook.
void __sanitizer_set_death_callback(void (*callback)()) { __jazzer_set_death_callback(callback); }
}

// The fork ends the fuzzing loop when the callback returns -2 (a finding,
// already reported and saved by the JavaScript side); stock libFuzzer would
// go on, so the process ends here with the fork's exit code for findings.
static fuzzer::UserCallback gCallback;

static int StopOnFinding(const uint8_t *data, size_t size) {
  int result = gCallback(data, size);
  if (result == -2) std::_Exit(77);
  return result;
}

int StockFuzzerDriver(int *argc, char ***argv, fuzzer::UserCallback callback) {
  gCallback = callback;
  return fuzzer::FuzzerDriver(argc, argv, StopOnFinding);
}
