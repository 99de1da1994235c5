// The only C++ in Shatter: each entry point translates C arguments into ATen calls and every
// exception into an error value (see ctorch.h). No Swift logic lives here.
#include "ctorch.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include <cmath>
#include <dlfcn.h>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "ctorch_internal.hpp"

struct ct_generator_s {
  at::Generator g;
};

namespace {

// A training step allocates and frees the same tensor sizes every step. By default glibc serves blocks of
// 128 KiB and more with fresh mmaps (the threshold only creeps up as such blocks are freed) and hands the
// heap's free top back to the OS, so every step pays its page faults again (about a tenth of a small
// model's step). Keep freed memory in the heap for reuse instead: blocks below 64 MiB come from the heap
// and up to 256 MiB of free heap is kept. The peak resident size is still what the largest step needs.
#if defined(__GLIBC__)
const bool heap_reuse_configured = [] {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  return true;
}();
#endif

// A CUDA libtorch registers its CUDA kernels when libtorch_cuda.so loads. A linker that drops libraries
// nothing references by name (--as-needed) can leave it out, so load it at start-up; a CPU build has no
// such library and this does nothing.
const bool cuda_half_loaded = dlopen("libtorch_cuda.so", RTLD_NOW | RTLD_GLOBAL) != nullptr;

thread_local std::string last_error;
thread_local bool has_error = false;

void set_error(const char *msg) {
  last_error = msg;
  has_error = true;
}

ct_tensor wrap(at::Tensor t) { return new ct_tensor_s{std::move(t)}; }

at::ScalarType to_scalar_type(int dtype) {
  switch (dtype) {
  case CT_FLOAT32: return at::kFloat;
  case CT_FLOAT64: return at::kDouble;
  case CT_BFLOAT16: return at::kBFloat16;
  case CT_FLOAT16: return at::kHalf;
  case CT_INT64: return at::kLong;
  case CT_INT32: return at::kInt;
  case CT_BOOL: return at::kBool;
  case CT_UINT8: return at::kByte;
  case CT_INT8: return at::kChar;
  case CT_INT16: return at::kShort;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
}

int from_scalar_type(at::ScalarType s) {
  switch (s) {
  case at::kFloat: return CT_FLOAT32;
  case at::kDouble: return CT_FLOAT64;
  case at::kBFloat16: return CT_BFLOAT16;
  case at::kHalf: return CT_FLOAT16;
  case at::kLong: return CT_INT64;
  case at::kInt: return CT_INT32;
  case at::kBool: return CT_BOOL;
  case at::kByte: return CT_UINT8;
  case at::kChar: return CT_INT8;
  case at::kShort: return CT_INT16;
  default: throw std::invalid_argument(std::string("unsupported dtype ") + c10::toString(s));
  }
}

at::Device to_device(int device) {
  if (device < 0) return at::Device(at::kCPU);
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device));
}

at::TensorOptions options(int dtype, int device) {
  return at::TensorOptions().dtype(to_scalar_type(dtype)).device(to_device(device));
}

at::IntArrayRef dims(const int64_t *p, int n) { return at::IntArrayRef(p, static_cast<size_t>(n)); }

// Integral tensors combined with whole-number scalars stay integral.
at::Scalar scalar_for(const at::Tensor &t, double v) {
  if (at::isIntegralType(t.scalar_type(), /*includeBool=*/true) && std::floor(v) == v &&
      std::fabs(v) < 9.0e15)
    return at::Scalar(static_cast<int64_t>(v));
  return at::Scalar(v);
}

c10::optional<at::Generator> gen_of(ct_generator g) {
  if (g == nullptr) return c10::nullopt;
  return g->g;
}

// ---- fused helpers: a few ATen ops behind one autograd node each --------------------------------
// Small models spend most of a training step in per-op overhead (dispatch, autograd nodes, views); these
// compute the same functions with fewer ops and one hand-written backward each.

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// GELU with the tanh approximation, 0.5·x·(1 + tanh(z)) with z = √(2/π)(x + 0.044715x³), written as
// x·σ(2z) (the same function; ATen's CPU tanh is several times slower than its sigmoid). For float32
// and float64 on the CPU, and for bfloat16/float16 there through float32 (mixed precision: autocast hands
// it bfloat16, and at::gelu's tanh took a tenth of a bfloat16 training step); CUDA uses at::gelu.
constexpr double kGeluBeta = 0.7978845608028654; // √(2/π)
constexpr double kGeluKappa = 0.044715;

struct GeluTanh : public torch::autograd::Function<GeluTanh> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x) {
    // s = σ(x·(2β + 2βκx²)), y = x·s
    at::Tensor s = at::addcmul(at::scalar_tensor(2 * kGeluBeta, x.options()), x, x, 2 * kGeluBeta * kGeluKappa);
    s.mul_(x);
    s.sigmoid_();
    ctx->save_for_backward({x, s});
    return x * s;
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &s = saved[1];
    // dy/dx = s + x·s(1−s)·(2β + 6βκx²)
    at::Tensor d = at::addcmul(at::scalar_tensor(2 * kGeluBeta, x.options()), x, x, 6 * kGeluBeta * kGeluKappa);
    d.mul_(x);
    d.mul_(at::addcmul(s, s, s, -1));
    d.add_(s);
    d.mul_(grads[0]);
    return {d};
  }
};

at::Tensor gelu_tanh(const at::Tensor &x) {
  if (!x.device().is_cpu() || x.layout() != at::kStrided) return at::gelu(x, "tanh");
  const auto t = x.scalar_type();
  if (t == at::kFloat || t == at::kDouble) return GeluTanh::apply(x);
  if (t == at::kBFloat16 || t == at::kHalf) return GeluTanh::apply(x.to(at::kFloat)).to(t);
  return at::gelu(x, "tanh");
}

// The additive causal mask [T, S] (0 where key j <= query i + S − T, −inf after), cached per shape.
at::Tensor causal_bias(int64_t t, int64_t s, const at::TensorOptions &opts) {
  thread_local std::map<std::tuple<int64_t, int64_t, int, int, int>, at::Tensor> cache;
  auto key = std::make_tuple(t, s, static_cast<int>(opts.dtype().toScalarType()),
                             static_cast<int>(opts.device().type()), static_cast<int>(opts.device().index()));
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  at::Tensor blocked = at::ones({t, s}, opts.dtype(at::kBool)).triu(s - t + 1);
  at::Tensor bias = at::zeros({t, s}, opts).masked_fill_(blocked, -std::numeric_limits<double>::infinity());
  if (cache.size() > 64) cache.clear();
  cache.emplace(key, bias);
  return bias;
}

// oneDNN's sgemm (Debian's libtorch links libdnnl), found by symbol; nil when absent.
using onednn_sgemm_fn = int (*)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                                int64_t, float, float *, int64_t);
onednn_sgemm_fn onednn_sgemm() {
  static const onednn_sgemm_fn f = reinterpret_cast<onednn_sgemm_fn>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
  return f;
}

bool autocast_enabled(at::DeviceType d);

