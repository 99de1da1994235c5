#ifndef SHATTER_CLIBFUZZER_H
#define SHATTER_CLIBFUZZER_H
#include <stddef.h>
#include <stdint.h>

// libFuzzer's driver (compiler-rt, linked by -sanitize=fuzzer): parses the libFuzzer flags in argv and calls
// `callback` with every input it generates. The harnesses call it from their own `main`, because SwiftPM
// gives each executable target an entry point of its own and libFuzzer's `main` would never run.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
