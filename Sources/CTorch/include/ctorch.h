/*
 * ctorch.h — the flat C API over ATen + autograd that Shatter's Swift code calls.
 *
 * Rules every entry point keeps:
 *  - Handles are opaque. A returned ct_tensor is owned by the caller and released with ct_free.
 *  - No C++ exception ever crosses this boundary. On failure a function returns NULL (for handles),
 *    a negative number (for statuses) or 0/NaN (for values, documented per call) and records the
 *    libtorch message, readable with ct_last_error() on the same thread until the next failing call
 *    or ct_clear_error().
 *  - Only APIs present in both libtorch 1.13 and 2.x are used, so the same file builds against either.
 */
#ifndef SHATTER_CTORCH_H
#define SHATTER_CTORCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctorch_blas.h" /* the BLAS under libtorch (blas.cpp) */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ct_tensor_s *ct_tensor;
typedef struct ct_generator_s *ct_generator;

/* ---- dtypes and devices ------------------------------------------------------------------ */
enum ct_dtype {
  CT_FLOAT32 = 0, CT_FLOAT64 = 1, CT_BFLOAT16 = 2, CT_FLOAT16 = 3,
  CT_INT64 = 4, CT_INT32 = 5, CT_BOOL = 6, CT_UINT8 = 7, CT_INT8 = 8, CT_INT16 = 9
};
/* A device is an int: -1 is the CPU, i >= 0 is cuda:i. */
#define CT_CPU (-1)

/* ---- errors and library facts --------------------------------------------------------------- */
const char *ct_last_error(void); /* NULL when the last failing call on this thread has been cleared */
void ct_clear_error(void);
const char *ct_version(void);    /* e.g. "1.13.0" */
int ct_get_num_threads(void);
void ct_set_num_threads(int n);
bool ct_cuda_is_available(void);
int ct_cuda_device_count(void);

/* ---- lifecycle and metadata ----------------------------------------------------------------- */
void ct_free(ct_tensor t);
ct_tensor ct_alias(ct_tensor t); /* a second handle to the same tensor (shares storage and autograd) */
int ct_ndim(ct_tensor t);
int ct_sizes(ct_tensor t, int64_t *out, int capacity); /* returns ndim, fills min(ndim,capacity) */
int ct_dtype_of(ct_tensor t);
int ct_device_of(ct_tensor t);
int64_t ct_numel(ct_tensor t);
bool ct_is_contiguous(ct_tensor t);

/* ---- creation ------------------------------------------------------------------------------- */
ct_tensor ct_empty(const int64_t *shape, int ndim, int dtype, int device);
ct_tensor ct_full(const int64_t *shape, int ndim, double value, int dtype, int device);
ct_tensor ct_arange(double start, double end, double step, int dtype, int device);
/* gen may be NULL (the global generator). */
ct_tensor ct_randn(const int64_t *shape, int ndim, int dtype, int device, ct_generator gen);
ct_tensor ct_rand(const int64_t *shape, int ndim, int dtype, int device, ct_generator gen);
ct_tensor ct_randint(int64_t low, int64_t high, const int64_t *shape, int ndim, int dtype, int device,
                     ct_generator gen);
ct_tensor ct_randperm(int64_t n, int device, ct_generator gen);
ct_tensor ct_bernoulli(ct_tensor probs, ct_generator gen);
ct_tensor ct_multinomial(ct_tensor probs, int64_t num_samples, bool replacement, ct_generator gen);
/* Copies nbytes from data (row-major, host memory) into a new CPU tensor. */
ct_tensor ct_from_data(const void *data, size_t nbytes, const int64_t *shape, int ndim, int dtype);
/* Copies the tensor's elements (made contiguous, moved to the CPU) into dst. */
int ct_copy_to_host(ct_tensor t, void *dst, size_t nbytes);
double ct_item_double(ct_tensor t); /* NaN on error */
int64_t ct_item_int64(ct_tensor t); /* 0 on error; check ct_last_error */

/* ---- conversion ----------------------------------------------------------------------------- */
ct_tensor ct_to(ct_tensor t, int dtype, int device);
ct_tensor ct_contiguous(ct_tensor t);
ct_tensor ct_clone(ct_tensor t);
ct_tensor ct_detach(ct_tensor t);

/* ---- elementwise ---------------------------------------------------------------------------- */
enum ct_unary_op {
  CT_NEG = 0, CT_EXP, CT_LOG, CT_SQRT, CT_RSQRT, CT_ABS, CT_TANH, CT_SIGMOID, CT_RELU,
  CT_GELU, CT_GELU_TANH, CT_SILU, CT_SOFTPLUS, CT_LOGSIGMOID, CT_LOGICAL_NOT, CT_SIN, CT_COS,
  CT_SQUARE, CT_RECIPROCAL, CT_FLOOR, CT_CEIL, CT_ROUND, CT_SIGN, CT_LOG1P, CT_EXPM1,
  CT_ISNAN, CT_ISINF, CT_ISFINITE
};
ct_tensor ct_unary(int op, ct_tensor a);

