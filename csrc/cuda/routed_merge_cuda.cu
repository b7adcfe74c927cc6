// CUDA routed_merge. Forward: one block per (b, k); threads stride over the 2D pooled features
// (coalesced along D), each thread folds its features straight into the two router logits, a block
// sum finishes them, then the block writes the merged rows. Backward: the same block layout computes
// the per-(b, k) router gradient (kept in scratch with the pooled means) and dx; a second kernel sums
// dweight / dbias over b in a fixed order (one thread per (k, feature)): deterministic, no atomics.
// Mirrors csrc/cpu/routed_merge_cpu.cpp.
#include "routed_merge_cuda.cuh"

#include "../common/router_math.h"
#include "reduce.cuh"

namespace mdn {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t count_present(const uint8_t* mask, const Strides3& sm, int64_t b, int64_t k,
                                                 int64_t T) {
  if (!mask) return T;
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t) n += mask[b * sm.b + t * sm.t + k * sm.k] != 0;
  return n;
}

__device__ __forceinline__ bool present(const uint8_t* mask, const Strides3& sm, int64_t b, int64_t t, int64_t k) {
  return !mask || mask[b * sm.b + t * sm.t + k * sm.k] != 0;
}

// Pooled mean of feature c in [0, 2D) of (b, k): c < D from x_st, else x_ts.
template <typename Tag, typename T, typename A>
__device__ __forceinline__ A pooled_feature(const T* xs, const Strides4& s_st, const T* xt, const Strides4& s_ts,
                                            const uint8_t* mask, const Strides3& sm, int64_t b, int64_t k,
                                            int64_t T_, int64_t D, int64_t c, A inv) {
  const bool st = c < D;
  const T* x = st ? xs : xt;
  const Strides4& s = st ? s_st : s_ts;
  const int64_t d = st ? c : c - D;
  A acc = A(0);
  for (int64_t t = 0; t < T_; ++t)
    if (present(mask, sm, b, t, k)) acc += Scalar<Tag>::load(x[b * s.b + t * s.t + k * s.k + d * s.d]);
  return acc * inv;
}

template <typename Tag> __global__ void rm_fwd_kernel(RoutedMergeFwdArgs a) {
  using T = typename Scalar<Tag>::storage;
  using A = typename Scalar<Tag>::acc;
  __shared__ A red[kThreads / 32];
  const int64_t b = blockIdx.x / a.K, k = blockIdx.x % a.K, D = a.D;
  const T* xs = static_cast<const T*>(a.x_st);
  const T* xt = static_cast<const T*>(a.x_ts);
  const A* w = static_cast<const A*>(a.weight) + k * 4 * D;
  const A inv = inv_count<A>(count_present(a.mask, a.sm, b, k, a.T));
  A l0 = A(0), l1 = A(0);
  for (int64_t c = threadIdx.x; c < 2 * D; c += blockDim.x) {
    const A pc = pooled_feature<Tag, T, A>(xs, a.s_st, xt, a.s_ts, a.mask, a.sm, b, k, a.T, D, c, inv);
    l0 += w[c] * pc;
    l1 += w[2 * D + c] * pc;
  }
  const A* bias = static_cast<const A*>(a.bias);
  l0 = block_sum(l0, red) + bias[2 * k];
  l1 = block_sum(l1, red) + bias[2 * k + 1];
  A a0, a1;
  router_softmax(l0, l1, static_cast<A>(a.tau), a0, a1);
  if (threadIdx.x == 0) {
    A* alpha = static_cast<A*>(a.alpha);
    alpha[2 * blockIdx.x] = a0;
    alpha[2 * blockIdx.x + 1] = a1;
  }
  T* y = static_cast<T*>(a.y);
  for (int64_t t = 0; t < a.T; ++t)
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
      const A vs = Scalar<Tag>::load(xs[b * a.s_st.b + t * a.s_st.t + k * a.s_st.k + d * a.s_st.d]);
      const A vt = Scalar<Tag>::load(xt[b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k + d * a.s_ts.d]);
      y[((b * a.T + t) * a.K + k) * D + d] = Scalar<Tag>::store(a0 * vs + a1 * vt);
    }
}

