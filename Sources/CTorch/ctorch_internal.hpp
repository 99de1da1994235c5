// What the C++ files of CTorch share and Swift never sees: the handle structs and the error slot.
#pragma once

#include <ATen/ATen.h>

struct ct_tensor_s {
  at::Tensor t;
};

// Records `msg` as the calling thread's last error (ct_last_error).
void ct_internal_set_error(const char *msg);

// Runs `body`, turning any C++ exception into the error slot and `on_error`.
template <typename R, typename F> R ct_internal_guard(R on_error, F &&body) {
  try {
    return body();
  } catch (const c10::Error &e) {
    ct_internal_set_error(e.what_without_backtrace());
  } catch (const std::exception &e) {
    ct_internal_set_error(e.what());
  } catch (...) {
    ct_internal_set_error("unknown C++ exception");
  }
  return on_error;
}