enum ct_binary_op {
  CT_ADD = 0, CT_SUB, CT_MUL, CT_DIV, CT_POW, CT_MAXIMUM, CT_MINIMUM, CT_EQ, CT_NE, CT_LT, CT_LE,
  CT_GT, CT_GE, CT_LOGICAL_AND, CT_LOGICAL_OR, CT_REMAINDER, CT_FLOOR_DIVIDE
};
ct_tensor ct_binary(int op, ct_tensor a, ct_tensor b);
ct_tensor ct_binary_scalar(int op, ct_tensor a, double s);  /* a op s */
ct_tensor ct_rbinary_scalar(int op, double s, ct_tensor a); /* s op a */

/* In place: a = a op b (b may be broadcast); a = a op s. */
int ct_binary_(int op, ct_tensor a, ct_tensor b);
int ct_binary_scalar_(int op, ct_tensor a, double s);
int ct_add_scaled_(ct_tensor a, ct_tensor b, double alpha);              /* a += alpha * b */
int ct_addcmul_(ct_tensor a, ct_tensor b, ct_tensor c, double value);    /* a += value * b * c */
int ct_addcdiv_(ct_tensor a, ct_tensor b, ct_tensor c, double value);    /* a += value * b / c */
int ct_copy_(ct_tensor dst, ct_tensor src);
int ct_fill_(ct_tensor a, double value);

ct_tensor ct_clamp(ct_tensor a, double lo, double hi, bool has_lo, bool has_hi);
ct_tensor ct_where(ct_tensor cond, ct_tensor a, ct_tensor b);
ct_tensor ct_masked_fill(ct_tensor a, ct_tensor mask, double value);

/* ---- reductions ----------------------------------------------------------------------------- */
enum ct_reduce_op { CT_SUM = 0, CT_MEAN, CT_LOGSUMEXP, CT_AMAX, CT_AMIN, CT_PROD, CT_ANY, CT_ALL };
/* ndims == 0 reduces over every dimension. */
ct_tensor ct_reduce(int op, ct_tensor a, const int64_t *dims, int ndims, bool keepdim);
ct_tensor ct_var(ct_tensor a, const int64_t *dims, int ndims, bool unbiased, bool keepdim);
ct_tensor ct_norm(ct_tensor a, double p);
/* values and indices along dim; *indices receives a new handle. */
ct_tensor ct_max_dim(ct_tensor a, int64_t dim, bool keepdim, ct_tensor *indices);
ct_tensor ct_min_dim(ct_tensor a, int64_t dim, bool keepdim, ct_tensor *indices);
ct_tensor ct_argmax(ct_tensor a, int64_t dim, bool keepdim);
ct_tensor ct_topk(ct_tensor a, int64_t k, int64_t dim, bool largest, bool sorted, ct_tensor *indices);
ct_tensor ct_sort(ct_tensor a, int64_t dim, bool descending, ct_tensor *indices);
ct_tensor ct_cumsum(ct_tensor a, int64_t dim);
ct_tensor ct_softmax(ct_tensor a, int64_t dim);
ct_tensor ct_log_softmax(ct_tensor a, int64_t dim);

/* ---- shape and indexing --------------------------------------------------------------------- */
ct_tensor ct_reshape(ct_tensor a, const int64_t *shape, int ndim);
ct_tensor ct_view(ct_tensor a, const int64_t *shape, int ndim);
ct_tensor ct_permute(ct_tensor a, const int64_t *dims, int ndim);
ct_tensor ct_transpose(ct_tensor a, int64_t d0, int64_t d1);
ct_tensor ct_expand(ct_tensor a, const int64_t *shape, int ndim);
ct_tensor ct_squeeze(ct_tensor a, int64_t dim, bool all);
ct_tensor ct_unsqueeze(ct_tensor a, int64_t dim);
ct_tensor ct_narrow(ct_tensor a, int64_t dim, int64_t start, int64_t length);
ct_tensor ct_select(ct_tensor a, int64_t dim, int64_t index);
ct_tensor ct_cat(const ct_tensor *ts, int n, int64_t dim);
ct_tensor ct_stack(const ct_tensor *ts, int n, int64_t dim);
/* Splits into n pieces of the given sizes along dim; writes n new handles to out. */
int ct_split(ct_tensor a, const int64_t *sizes, int n, int64_t dim, ct_tensor *out);
ct_tensor ct_index_select(ct_tensor a, int64_t dim, ct_tensor index);
ct_tensor ct_gather(ct_tensor a, int64_t dim, ct_tensor index);
ct_tensor ct_scatter_add(ct_tensor a, int64_t dim, ct_tensor index, ct_tensor src);
ct_tensor ct_tril(ct_tensor a, int64_t k);
ct_tensor ct_triu(ct_tensor a, int64_t k);