// Float32 products go to oneDNN when the intra-op (OpenMP) pool has the cores, the training thread plan
// (`ThreadPlan.training`): oneDNN's sgemm runs on that pool, so products and elementwise operations share one
// set of threads instead of OpenBLAS's pool and OpenMP's competing for the cores. With one intra-op thread
// (libtorch's default here, decoding, one job per core) OpenBLAS keeps them, as before. Under autocast ATen's own
// call is the one that casts to bfloat16.
bool onednn_pool_active() {
  return onednn_sgemm() != nullptr && at::get_num_threads() > 1 && !autocast_enabled(at::kCPU);
}

// C = alpha·op(A)·op(B) + beta·C on raw row-major matrices with leading dimensions lda, ldb, ldc.
void onednn_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  const int status = onednn_sgemm()(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  TORCH_CHECK(status == 0, "oneDNN sgemm failed with status ", status);
}

// The same on 2-D tensors, each row-major with unit column stride.
void onednn_gemm(bool ta, bool tb, const at::Tensor &a, const at::Tensor &b, at::Tensor &c, float beta) {
  onednn_gemm(ta, tb, c.size(0), c.size(1), ta ? a.size(0) : a.size(1), 1.0f, a.data_ptr<float>(), a.stride(0),
              b.data_ptr<float>(), b.stride(0), beta, c.data_ptr<float>(), c.stride(0));
}

// x [N, in] · w + b with w stored [in, out] (`w_out_in` false, GPT-2's Conv1D) or [out, in] (nn.Linear), forward
// and backward on oneDNN's sgemm. No bias is an empty tensor (autograd functions take no undefined inputs).
struct OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &x, const at::Tensor &w, const at::Tensor &b,
                            bool w_out_in) {
    ctx->save_for_backward({x, w});
    const bool bias = b.numel() > 0;
    ctx->saved_data["bias"] = bias;
    ctx->saved_data["w_out_in"] = w_out_in;
    const int64_t n = x.size(0), out = w.size(w_out_in ? 0 : 1);
    at::Tensor y = bias ? b.unsqueeze(0).expand({n, out}).contiguous() : at::empty({n, out}, x.options());
    onednn_gemm(false, w_out_in, x, w, y, bias ? 1.0f : 0.0f);
    return y;
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    const bool t = ctx->saved_data["w_out_in"].toBool();
    at::Tensor dy = grads[0].contiguous(), dx, dw, db;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty(x.sizes(), x.options());
      onednn_gemm(false, !t, dy, w, dx, 0); // dy · wᵀ for [in, out]; dy · w for [out, in]
    }
    if (ctx->needs_input_grad(1)) {
      dw = at::empty(w.sizes(), w.options());
      if (t)
        onednn_gemm(true, false, dy, x, dw, 0); // dyᵀ · x
      else
        onednn_gemm(true, false, x, dy, dw, 0); // xᵀ · dy
    }
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) db = dy.sum(0);
    return {dx, dw, db, at::Tensor()};
  }
};

// `flat` [N, in] · w + b on oneDNN when the pool is active and the operands are float32 CPU tensors with
// contiguous weights (several rows; one row is a gemv, see linear_row); undefined otherwise, for ATen's call.
at::Tensor onednn_linear(const at::Tensor &flat, const at::Tensor &w, const at::Tensor *b, bool w_out_in) {
  auto f32cpu = [](const at::Tensor &t) { return t.scalar_type() == at::kFloat && t.device().is_cpu() && t.layout() == at::kStrided; };
  if (!onednn_pool_active() || flat.size(0) <= 1 || !f32cpu(flat) || !f32cpu(w) || !w.is_contiguous() ||
      (b && !(f32cpu(*b) && b->is_contiguous())))
    return at::Tensor();
  return OneDnnLinear::apply(flat.contiguous(), w, b ? *b : at::empty({0}, flat.options()), w_out_in);
}

// c[i] = alpha·op(a[i])·op(b[i]) + beta·c[i] over the batch (dim 0), each matrix row-major with unit column
// stride. Under the training thread plan the batch is split over the intra-op threads, each product one
// single-threaded oneDNN sgemm (OpenBLAS has one thread then); otherwise ATen's bmm/baddbmm.
void batched_gemm(bool ta, bool tb, const at::Tensor &a, const at::Tensor &b, at::Tensor &c, float alpha, float beta) {
  auto fits = [](const at::Tensor &t) {
    return t.dim() == 3 && t.scalar_type() == at::kFloat && t.device().is_cpu() && t.stride(2) == 1;
  };
  if (!onednn_pool_active() || !fits(a) || !fits(b) || !fits(c)) {
    at::Tensor x = ta ? a.transpose(1, 2) : a, y = tb ? b.transpose(1, 2) : b;
    if (beta == 0 && alpha == 1) at::bmm_out(c, x, y);
    else c.baddbmm_(x, y, beta, alpha);
    return;
  }
  const int64_t m = c.size(1), n = c.size(2), k = ta ? a.size(1) : a.size(2);
  const float *ap = a.data_ptr<float>(), *bp = b.data_ptr<float>();
  float *cp = c.data_ptr<float>();
  at::parallel_for(0, c.size(0), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++)
      onednn_gemm(ta, tb, m, n, k, alpha, ap + i * a.stride(0), a.stride(1), bp + i * b.stride(0), b.stride(1), beta,
                  cp + i * c.stride(0), c.stride(1));
  });
}

// softmax(q·kᵀ/√d + bias)·v for q, k, v packed along the last dimension of qkv [B, T, 3·H·d], with the
// heads merged back: [B, T, H·d]. bias is an additive [B or 1, 1 or H, T, T] mask; undefined means causal.
struct PackedSelfAttention : public torch::autograd::Function<PackedSelfAttention> {
  // bias is a constant (no gradient), so it travels as a non-tensor argument.
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &qkv, int64_t heads,
                            const c10::optional<at::Tensor> &bias) {
    TORCH_CHECK(qkv.dim() == 3 && qkv.size(2) % (3 * heads) == 0,
                "packed attention: qkv must be [B, T, 3·heads·d], got ", qkv.sizes());
    int64_t b = qkv.size(0), t = qkv.size(1), d = qkv.size(2) / 3, hd = d / heads;
    double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    // [3, B·H, T, d]: one copy lays q, k and v out for batched matrix products.
    at::Tensor x = qkv.view({b, t, 3, heads, hd}).permute({2, 0, 3, 1, 4}).contiguous().view({3, b * heads, t, hd});
    at::Tensor q = x[0], k = x[1], v = x[2];
    at::Tensor add;
    if (bias.has_value())
      add = bias->to(qkv.scalar_type()).expand({b, heads, t, t}).reshape({b * heads, t, t});
    else
      add = causal_bias(t, t, qkv.options());
    // A copy always: with one sequence and one head `contiguous()` would hand back the cached causal mask itself,
    // which the product then accumulates into.
    at::Tensor scores = add.expand({b * heads, t, t}).clone(at::MemoryFormat::Contiguous);
    batched_gemm(false, true, q, k, scores, static_cast<float>(scale), 1);
    at::Tensor p = at::_softmax(scores, -1, false);
    at::Tensor y = at::empty({b * heads, t, hd}, qkv.options());
    batched_gemm(false, false, p, v, y, 1, 0);
    ctx->save_for_backward({x, p});
    ctx->saved_data["heads"] = heads;
    return y.view({b, heads, t, hd}).permute({0, 2, 1, 3}).reshape({b, t, d});
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &p = saved[1];
    int64_t heads = ctx->saved_data["heads"].toInt();
    int64_t bh = x.size(1), t = x.size(2), hd = x.size(3), b = bh / heads;
    double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    at::Tensor q = x[0], k = x[1], v = x[2];
    at::Tensor dy = grads[0].view({b, t, heads, hd}).permute({0, 2, 1, 3}).reshape({bh, t, hd});
    at::Tensor dx = at::empty_like(x), dq = dx[0], dk = dx[1], dv = dx[2];
    dy = dy.contiguous();
    batched_gemm(true, false, p, dy, dv, 1, 0);
    at::Tensor dp = at::empty({bh, t, t}, p.options());
    batched_gemm(false, true, dy, v, dp, 1, 0);
    at::Tensor ds = at::_softmax_backward_data(dp, p, -1, p.scalar_type());
    ds.mul_(scale);
    batched_gemm(false, false, ds, k, dq, 1, 0);
    batched_gemm(true, false, ds, q, dk, 1, 0);
    at::Tensor dqkv = dx.view({3, b, heads, t, hd}).permute({1, 3, 0, 2, 4}).reshape({b, t, 3 * heads * hd});
    return {dqkv, at::Tensor(), at::Tensor()};
  }
};

