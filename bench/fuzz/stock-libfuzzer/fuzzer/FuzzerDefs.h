// The two declarations Jazzer.js's addon takes from libFuzzer's FuzzerDefs.h
// (compiler-rt/lib/fuzzer), which Debian's libclang-rt-dev does not ship.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fuzzer {
typedef int (*UserCallback)(const uint8_t *Data, size_t Size);
int FuzzerDriver(int *argc, char ***argv, UserCallback Callback);
} // namespace fuzzer
