// The declarations in include/CLibFuzzer.h are the target's interface; this file holds the one definition
// the link needs.
#include "CLibFuzzer.h"

// -sanitize=fuzzer links libFuzzer's runtime whole, its own `main` included, and that `main` refers to
// LLVMFuzzerTestOneInput. The harnesses never reach it (SwiftPM points `main` at each harness's entry point,
// which runs LLVMFuzzerRunDriver with its own callback), so this definition only satisfies the linker.
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  (void)data;
  (void)size;
  return 0;
}