/* ---- linear algebra and neural-network primitives ------------------------------------------- */
ct_tensor ct_matmul(ct_tensor a, ct_tensor b);
ct_tensor ct_bmm(ct_tensor a, ct_tensor b);
ct_tensor ct_linear(ct_tensor x, ct_tensor w, ct_tensor b /* nullable */);
/* x·w + b with w stored [in, out] (Hugging Face's Conv1D layout): one matrix product over all leading dims. */
ct_tensor ct_affine(ct_tensor x, ct_tensor w, ct_tensor b /* nullable */);
/* softmax(q·kᵀ/√d + bias)·v with q, k, v packed along the last dim of qkv [B, T, 3·heads·d] and the heads
 * merged in the result [B, T, heads·d]; one autograd node. bias: additive [B or 1, 1 or heads, T, T], or
 * NULL for a causal mask. */
ct_tensor ct_packed_self_attention(ct_tensor qkv, int64_t heads, ct_tensor bias /* nullable */);
ct_tensor ct_embedding(ct_tensor weight, ct_tensor indices);
ct_tensor ct_layer_norm(ct_tensor x, const int64_t *normalized_shape, int ndim, ct_tensor w, ct_tensor b,
                        double eps);
/* reduction: 0 none, 1 mean, 2 sum. logits [N, C], targets [N] (int64). */
ct_tensor ct_cross_entropy(ct_tensor logits, ct_tensor targets, int64_t ignore_index, int reduction,
                           double label_smoothing);

/* ---- autograd ------------------------------------------------------------------------------- */
int ct_set_requires_grad(ct_tensor t, bool requires);
bool ct_requires_grad(ct_tensor t);
int ct_backward(ct_tensor t, ct_tensor grad /* nullable: ones for a scalar */, bool retain_graph);
/* NULL (and no error) when the tensor has no gradient yet. */
ct_tensor ct_grad(ct_tensor t);
int ct_zero_grad(ct_tensor t, bool set_to_none);
/* Installs g as t's gradient buffer (later backward passes accumulate into it in place). */
int ct_set_grad(ct_tensor t, ct_tensor g);
/* Makes t use src's storage (shape, strides, offset), keeping t's identity and autograd metadata. */
int ct_set_data(ct_tensor t, ct_tensor src);
bool ct_set_grad_enabled(bool enabled); /* returns the previous mode (thread-local) */
bool ct_is_grad_enabled(void);
/* Mixed precision on this thread: autocast for `device`'s kind (CPU: bfloat16 only; CUDA: bfloat16 or
   float16). Enter returns the previous state for exit to restore; the outermost exit clears the cast cache. */
int ct_autocast_enter(int device, int dtype, bool *prev_enabled, int *prev_dtype);
int ct_autocast_exit(int device, bool prev_enabled, int prev_dtype);
bool ct_autocast_is_enabled(int device);
/* Whether oneDNN's sgemm is loaded (libtorch's dependency); float32 linear layers use it when the intra-op pool
   has more than one thread. */
bool ct_onednn_sgemm_available(void);

/* ---- random generators ---------------------------------------------------------------------- */
ct_generator ct_generator_new(uint64_t seed, int device);
void ct_generator_free(ct_generator g);
int ct_generator_set_seed(ct_generator g, uint64_t seed);
ct_tensor ct_generator_get_state(ct_generator g);           /* a uint8 tensor */
int ct_generator_set_state(ct_generator g, ct_tensor state);
void ct_manual_seed(uint64_t seed);

/* ---- decoding kernels (one new position per row, no autograd) --------------------------------------- */
/* One decoding step of attention over a key/value cache. q [B, 1, heads·d], k and v [B, 1, Hkv·d] (last
 * dimension contiguous; row strides free, so they may be slices of one packed projection). With cos and sin
 * ([B, 1, 1, d], both or neither) q and k get the rotary embedding (rotate-half). k and v are written into
 * key_cache / value_cache ([B, Hkv, C, d], contiguous) at position `past`; then softmax(q·kᵀ/√d + bias)·v over
 * positions 0...past, query head h reading key/value head h / (heads/Hkv). bias: additive [B or 1, 1, 1,
 * past + 1], or NULL. Returns [B, 1, heads·d]. float32 on the CPU; fails while gradients are enabled. */
ct_tensor ct_decode_attention(ct_tensor q, ct_tensor k, ct_tensor v, ct_tensor cos /* nullable */,
                              ct_tensor sin /* nullable */, ct_tensor key_cache, ct_tensor value_cache, int64_t past,
                              int64_t heads, ct_tensor bias /* nullable */);
/* x·wᵀ + b with w [out, in], or x·w + b with w [in, out] when w_in_out (Conv1D's layout). A single row (every
 * leading dimension of x is 1) is a matrix-vector product, which streams the weight once where a one-row matrix
 * product packs it first; without autograd in float32 it is BLAS's sgemv and nothing else. More rows: as
 * ct_linear / ct_affine. */
ct_tensor ct_linear_row(ct_tensor x, ct_tensor w, ct_tensor b /* nullable */, bool w_in_out);
/* x / sqrt(mean(x², last dim) + eps) · weight, computed in float32 at least (as Llama's RMSNorm). Without
 * autograd and in float32 on the CPU it is one pass after ATen's mean (the same numbers). */
ct_tensor ct_rms_norm(ct_tensor x, ct_tensor weight, double eps);

#ifdef __cplusplus
}
#endif
#endif

#include "ctorch_distributed.h"