at::Tensor unary(int op, const at::Tensor &a) {
  switch (op) {
  case CT_NEG: return at::neg(a);
  case CT_EXP: return at::exp(a);
  case CT_LOG: return at::log(a);
  case CT_SQRT: return at::sqrt(a);
  case CT_RSQRT: return at::rsqrt(a);
  case CT_ABS: return at::abs(a);
  case CT_TANH: return at::tanh(a);
  case CT_SIGMOID: return at::sigmoid(a);
  case CT_RELU: return at::relu(a);
  case CT_GELU: return at::gelu(a, "none");
  case CT_GELU_TANH: return gelu_tanh(a);
  case CT_SILU: return at::silu(a);
  case CT_SOFTPLUS: return at::softplus(a);
  case CT_LOGSIGMOID: return at::log_sigmoid(a);
  case CT_LOGICAL_NOT: return at::logical_not(a);
  case CT_SIN: return at::sin(a);
  case CT_COS: return at::cos(a);
  case CT_SQUARE: return at::square(a);
  case CT_RECIPROCAL: return at::reciprocal(a);
  case CT_FLOOR: return at::floor(a);
  case CT_CEIL: return at::ceil(a);
  case CT_ROUND: return at::round(a);
  case CT_SIGN: return at::sign(a);
  case CT_LOG1P: return at::log1p(a);
  case CT_EXPM1: return at::expm1(a);
  case CT_ISNAN: return at::isnan(a);
  case CT_ISINF: return at::isinf(a);
  case CT_ISFINITE: return at::isfinite(a);
  }
  throw std::invalid_argument("unknown unary op " + std::to_string(op));
}

at::Tensor binary(int op, const at::Tensor &a, const at::Tensor &b) {
  switch (op) {
  case CT_ADD: return at::add(a, b);
  case CT_SUB: return at::sub(a, b);
  case CT_MUL: return at::mul(a, b);
  case CT_DIV: return at::div(a, b);
  case CT_POW: return at::pow(a, b);
  case CT_MAXIMUM: return at::maximum(a, b);
  case CT_MINIMUM: return at::minimum(a, b);
  case CT_EQ: return at::eq(a, b);
  case CT_NE: return at::ne(a, b);
  case CT_LT: return at::lt(a, b);
  case CT_LE: return at::le(a, b);
  case CT_GT: return at::gt(a, b);
  case CT_GE: return at::ge(a, b);
  case CT_LOGICAL_AND: return at::logical_and(a, b);
  case CT_LOGICAL_OR: return at::logical_or(a, b);
  case CT_REMAINDER: return at::remainder(a, b);
  case CT_FLOOR_DIVIDE: return at::floor_divide(a, b);
  }
  throw std::invalid_argument("unknown binary op " + std::to_string(op));
}

at::Tensor binary_scalar(int op, const at::Tensor &a, const at::Scalar &s) {
  switch (op) {
  case CT_ADD: return at::add(a, s);
  case CT_SUB: return at::sub(a, s);
  case CT_MUL: return at::mul(a, s);
  case CT_DIV: return at::div(a, s);
  case CT_POW: return at::pow(a, s);
  case CT_EQ: return at::eq(a, s);
  case CT_NE: return at::ne(a, s);
  case CT_LT: return at::lt(a, s);
  case CT_LE: return at::le(a, s);
  case CT_GT: return at::gt(a, s);
  case CT_GE: return at::ge(a, s);
  case CT_REMAINDER: return at::remainder(a, s);
  case CT_FLOOR_DIVIDE: return at::floor_divide(a, s);
  default: return binary(op, a, at::scalar_tensor(s, a.options()));
  }
}

void binary_inplace(int op, at::Tensor &a, const at::Tensor &b) {
  switch (op) {
  case CT_ADD: a.add_(b); return;
  case CT_SUB: a.sub_(b); return;
  case CT_MUL: a.mul_(b); return;
  case CT_DIV: a.div_(b); return;
  case CT_POW: a.pow_(b); return;
  default: a.copy_(binary(op, a, b)); return;
  }
}

void binary_scalar_inplace(int op, at::Tensor &a, const at::Scalar &s) {
  switch (op) {
  case CT_ADD: a.add_(s); return;
  case CT_SUB: a.sub_(s); return;
  case CT_MUL: a.mul_(s); return;
  case CT_DIV: a.div_(s); return;
  case CT_POW: a.pow_(s); return;
  default: a.copy_(binary_scalar(op, a, s)); return;
  }
}

std::vector<int64_t> all_dims(const at::Tensor &a) {
  std::vector<int64_t> v(static_cast<size_t>(a.dim()));
  for (int64_t i = 0; i < a.dim(); i++) v[static_cast<size_t>(i)] = i;
  return v;
}

// Reduces over the dims in d, or over every dim when d is empty.
at::Tensor reduce(int op, const at::Tensor &a, at::IntArrayRef d, bool keepdim) {
  std::vector<int64_t> every = all_dims(a);
  bool all = d.empty();
  at::IntArrayRef rd = all ? at::IntArrayRef(every) : d;
  switch (op) {
  case CT_SUM: return (all && !keepdim) ? at::sum(a) : at::sum(a, rd, keepdim);
  case CT_MEAN: return (all && !keepdim) ? at::mean(a) : at::mean(a, rd, keepdim);
  case CT_LOGSUMEXP: {
    if (a.dim() == 0) return a.clone();
    return at::logsumexp(a, rd, keepdim);
  }
  case CT_AMAX: return at::amax(a, d, keepdim); // empty dims reduce over all
  case CT_AMIN: return at::amin(a, d, keepdim);
  case CT_PROD:
  case CT_ANY:
  case CT_ALL: {
    // These take one dim at a time: reduce the highest dims first so lower indices stay valid.
    at::Tensor r = op == CT_PROD ? a : a.to(at::kBool);
    std::vector<int64_t> sorted(rd.begin(), rd.end());
    for (auto &x : sorted)
      if (x < 0) x += a.dim();
    std::sort(sorted.rbegin(), sorted.rend());
    for (auto x : sorted)
      r = op == CT_PROD ? at::prod(r, x, keepdim) : op == CT_ANY ? at::any(r, x, keepdim) : at::all(r, x, keepdim);
    return r;
  }
  }
  throw std::invalid_argument("unknown reduction " + std::to_string(op));
}

} // namespace