template <typename Tag> __global__ void rm_bwd_rows_kernel(RoutedMergeBwdArgs a) {
  using T = typename Scalar<Tag>::storage;
  using A = typename Scalar<Tag>::acc;
  __shared__ A red[kThreads / 32];
  const int64_t task = blockIdx.x, b = task / a.K, k = task % a.K, D = a.D;
  const T* xs = static_cast<const T*>(a.x_st);
  const T* xt = static_cast<const T*>(a.x_ts);
  const T* dy = static_cast<const T*>(a.dy);
  const A* w = static_cast<const A*>(a.weight) + k * 4 * D;
  A* pooled = static_cast<A*>(a.scratch_pooled) + task * 2 * D;
  const A inv = inv_count<A>(count_present(a.mask, a.sm, b, k, a.T));
  // Pooled means (kept for the weight gradient) and the partial gradients of alpha.
  A dA0 = A(0), dA1 = A(0);
  for (int64_t c = threadIdx.x; c < 2 * D; c += blockDim.x)
    pooled[c] = pooled_feature<Tag, T, A>(xs, a.s_st, xt, a.s_ts, a.mask, a.sm, b, k, a.T, D, c, inv);
  for (int64_t t = 0; t < a.T; ++t)
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
      const A g = Scalar<Tag>::load(dy[b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k + d * a.s_dy.d]);
      dA0 += g * Scalar<Tag>::load(xs[b * a.s_st.b + t * a.s_st.t + k * a.s_st.k + d * a.s_st.d]);
      dA1 += g * Scalar<Tag>::load(xt[b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k + d * a.s_ts.d]);
    }
  const A* dalpha = static_cast<const A*>(a.dalpha);
  dA0 = block_sum(dA0, red) + (dalpha ? dalpha[2 * task] : A(0));
  dA1 = block_sum(dA1, red) + (dalpha ? dalpha[2 * task + 1] : A(0));
  const A* alpha = static_cast<const A*>(a.alpha);
  const A a0 = alpha[2 * task], a1 = alpha[2 * task + 1];
  A dl0, dl1;
  router_softmax_bwd(a0, a1, dA0, dA1, static_cast<A>(a.tau), dl0, dl1);
  if (threadIdx.x == 0) {
    A* dlogits = static_cast<A*>(a.scratch_dlogits);
    dlogits[2 * task] = dl0;
    dlogits[2 * task + 1] = dl1;
  }
  T* dxs = static_cast<T*>(a.dx_st);
  T* dxt = static_cast<T*>(a.dx_ts);
  for (int64_t t = 0; t < a.T; ++t) {
    const A m = present(a.mask, a.sm, b, t, k) ? inv : A(0);  // the mean's gradient reaches present frames
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
      const A g = Scalar<Tag>::load(dy[b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k + d * a.s_dy.d]);
      const int64_t o = ((b * a.T + t) * a.K + k) * D + d;
      dxs[o] = Scalar<Tag>::store(a0 * g + m * (dl0 * w[d] + dl1 * w[2 * D + d]));
      dxt[o] = Scalar<Tag>::store(a1 * g + m * (dl0 * w[D + d] + dl1 * w[3 * D + d]));
    }
  }
}

// One thread per (k, c), c in [0, 2D): dweight[k, j, c] = sum_b dlogits[b, k, j] pooled[b, k, c];
// the thread with c = 0 also sums dbias[k, :].
template <typename A> __global__ void rm_bwd_router_kernel(RoutedMergeBwdArgs a) {
  const int64_t D2 = 2 * a.D;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= a.K * D2) return;
  const int64_t k = idx / D2, c = idx % D2;
  const A* dl = static_cast<const A*>(a.scratch_dlogits);
  const A* pooled = static_cast<const A*>(a.scratch_pooled);
  A w0 = A(0), w1 = A(0), b0 = A(0), b1 = A(0);
  for (int64_t b = 0; b < a.B; ++b) {
    const int64_t task = b * a.K + k;
    const A p = pooled[task * D2 + c];
    w0 += dl[2 * task] * p;
    w1 += dl[2 * task + 1] * p;
    b0 += dl[2 * task];
    b1 += dl[2 * task + 1];
  }
  A* dw = static_cast<A*>(a.dweight) + k * 2 * D2;
  dw[c] = w0;
  dw[D2 + c] = w1;
  if (c == 0) {
    A* db = static_cast<A*>(a.dbias);
    db[2 * k] = b0;
    db[2 * k + 1] = b1;
  }
}

bool grid_ok(int64_t B, int64_t K, int64_t D) {
  return B >= 1 && K >= 1 && D >= 1 && B * K <= 2147483647LL && K * 2 * D <= 2147483647LL;
}

}  // namespace

int routed_merge_fwd_cuda(const RoutedMergeFwdArgs& a, cudaStream_t stream) {
  if (!grid_ok(a.B, a.K, a.D) || a.T < 1) return kBadSize;
  const dim3 grid(static_cast<unsigned>(a.B * a.K)), block(kThreads);
  const int dt_status = dispatch_dtype(a.dtype, [&](auto tag) {
    using Tag = typename decltype(tag)::type;
    MDN_LAUNCH(rm_fwd_kernel<Tag>, grid, block, 0, stream)(a);
  });
  if (dt_status != kOk) return dt_status;
  return launch_status();
}

int routed_merge_bwd_cuda(const RoutedMergeBwdArgs& a, cudaStream_t stream) {
  if (!grid_ok(a.B, a.K, a.D) || a.T < 1) return kBadSize;
  const dim3 grid(static_cast<unsigned>(a.B * a.K)), block(kThreads);
  const int64_t n = a.K * 2 * a.D;
  const dim3 grid2(static_cast<unsigned>((n + kThreads - 1) / kThreads)), block2(kThreads);
  int st = kOk;
  const int dt_status = dispatch_dtype(a.dtype, [&](auto tag) {
    using Tag = typename decltype(tag)::type;
    MDN_LAUNCH(rm_bwd_rows_kernel<Tag>, grid, block, 0, stream)(a);
    st = launch_status();
    if (st != kOk) return;
    // The router gradient reads only accumulation-type scratch: one kernel per accumulation type.
    MDN_LAUNCH(rm_bwd_router_kernel<typename Scalar<Tag>::acc>, grid2, block2, 0, stream)(a);
    st = launch_status();
  });
  return dt_status != kOk ? dt_status : st;
}

}  // namespace mdn
