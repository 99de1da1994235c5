// Which BLAS libtorch runs its matrix products on (see ctorch_blas.h). OpenBLAS is found by symbol at run
// time, never linked: against an MKL libtorch these calls report "no OpenBLAS" instead of failing to load.
#include "ctorch_blas.h"

#include <ATen/Version.h>

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include <string>

namespace {

template <typename F> F openblas_symbol(const char *name) {
  return reinterpret_cast<F>(dlsym(RTLD_DEFAULT, name));
}

using string_fn = char *(*)(void);

const char *openblas_string(const char *symbol) {
  auto fn = openblas_symbol<string_fn>(symbol);
  return fn ? fn() : nullptr;
}

} // namespace

extern "C" {

const char *ct_blas_build_info(void) {
  static const std::string info = [] {
    try {
      const std::string config = at::show_config();
      const std::string key = "BLAS_INFO=";
      const auto start = config.find(key);
      if (start == std::string::npos) return std::string();
      const auto end = config.find_first_of(", \n", start + key.size());
      return config.substr(start + key.size(), end == std::string::npos ? std::string::npos : end - start - key.size());
    } catch (...) {
      return std::string();
    }
  }();
  return info.c_str();
}

const char *ct_openblas_corename(void) { return openblas_string("openblas_get_corename"); }
const char *ct_openblas_config(void) { return openblas_string("openblas_get_config"); }

const char *ct_openblas_path(void) {
  static const std::string path = [] {
    void *sym = dlsym(RTLD_DEFAULT, "openblas_get_config");
    Dl_info info;
    if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return std::string();
    char resolved[PATH_MAX];
    return std::string(realpath(info.dli_fname, resolved) ? resolved : info.dli_fname);
  }();
  return path.empty() ? nullptr : path.c_str();
}

int ct_openblas_get_num_threads(void) {
  auto fn = openblas_symbol<int (*)(void)>("openblas_get_num_threads");
  return fn ? fn() : -1;
}

void ct_openblas_set_num_threads(int n) {
  auto fn = openblas_symbol<void (*)(int)>("openblas_set_num_threads");
  if (fn) fn(n);
}

} // extern "C"