void ct_internal_set_error(const char *msg) { set_error(msg); }

#define CT_GUARD(on_error, ...)                                                                     \
  try {                                                                                            \
    __VA_ARGS__                                                                                    \
  } catch (const c10::Error &e) {                                                                  \
    set_error(e.what_without_backtrace());                                                         \
    return on_error;                                                                               \
  } catch (const std::exception &e) {                                                              \
    set_error(e.what());                                                                           \
    return on_error;                                                                               \
  } catch (...) {                                                                                  \
    set_error("unknown C++ exception");                                                            \
    return on_error;                                                                               \
  }

#define CT_TENSOR(...) CT_GUARD(nullptr, return wrap(__VA_ARGS__);)
#define CT_STATUS(...) CT_GUARD(-1, __VA_ARGS__; return 0;)

extern "C" {

const char *ct_last_error(void) { return has_error ? last_error.c_str() : nullptr; }
void ct_clear_error(void) {
  has_error = false;
  last_error.clear();
}
const char *ct_version(void) {
  static const std::string v = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
                               "." + std::to_string(TORCH_VERSION_PATCH);
  return v.c_str();
}
int ct_get_num_threads(void) { return at::get_num_threads(); }
void ct_set_num_threads(int n) {
  try {
    at::set_num_threads(n);
  } catch (...) {
  }
}
bool ct_cuda_is_available(void) {
  try {
    return at::hasCUDA();
  } catch (...) {
    return false;
  }
}
int ct_cuda_device_count(void) {
  try {
    return at::hasCUDA() ? static_cast<int>(c10::impl::getDeviceGuardImpl(at::kCUDA)->deviceCount()) : 0;
  } catch (...) {
    return 0;
  }
}

void ct_free(ct_tensor t) { delete t; }
ct_tensor ct_alias(ct_tensor t) { CT_TENSOR(t->t) }
int ct_ndim(ct_tensor t) { return static_cast<int>(t->t.dim()); }
int ct_sizes(ct_tensor t, int64_t *out, int capacity) {
  auto s = t->t.sizes();
  int n = static_cast<int>(s.size());
  for (int i = 0; i < n && i < capacity; i++) out[i] = s[i];
  return n;
}
int ct_dtype_of(ct_tensor t) { CT_GUARD(-1, return from_scalar_type(t->t.scalar_type());) }
int ct_device_of(ct_tensor t) {
  auto d = t->t.device();
  return d.is_cpu() ? CT_CPU : static_cast<int>(d.index());
}
int64_t ct_numel(ct_tensor t) { return t->t.numel(); }
bool ct_is_contiguous(ct_tensor t) { return t->t.is_contiguous(); }

ct_tensor ct_empty(const int64_t *shape, int ndim, int dtype, int device) {
  CT_TENSOR(at::empty(dims(shape, ndim), options(dtype, device)))
}
ct_tensor ct_full(const int64_t *shape, int ndim, double value, int dtype, int device) {
  CT_GUARD(nullptr, {
    auto opts = options(dtype, device);
    at::Tensor t = at::empty(dims(shape, ndim), opts);
    t.fill_(scalar_for(t, value));
    return wrap(t);
  })
}
ct_tensor ct_arange(double start, double end, double step, int dtype, int device) {
  CT_TENSOR(at::arange(at::Scalar(start), at::Scalar(end), at::Scalar(step), options(dtype, device)))
}
ct_tensor ct_randn(const int64_t *shape, int ndim, int dtype, int device, ct_generator gen) {
  CT_TENSOR(at::randn(dims(shape, ndim), gen_of(gen), options(dtype, device)))
}
ct_tensor ct_rand(const int64_t *shape, int ndim, int dtype, int device, ct_generator gen) {
  CT_TENSOR(at::rand(dims(shape, ndim), gen_of(gen), options(dtype, device)))
}
ct_tensor ct_randint(int64_t low, int64_t high, const int64_t *shape, int ndim, int dtype, int device,
                     ct_generator gen) {
  CT_TENSOR(at::randint(low, high, dims(shape, ndim), gen_of(gen), options(dtype, device)))
}
ct_tensor ct_randperm(int64_t n, int device, ct_generator gen) {
  CT_TENSOR(at::randperm(n, gen_of(gen), options(CT_INT64, device)))
}
ct_tensor ct_bernoulli(ct_tensor probs, ct_generator gen) { CT_TENSOR(at::bernoulli(probs->t, gen_of(gen))) }
ct_tensor ct_multinomial(ct_tensor probs, int64_t num_samples, bool replacement, ct_generator gen) {
  CT_TENSOR(at::multinomial(probs->t, num_samples, replacement, gen_of(gen)))
}
ct_tensor ct_from_data(const void *data, size_t nbytes, const int64_t *shape, int ndim, int dtype) {
  CT_GUARD(nullptr, {
    at::Tensor t = at::empty(dims(shape, ndim), options(dtype, CT_CPU));
    size_t need = static_cast<size_t>(t.numel()) * t.element_size();
    if (need != nbytes)
      throw std::invalid_argument("ct_from_data: " + std::to_string(nbytes) + " bytes given, shape needs " +
                                  std::to_string(need));
    if (need > 0) std::memcpy(t.data_ptr(), data, need);
    return wrap(t);
  })
}
int ct_copy_to_host(ct_tensor t, void *dst, size_t nbytes) {
  CT_STATUS({
    at::Tensor c = t->t.detach().to(at::kCPU).contiguous();
    size_t have = static_cast<size_t>(c.numel()) * c.element_size();
    if (have != nbytes)
      throw std::invalid_argument("ct_copy_to_host: tensor has " + std::to_string(have) + " bytes, buffer " +
                                  std::to_string(nbytes));
    if (have > 0) std::memcpy(dst, c.data_ptr(), have);
  })
}
double ct_item_double(ct_tensor t) { CT_GUARD(NAN, return t->t.item<double>();) }
int64_t ct_item_int64(ct_tensor t) { CT_GUARD(0, return t->t.item<int64_t>();) }

ct_tensor ct_to(ct_tensor t, int dtype, int device) {
  CT_GUARD(nullptr, return wrap(t->t.to(to_device(device), to_scalar_type(dtype)));)
}
ct_tensor ct_contiguous(ct_tensor t) { CT_TENSOR(t->t.contiguous()) }
ct_tensor ct_clone(ct_tensor t) { CT_TENSOR(t->t.clone()) }
ct_tensor ct_detach(ct_tensor t) { CT_TENSOR(t->t.detach()) }

ct_tensor ct_unary(int op, ct_tensor a) { CT_TENSOR(unary(op, a->t)) }
ct_tensor ct_binary(int op, ct_tensor a, ct_tensor b) { CT_TENSOR(binary(op, a->t, b->t)) }
ct_tensor ct_binary_scalar(int op, ct_tensor a, double s) { CT_TENSOR(binary_scalar(op, a->t, scalar_for(a->t, s))) }
ct_tensor ct_rbinary_scalar(int op, double s, ct_tensor a) {
  CT_GUARD(nullptr, {
    at::Scalar sc = scalar_for(a->t, s);
    switch (op) {
    case CT_SUB: return wrap(at::rsub(a->t, sc));
    case CT_POW: return wrap(at::pow(sc, a->t));
    default: {
      // The scalar side takes the promoted type (2.5 / int tensor is fractional, as in torch).
      auto type = at::result_type(a->t, sc);
      return wrap(binary(op, at::scalar_tensor(sc, a->t.options().dtype(type)), a->t));
    }
    }
  })
}
int ct_binary_(int op, ct_tensor a, ct_tensor b) { CT_STATUS(binary_inplace(op, a->t, b->t)) }
int ct_binary_scalar_(int op, ct_tensor a, double s) { CT_STATUS(binary_scalar_inplace(op, a->t, scalar_for(a->t, s))) }
int ct_add_scaled_(ct_tensor a, ct_tensor b, double alpha) { CT_STATUS(a->t.add_(b->t, scalar_for(a->t, alpha))) }
int ct_addcmul_(ct_tensor a, ct_tensor b, ct_tensor c, double value) { CT_STATUS(a->t.addcmul_(b->t, c->t, value)) }
int ct_addcdiv_(ct_tensor a, ct_tensor b, ct_tensor c, double value) { CT_STATUS(a->t.addcdiv_(b->t, c->t, value)) }
int ct_copy_(ct_tensor dst, ct_tensor src) { CT_STATUS(dst->t.copy_(src->t)) }
int ct_fill_(ct_tensor a, double value) { CT_STATUS(a->t.fill_(scalar_for(a->t, value))) }

ct_tensor ct_clamp(ct_tensor a, double lo, double hi, bool has_lo, bool has_hi) {
  CT_GUARD(nullptr, {
    c10::optional<at::Scalar> l, h;
    if (has_lo) l = scalar_for(a->t, lo);
    if (has_hi) h = scalar_for(a->t, hi);
    return wrap(at::clamp(a->t, l, h));
  })
}
ct_tensor ct_where(ct_tensor cond, ct_tensor a, ct_tensor b) { CT_TENSOR(at::where(cond->t, a->t, b->t)) }
ct_tensor ct_masked_fill(ct_tensor a, ct_tensor mask, double value) {
  CT_TENSOR(at::masked_fill(a->t, mask->t, scalar_for(a->t, value)))
}

ct_tensor ct_reduce(int op, ct_tensor a, const int64_t *d, int ndims, bool keepdim) {
  CT_TENSOR(reduce(op, a->t, dims(d, ndims), keepdim))
}
ct_tensor ct_var(ct_tensor a, const int64_t *d, int ndims, bool unbiased, bool keepdim) {
  CT_GUARD(nullptr, {
    if (ndims == 0) {
      std::vector<int64_t> every = all_dims(a->t);
      return wrap(at::var(a->t, at::IntArrayRef(every), unbiased, keepdim));
    }
    return wrap(at::var(a->t, dims(d, ndims), unbiased, keepdim));
  })
}
ct_tensor ct_norm(ct_tensor a, double p) { CT_TENSOR(at::norm(a->t, at::Scalar(p))) }
ct_tensor ct_max_dim(ct_tensor a, int64_t dim, bool keepdim, ct_tensor *indices) {
  CT_GUARD(nullptr, {
    auto r = at::max(a->t, dim, keepdim);
    *indices = wrap(std::get<1>(r));
    return wrap(std::get<0>(r));
  })
}
ct_tensor ct_min_dim(ct_tensor a, int64_t dim, bool keepdim, ct_tensor *indices) {
  CT_GUARD(nullptr, {
    auto r = at::min(a->t, dim, keepdim);
    *indices = wrap(std::get<1>(r));
    return wrap(std::get<0>(r));
  })
}
ct_tensor ct_argmax(ct_tensor a, int64_t dim, bool keepdim) { CT_TENSOR(at::argmax(a->t, dim, keepdim)) }
ct_tensor ct_topk(ct_tensor a, int64_t k, int64_t dim, bool largest, bool sorted, ct_tensor *indices) {
  CT_GUARD(nullptr, {
    auto r = at::topk(a->t, k, dim, largest, sorted);
    *indices = wrap(std::get<1>(r));
    return wrap(std::get<0>(r));
  })
}
ct_tensor ct_sort(ct_tensor a, int64_t dim, bool descending, ct_tensor *indices) {
  CT_GUARD(nullptr, {
    auto r = at::sort(a->t, dim, descending);
    *indices = wrap(std::get<1>(r));
    return wrap(std::get<0>(r));
  })
}
ct_tensor ct_cumsum(ct_tensor a, int64_t dim) { CT_TENSOR(at::cumsum(a->t, dim)) }
ct_tensor ct_softmax(ct_tensor a, int64_t dim) { CT_TENSOR(at::softmax(a->t, dim)) }
ct_tensor ct_log_softmax(ct_tensor a, int64_t dim) { CT_TENSOR(at::log_softmax(a->t, dim)) }

ct_tensor ct_reshape(ct_tensor a, const int64_t *shape, int ndim) { CT_TENSOR(a->t.reshape(dims(shape, ndim))) }
ct_tensor ct_view(ct_tensor a, const int64_t *shape, int ndim) { CT_TENSOR(a->t.view(dims(shape, ndim))) }
ct_tensor ct_permute(ct_tensor a, const int64_t *d, int ndim) { CT_TENSOR(a->t.permute(dims(d, ndim))) }
ct_tensor ct_transpose(ct_tensor a, int64_t d0, int64_t d1) { CT_TENSOR(a->t.transpose(d0, d1)) }
ct_tensor ct_expand(ct_tensor a, const int64_t *shape, int ndim) { CT_TENSOR(a->t.expand(dims(shape, ndim))) }
ct_tensor ct_squeeze(ct_tensor a, int64_t dim, bool all) { CT_TENSOR(all ? a->t.squeeze() : a->t.squeeze(dim)) }
ct_tensor ct_unsqueeze(ct_tensor a, int64_t dim) { CT_TENSOR(a->t.unsqueeze(dim)) }
ct_tensor ct_narrow(ct_tensor a, int64_t dim, int64_t start, int64_t length) {
  CT_TENSOR(a->t.narrow(dim, start, length))
}
ct_tensor ct_select(ct_tensor a, int64_t dim, int64_t index) { CT_TENSOR(a->t.select(dim, index)) }
ct_tensor ct_cat(const ct_tensor *ts, int n, int64_t dim) {
  CT_GUARD(nullptr, {
    std::vector<at::Tensor> v;
    v.reserve(n);
    for (int i = 0; i < n; i++) v.push_back(ts[i]->t);
    return wrap(at::cat(v, dim));
  })
}
ct_tensor ct_stack(const ct_tensor *ts, int n, int64_t dim) {
  CT_GUARD(nullptr, {
    std::vector<at::Tensor> v;
    v.reserve(n);
    for (int i = 0; i < n; i++) v.push_back(ts[i]->t);
    return wrap(at::stack(v, dim));
  })
}
int ct_split(ct_tensor a, const int64_t *sizes, int n, int64_t dim, ct_tensor *out) {
  CT_STATUS({
    auto parts = at::split_with_sizes(a->t, dims(sizes, n), dim);
    for (int i = 0; i < n; i++) out[i] = wrap(parts[i]);
  })
}
ct_tensor ct_index_select(ct_tensor a, int64_t dim, ct_tensor index) {
  CT_TENSOR(at::index_select(a->t, dim, index->t))
}
ct_tensor ct_gather(ct_tensor a, int64_t dim, ct_tensor index) { CT_TENSOR(at::gather(a->t, dim, index->t)) }
ct_tensor ct_scatter_add(ct_tensor a, int64_t dim, ct_tensor index, ct_tensor src) {
  CT_TENSOR(at::scatter_add(a->t, dim, index->t, src->t))
}
ct_tensor ct_tril(ct_tensor a, int64_t k) { CT_TENSOR(at::tril(a->t, k)) }
ct_tensor ct_triu(ct_tensor a, int64_t k) { CT_TENSOR(at::triu(a->t, k)) }

ct_tensor ct_matmul(ct_tensor a, ct_tensor b) { CT_TENSOR(at::matmul(a->t, b->t)) }
ct_tensor ct_bmm(ct_tensor a, ct_tensor b) { CT_TENSOR(at::bmm(a->t, b->t)) }
ct_tensor ct_linear(ct_tensor x, ct_tensor w, ct_tensor b) {
  CT_GUARD(nullptr, {
    const at::Tensor &in = x->t, &weight = w->t;
    if (weight.dim() == 2 && in.dim() >= 1 && in.size(-1) == weight.size(1)) {
      at::Tensor y = onednn_linear(in.reshape({-1, weight.size(1)}), weight, b ? &b->t : nullptr, true);
      if (y.defined()) {
        std::vector<int64_t> sizes = in.sizes().vec();
        sizes.back() = weight.size(0);
        return wrap(y.view(sizes));
      }
    }
    c10::optional<at::Tensor> bias;
    if (b != nullptr) bias = b->t;
    return wrap(at::linear(in, weight, bias));
  })
}
ct_tensor ct_affine(ct_tensor x, ct_tensor w, ct_tensor b) {
  CT_GUARD(nullptr, {
    const at::Tensor &in = x->t, &weight = w->t;
    TORCH_CHECK(weight.dim() == 2 && in.dim() >= 1 && in.size(-1) == weight.size(0), "affine: x ", in.sizes(),
                " does not fit a weight stored [in, out] ", weight.sizes());
    std::vector<int64_t> sizes = in.sizes().vec();
    sizes.back() = weight.size(1);
    at::Tensor flat = in.reshape({-1, weight.size(0)});
    at::Tensor y = onednn_linear(flat, weight, b ? &b->t : nullptr, false);
    if (!y.defined()) y = b != nullptr ? at::addmm(b->t, flat, weight) : at::mm(flat, weight);
    return wrap(in.dim() == 2 ? y : y.view(sizes));
  })
}
ct_tensor ct_packed_self_attention(ct_tensor qkv, int64_t heads, ct_tensor bias) {
  CT_GUARD(nullptr, return wrap(PackedSelfAttention::apply(qkv->t, heads, bias != nullptr ? c10::optional<at::Tensor>(bias->t) : c10::nullopt));)
}
ct_tensor ct_embedding(ct_tensor weight, ct_tensor indices) { CT_TENSOR(at::embedding(weight->t, indices->t)) }
ct_tensor ct_layer_norm(ct_tensor x, const int64_t *normalized_shape, int ndim, ct_tensor w, ct_tensor b,
                        double eps) {
  CT_GUARD(nullptr, {
    c10::optional<at::Tensor> wt, bt;
    if (w != nullptr) wt = w->t;
    if (b != nullptr) bt = b->t;
    return wrap(at::layer_norm(x->t, dims(normalized_shape, ndim), wt, bt, eps));
  })
}
ct_tensor ct_cross_entropy(ct_tensor logits, ct_tensor targets, int64_t ignore_index, int reduction,
                           double label_smoothing) {
  CT_TENSOR(at::cross_entropy_loss(logits->t, targets->t, {}, reduction, ignore_index, label_smoothing))
}

int ct_set_requires_grad(ct_tensor t, bool requires) { CT_STATUS(t->t.set_requires_grad(requires)) }
bool ct_requires_grad(ct_tensor t) { return t->t.requires_grad(); }
int ct_backward(ct_tensor t, ct_tensor grad, bool retain_graph) {
  CT_STATUS({
    if (grad != nullptr)
      t->t.backward(grad->t, retain_graph);
    else
      t->t.backward({}, retain_graph);
  })
}
ct_tensor ct_grad(ct_tensor t) {
  CT_GUARD(nullptr, {
    const at::Tensor &g = t->t.grad();
    if (!g.defined()) return nullptr;
    return wrap(g);
  })
}
int ct_zero_grad(ct_tensor t, bool set_to_none) {
  CT_STATUS({
    at::Tensor &g = t->t.mutable_grad();
    if (!g.defined()) return 0;
    if (set_to_none)
      g.reset();
    else
      g.zero_();
  })
}
int ct_set_grad(ct_tensor t, ct_tensor g) { CT_STATUS(t->t.mutable_grad() = g->t) }
int ct_set_data(ct_tensor t, ct_tensor src) { CT_STATUS(t->t.set_data(src->t)) }
bool ct_set_grad_enabled(bool enabled) {
  bool prev = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(enabled);
  return prev;
}
bool ct_is_grad_enabled(void) { return c10::GradMode::is_enabled(); }
bool ct_onednn_sgemm_available(void) { return onednn_sgemm() != nullptr; }

// Autocast (mixed precision), per thread, for the CPU or CUDA. libtorch 2.4 replaced the per-device setters
// with ones that take the device type.
namespace {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(at::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
at::ScalarType autocast_dtype(at::DeviceType d) { return at::autocast::get_autocast_dtype(d); }
void autocast_set(at::DeviceType d, bool on, at::ScalarType t) {
  at::autocast::set_autocast_enabled(d, on);
  at::autocast::set_autocast_dtype(d, t);
}
#else
bool autocast_enabled(at::DeviceType d) {
  return d == at::kCPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
}
at::ScalarType autocast_dtype(at::DeviceType d) {
  return d == at::kCPU ? at::autocast::get_autocast_cpu_dtype() : at::autocast::get_autocast_gpu_dtype();
}
void autocast_set(at::DeviceType d, bool on, at::ScalarType t) {
  if (d == at::kCPU) {
    at::autocast::set_cpu_enabled(on);
    at::autocast::set_autocast_cpu_dtype(t);
  } else {
    at::autocast::set_enabled(on);
    at::autocast::set_autocast_gpu_dtype(t);
  }
}
#endif
} // namespace

int ct_autocast_enter(int device, int dtype, bool *prev_enabled, int *prev_dtype) {
  CT_STATUS({
    const at::DeviceType d = to_device(device).type();
    const at::ScalarType t = to_scalar_type(dtype);
    const std::string name = t == at::kHalf ? "float16" : t == at::kFloat ? "float32" : c10::toString(t);
    if (d == at::kCPU && t != at::kBFloat16)
      throw std::invalid_argument("autocast on the CPU runs in bfloat16, not " + name + " (float16 needs CUDA)");
    if (t != at::kBFloat16 && t != at::kHalf)
      throw std::invalid_argument("autocast needs bfloat16 or float16, not " + name);
    *prev_enabled = autocast_enabled(d);
    *prev_dtype = from_scalar_type(autocast_dtype(d));
    autocast_set(d, true, t);
    at::autocast::increment_nesting();
  })
}
bool ct_autocast_is_enabled(int device) {
  try {
    return autocast_enabled(to_device(device).type());
  } catch (...) {
    return false;
  }
}
int ct_autocast_exit(int device, bool prev_enabled, int prev_dtype) {
  CT_STATUS({
    const at::DeviceType d = to_device(device).type();
    autocast_set(d, prev_enabled, to_scalar_type(prev_dtype));
    // The casts of weights are cached while autocast is on; the outermost exit drops them (the weights change).
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  })
}

ct_generator ct_generator_new(uint64_t seed, int device) {
  CT_GUARD(nullptr, {
    if (device >= 0) throw std::invalid_argument("CUDA generators are not supported by this build");
    return new ct_generator_s{at::detail::createCPUGenerator(seed)};
  })
}
void ct_generator_free(ct_generator g) { delete g; }
int ct_generator_set_seed(ct_generator g, uint64_t seed) {
  CT_STATUS({
    std::lock_guard<std::mutex> lock(g->g.mutex());
    g->g.set_current_seed(seed);
  })
}
ct_tensor ct_generator_get_state(ct_generator g) {
  CT_GUARD(nullptr, {
    std::lock_guard<std::mutex> lock(g->g.mutex());
    return wrap(g->g.get_state());
  })
}
int ct_generator_set_state(ct_generator g, ct_tensor state) {
  CT_STATUS({
    std::lock_guard<std::mutex> lock(g->g.mutex());
    g->g.set_state(state->t);
  })
}
void ct_manual_seed(uint64_t seed) {
  try {
    at::manual_seed(seed);
  } catch (...) {
  }
}

} // extern "C"

#include <dlfcn.h>

// ---- decoding kernels: one new position per row, no autograd -----------------------------------------
// Decoding a token streams every weight once, which evicts everything else from the caches, so each ATen
// call of a decode step pays a cold dispatch (a few µs); a step of a 30-layer model made of ~70 small ops per
// layer spent about as long in them as in its matrix-vector products. These do the small work of a step in a
// few calls, with the same arithmetic as the op-by-op path (see the Swift callers' tests).
namespace {

// out = x·cos + rotate_half(x)·sin over d values (rotate_half(x) = [−x₂, x₁]), rounded as the ATen ops round.
void rotate_half_into(const float *x, const float *cos, const float *sin, float *out, int64_t d) {
  int64_t half = d / 2;
  for (int64_t i = 0; i < d; i++) {
    float rotated = i < half ? -x[i + half] : x[i - half];
    float a = x[i] * cos[i];
    float b = rotated * sin[i];
    out[i] = a + b;
  }
}

at::Tensor decode_attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v, const at::Tensor *cos,
                            const at::Tensor *sin, at::Tensor &key_cache, at::Tensor &value_cache, int64_t past,
                            int64_t heads, const at::Tensor *bias) {
  TORCH_CHECK(!c10::GradMode::is_enabled(), "decode attention: run without gradients");
  TORCH_CHECK(q.dim() == 3 && q.size(1) == 1 && k.dim() == 3 && v.dim() == 3, "decode attention: q, k, v must be [B, 1, heads·d], got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(key_cache.dim() == 4 && key_cache.is_contiguous() && value_cache.is_contiguous() &&
                  key_cache.sizes() == value_cache.sizes(),
              "decode attention: caches must be contiguous [B, Hkv, C, d] of one shape");
  int64_t b = q.size(0), hkv = key_cache.size(1), capacity = key_cache.size(2), d = key_cache.size(3);
  TORCH_CHECK(heads > 0 && heads % hkv == 0 && q.size(2) == heads * d && k.size(2) == hkv * d && v.size(2) == hkv * d &&
                  k.size(0) == b && v.size(0) == b && key_cache.size(0) == b,
              "decode attention: q ", q.sizes(), ", k ", k.sizes(), " do not fit ", heads, " heads and caches ", key_cache.sizes());
  TORCH_CHECK(past >= 0 && past < capacity, "decode attention: position ", past, " outside a cache of ", capacity);
  for (const at::Tensor *t : {&q, &k, &v, const_cast<const at::Tensor *>(&key_cache), const_cast<const at::Tensor *>(&value_cache)})
    TORCH_CHECK(t->scalar_type() == at::kFloat && t->device().is_cpu() && t->stride(-1) == 1,
                "decode attention: float32 CPU tensors with a contiguous last dimension");
  at::Tensor c, s;
  if (cos != nullptr) {
    c = cos->contiguous();
    s = sin->contiguous();
    TORCH_CHECK(c.scalar_type() == at::kFloat && c.numel() == b * d && s.sizes() == c.sizes(),
                "decode attention: cos/sin must be float32 [B, 1, 1, d], got ", c.sizes());
  }
  int64_t rep = heads / hkv, positions = past + 1;
  at::Tensor rq = at::empty({b * hkv, rep, d}, q.options()); // rotated queries, grouped by key/value head
  float *rqp = rq.data_ptr<float>(), *kcp = key_cache.data_ptr<float>(), *vcp = value_cache.data_ptr<float>();
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  for (int64_t r = 0; r < b; r++) {
    const float *qr = qp + r * q.stride(0), *kr = kp + r * k.stride(0), *vr = vp + r * v.stride(0);
    const float *cr = c.defined() ? c.data_ptr<float>() + r * d : nullptr;
    const float *sr = s.defined() ? s.data_ptr<float>() + r * d : nullptr;
    for (int64_t h = 0; h < heads; h++) {
      float *out = rqp + (r * heads + h) * d;
      if (cr) rotate_half_into(qr + h * d, cr, sr, out, d);
      else std::memcpy(out, qr + h * d, d * sizeof(float));
    }
    for (int64_t g = 0; g < hkv; g++) {
      int64_t slot = ((r * hkv + g) * capacity + past) * d;
      if (cr) rotate_half_into(kr + g * d, cr, sr, kcp + slot, d);
      else std::memcpy(kcp + slot, kr + g * d, d * sizeof(float));
      std::memcpy(vcp + slot, vr + g * d, d * sizeof(float));
    }
  }
  // [B·Hkv, positions, d] views of the cache; the rep query heads of a group are the rows of one product.
  at::Tensor keys = key_cache.narrow(2, 0, positions).view({b * hkv, positions, d});
  at::Tensor values = value_cache.narrow(2, 0, positions).view({b * hkv, positions, d});
  at::Tensor scores = at::bmm(rq, keys.transpose(1, 2)).mul_(1 / std::sqrt(static_cast<double>(d)));
  if (bias != nullptr) {
    TORCH_CHECK(bias->numel() == positions || bias->numel() == b * positions,
                "decode attention: bias must be [B or 1, 1, 1, ", positions, "], got ", bias->sizes());
    scores.view({b, hkv * rep, positions}).add_(bias->to(at::kFloat).reshape({-1, 1, positions}));
  }
  return at::bmm(at::_softmax(scores, -1, false), values).view({b, 1, heads * d});
}

// x / √(mean(x²) + eps) · w over the last dimension, float32, no autograd: the mean by ATen (so the sum is
// ATen's), the rest in one pass.
at::Tensor rms_norm_no_grad(const at::Tensor &x, const at::Tensor &w, double eps) {
  at::Tensor xc = x.contiguous(), wc = w.contiguous();
  int64_t d = xc.size(-1), rows = xc.numel() / std::max<int64_t>(d, 1);
  TORCH_CHECK(wc.numel() == d, "rms norm: weight ", w.sizes(), " for rows of ", d);
  at::Tensor ms = at::mean(at::square(xc), {-1}, true);
  at::Tensor out = at::empty_like(xc);
  const float *xp = xc.data_ptr<float>(), *wp = wc.data_ptr<float>(), *mp = ms.data_ptr<float>();
  float *op = out.data_ptr<float>();
  float e = static_cast<float>(eps);
  for (int64_t r = 0; r < rows; r++) {
    float scale = 1.0f / std::sqrt(mp[r] + e);
    for (int64_t i = 0; i < d; i++) {
      float normed = xp[r * d + i] * scale;
      op[r * d + i] = wp[i] * normed;
    }
  }
  return out;
}

// BLAS's single-precision matrix-vector product, the routine ATen's mv ends in; found in the process (libtorch
// loaded it) so no link flag is needed, and absent (nullptr) where libtorch's BLAS does not export it.
using sgemv_fn = void (*)(const char *, const int *, const int *, const float *, const float *, const int *,
                          const float *, const int *, const float *, float *, const int *);
sgemv_fn blas_sgemv() {
  static const sgemv_fn f = reinterpret_cast<sgemv_fn>(dlsym(RTLD_DEFAULT, "sgemv_"));
  return f;
}

// x·wᵀ + b (w [out, in]), or x·w + b when w_in_out (w [in, out]). One row (every leading dimension 1):
// a matrix-vector product, which reads the weight once where a matrix product of one row packs (copies) it
// first; without autograd in float32 it is the BLAS call ATen's mv makes and nothing else is dispatched.
at::Tensor linear_row(const at::Tensor &x, const at::Tensor &w, const at::Tensor *b, bool w_in_out) {
  TORCH_CHECK(w.dim() == 2 && x.dim() >= 1 && x.size(-1) == w.size(w_in_out ? 0 : 1), "linear: x ", x.sizes(),
              " does not fit a weight ", w.sizes(), w_in_out ? " stored [in, out]" : " stored [out, in]");
  int64_t in = x.size(-1), out = w.size(w_in_out ? 1 : 0);
  std::vector<int64_t> sizes = x.sizes().vec();
  sizes.back() = out;
  if (x.numel() != in) { // several rows: one matrix product
    at::Tensor flat = x.reshape({-1, in});
    if (at::Tensor y = onednn_linear(flat, w, b, !w_in_out); y.defined()) return y.view(sizes);
    if (!w_in_out) return b ? at::linear(x, w, *b) : at::linear(x, w);
    at::Tensor y = b ? at::addmm(*b, flat, w) : at::mm(flat, w);
    return y.view(sizes);
  }
  bool grad = c10::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b && b->requires_grad()));
  bool plain = !grad && blas_sgemv() != nullptr && x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
               x.device().is_cpu() && w.is_contiguous() && x.stride(-1) == 1 &&
               (!b || (b->scalar_type() == at::kFloat && b->is_contiguous() && b->numel() == out)) && in > 0 && out > 0 &&
               in < (1 << 30) && out < (1 << 30);
  if (!plain) {
    at::Tensor y = at::mv(w_in_out ? w.t() : w, x.reshape({in}));
    if (b) y = y + *b;
    return y.view(sizes);
  }
  at::Tensor y = at::empty(sizes, x.options());
  float *yp = y.data_ptr<float>();
  std::memset(yp, 0, static_cast<size_t>(out) * sizeof(float));
  // Row-major w [out, in] is column-major [in, out]: y = wᵀ'x is gemv 'T'; [in, out] is column-major [out, in]: 'N'.
  int m = static_cast<int>(w_in_out ? out : in), n = static_cast<int>(w_in_out ? in : out), inc = 1;
  float one = 1, zero = 0;
  blas_sgemv()(w_in_out ? "N" : "T", &m, &n, &one, w.data_ptr<float>(), &m, x.data_ptr<float>(), &inc, &zero, yp, &inc);
  if (b) {
    const float *bp = b->data_ptr<float>();
    for (int64_t i = 0; i < out; i++) yp[i] = yp[i] + bp[i];
  }
  return y;
}

} // namespace

