/*
 * ctorch_blas.h — which BLAS libtorch's matrix products run on, and OpenBLAS's knobs when it is OpenBLAS.
 *
 * libtorch reaches its BLAS through the dynamic linker (Debian's build: libblas.so.3, an OpenBLAS by default)
 * or links it in (PyPI's wheels: MKL). OpenBLAS's own entry points are looked up at run time with
 * dlsym(RTLD_DEFAULT, …), so every call here degrades to "unknown" (NULL, -1) instead of failing to link
 * when the BLAS is something else. None of these calls does BLAS work or raises an error.
 */
#ifndef SHATTER_CTORCH_BLAS_H
#define SHATTER_CTORCH_BLAS_H

#ifdef __cplusplus
extern "C" {
#endif

/* libtorch's build setting BLAS_INFO (e.g. "mkl", "open", or "generic" for a system libblas), or "". */
const char *ct_blas_build_info(void);
/* OpenBLAS's kernel in use (openblas_get_corename, e.g. "Cooperlake", "Prescott"); NULL when the process
 * has no OpenBLAS. The kernel is fixed when OpenBLAS loads: OPENBLAS_CORETYPE is read then, never later. */
const char *ct_openblas_corename(void);
/* openblas_get_config(), e.g. "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Cooperlake MAX_THREADS=64";
 * NULL without OpenBLAS. */
const char *ct_openblas_config(void);
/* The file OpenBLAS was loaded from (realpath); NULL without OpenBLAS. */
const char *ct_openblas_path(void);
/* OpenBLAS's own thread pool (separate from libtorch's intra-op threads); -1 without OpenBLAS. */
int ct_openblas_get_num_threads(void);
void ct_openblas_set_num_threads(int n); /* no-op without OpenBLAS */

#ifdef __cplusplus
}
#endif
#endif