extern "C" {

ct_tensor ct_linear_row(ct_tensor x, ct_tensor w, ct_tensor b, bool w_in_out) {
  CT_GUARD(nullptr, return wrap(linear_row(x->t, w->t, b ? &b->t : nullptr, w_in_out));)
}

ct_tensor ct_decode_attention(ct_tensor q, ct_tensor k, ct_tensor v, ct_tensor cos, ct_tensor sin, ct_tensor key_cache,
                              ct_tensor value_cache, int64_t past, int64_t heads, ct_tensor bias) {
  CT_GUARD(nullptr, {
    TORCH_CHECK((cos == nullptr) == (sin == nullptr), "decode attention: give both cos and sin or neither");
    return wrap(decode_attention(q->t, k->t, v->t, cos ? &cos->t : nullptr, sin ? &sin->t : nullptr, key_cache->t,
                                 value_cache->t, past, heads, bias ? &bias->t : nullptr));
  })
}

ct_tensor ct_rms_norm(ct_tensor x, ct_tensor weight, double eps) {
  CT_GUARD(nullptr, {
    const at::Tensor &in = x->t, &w = weight->t;
    bool plain = in.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && in.device().is_cpu() &&
                 w.device().is_cpu() && in.dim() >= 1 &&
                 !(c10::GradMode::is_enabled() && (in.requires_grad() || w.requires_grad()));
    if (plain) return wrap(rms_norm_no_grad(in, w, eps));
    // With autograd, or another dtype/device: the op-by-op definition, in float32 at least.
    bool wide_already = in.scalar_type() == at::kFloat || in.scalar_type() == at::kDouble;
    at::Tensor wide = wide_already ? in : in.to(at::kFloat);
    at::Tensor normed = wide * (at::mean(at::square(wide), {-1}, true) + eps).rsqrt();
    return wrap(w * (wide_already ? normed : normed.to(in.scalar_type())));
  })
}

} // extern "C"
