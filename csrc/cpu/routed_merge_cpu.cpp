// Host routed_merge: one task per clip b visits the clip's rows (t, k) in memory order (t outer, k inner)
// for the pooling of every entity, applies the routers and writes the merged rows in a second pass over
// the same rows (the clip's block, still in cache). The backward does the same per clip and keeps the
// per-(b, k) router gradients in scratch; the weight / bias gradients are then summed over b in a fixed
// order (deterministic). The per-clip loops are compiled per x86 ISA level (cpu_math.h: MDN_CPU_CLONES).
#include "routed_merge_cpu.h"

#include <algorithm>
#include <vector>

#include "../common/router_math.h"
#include "cpu_math.h"

namespace mdn {
namespace {

template <typename Tag> using St = typename Scalar<Tag>::storage;

// acc[d] += row[d * stride] for d < D.
template <typename Tag, typename A> inline void add_row(const St<Tag>* row, int64_t sd, int64_t D, A* acc) {
  if (sd == 1)
    for (int64_t d = 0; d < D; ++d) acc[d] += Scalar<Tag>::load(row[d]);
  else
    for (int64_t d = 0; d < D; ++d) acc[d] += Scalar<Tag>::load(row[d * sd]);
}

template <typename Tag, typename A> inline A dot_row(const St<Tag>* x, int64_t sx, const St<Tag>* y, int64_t sy,
                                                     int64_t D) {
  A acc[8] = {};
  int64_t d = 0;
  if (sx == 1 && sy == 1) {
    for (; d + 8 <= D; d += 8)
      for (int l = 0; l < 8; ++l) acc[l] += Scalar<Tag>::load(x[d + l]) * Scalar<Tag>::load(y[d + l]);
  }
  for (; d < D; ++d) acc[0] += Scalar<Tag>::load(x[d * sx]) * Scalar<Tag>::load(y[d * sy]);
  A s = 0;
  for (int l = 0; l < 8; ++l) s += acc[l];
  return s;
}

template <typename A> inline A dot(const A* x, const A* y, int64_t D) {
  A acc[8] = {};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8)
    for (int l = 0; l < 8; ++l) acc[l] += x[d + l] * y[d + l];
  for (; d < D; ++d) acc[0] += x[d] * y[d];
  A s = 0;
  for (int l = 0; l < 8; ++l) s += acc[l];
  return s;
}

inline bool frame_on(const uint8_t* mask, const Strides3& sm, int64_t b, int64_t t, int64_t k) {
  return mask ? mask[b * sm.b + t * sm.t + k * sm.k] != 0 : true;
}

template <typename Tag> void fwd_clips(const RoutedMergeFwdArgs& a, int64_t begin, int64_t end) {
  using T = St<Tag>;
  using A = typename Scalar<Tag>::acc;
  const int64_t Tn = a.T, K = a.K, D = a.D;
  const T* xs = static_cast<const T*>(a.x_st);
  const T* xt = static_cast<const T*>(a.x_ts);
  const A* w = static_cast<const A*>(a.weight);
  const A* bias = static_cast<const A*>(a.bias);
  T* y = static_cast<T*>(a.y);
  A* alpha = static_cast<A*>(a.alpha);
  const A tau = static_cast<A>(a.tau);
  std::vector<A> pooled(K * 2 * D), a01(2 * K);
  std::vector<int64_t> present(K);
  for (int64_t b = begin; b < end; ++b) {
    std::fill(pooled.begin(), pooled.end(), A(0));
    std::fill(present.begin(), present.end(), int64_t(0));
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        if (!frame_on(a.mask, a.sm, b, t, k)) continue;
        ++present[k];
        A* pk = pooled.data() + k * 2 * D;
        add_row<Tag>(xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k, a.s_st.d, D, pk);
        add_row<Tag>(xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k, a.s_ts.d, D, pk + D);
      }
    for (int64_t k = 0; k < K; ++k) {
      A* pk = pooled.data() + k * 2 * D;
      const A inv = inv_count<A>(present[k]);
      for (int64_t c = 0; c < 2 * D; ++c) pk[c] *= inv;
      const A* wk = w + k * 4 * D;  // weight[k] is [2, 2D]
      const A l0 = bias[2 * k] + dot(wk, pk, 2 * D);
      const A l1 = bias[2 * k + 1] + dot(wk + 2 * D, pk, 2 * D);
      router_softmax(l0, l1, tau, a01[2 * k], a01[2 * k + 1]);
      alpha[2 * (b * K + k)] = a01[2 * k];
      alpha[2 * (b * K + k) + 1] = a01[2 * k + 1];
    }
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const A a0 = a01[2 * k], a1 = a01[2 * k + 1];
        const T* rs = xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k;
        const T* rt = xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k;
        T* dst = y + ((b * Tn + t) * K + k) * D;
        if (a.s_st.d == 1 && a.s_ts.d == 1)
          for (int64_t d = 0; d < D; ++d)
            dst[d] = Scalar<Tag>::store(a0 * Scalar<Tag>::load(rs[d]) + a1 * Scalar<Tag>::load(rt[d]));
        else
          for (int64_t d = 0; d < D; ++d)
            dst[d] = Scalar<Tag>::store(a0 * Scalar<Tag>::load(rs[d * a.s_st.d]) +
                                        a1 * Scalar<Tag>::load(rt[d * a.s_ts.d]));
      }
  }
}

// Backward phase 1, per clip: pooled inputs, gradient of alpha, of the logits, of the pooled means, of x.
template <typename Tag> void bwd_clips(const RoutedMergeBwdArgs& a, int64_t begin, int64_t end) {
  using T = St<Tag>;
  using A = typename Scalar<Tag>::acc;
  const int64_t Tn = a.T, K = a.K, D = a.D;
  const T* xs = static_cast<const T*>(a.x_st);
  const T* xt = static_cast<const T*>(a.x_ts);
  const T* dy = static_cast<const T*>(a.dy);
  const A* w = static_cast<const A*>(a.weight);
  const A* alpha = static_cast<const A*>(a.alpha);
  const A* dalpha = static_cast<const A*>(a.dalpha);
  T* dxs = static_cast<T*>(a.dx_st);
  T* dxt = static_cast<T*>(a.dx_ts);
  A* dlogits = static_cast<A*>(a.scratch_dlogits);  // [B, K, 2]
  A* pooled_all = static_cast<A*>(a.scratch_pooled);  // [B, K, 2D]
  const A tau = static_cast<A>(a.tau);
  std::vector<A> dpooled(K * 2 * D), dA(2 * K);
  std::vector<int64_t> present(K);
  for (int64_t b = begin; b < end; ++b) {
    A* pooled = pooled_all + b * K * 2 * D;
    std::fill(pooled, pooled + K * 2 * D, A(0));
    std::fill(present.begin(), present.end(), int64_t(0));
    for (int64_t c = 0; c < 2 * K; ++c) dA[c] = dalpha ? dalpha[2 * b * K + c] : A(0);
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const T* rs = xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k;
        const T* rt = xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k;
        const T* rg = dy + b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k;
        dA[2 * k] += dot_row<Tag, A>(rg, a.s_dy.d, rs, a.s_st.d, D);  // y = a0 x_st + a1 x_ts at every t
        dA[2 * k + 1] += dot_row<Tag, A>(rg, a.s_dy.d, rt, a.s_ts.d, D);
        if (frame_on(a.mask, a.sm, b, t, k)) {
          ++present[k];
          add_row<Tag>(rs, a.s_st.d, D, pooled + k * 2 * D);
          add_row<Tag>(rt, a.s_ts.d, D, pooled + k * 2 * D + D);
        }
      }
    for (int64_t k = 0; k < K; ++k) {
      A* pk = pooled + k * 2 * D;
      const A inv = inv_count<A>(present[k]);
      for (int64_t c = 0; c < 2 * D; ++c) pk[c] *= inv;
      const int64_t task = b * K + k;
      const A a0 = alpha[2 * task], a1 = alpha[2 * task + 1];
      A dl0, dl1;
      router_softmax_bwd(a0, a1, dA[2 * k], dA[2 * k + 1], tau, dl0, dl1);
      dlogits[2 * task] = dl0;
      dlogits[2 * task + 1] = dl1;
      const A* wk = w + k * 4 * D;
      A* dpk = dpooled.data() + k * 2 * D;
      for (int64_t c = 0; c < 2 * D; ++c) dpk[c] = (dl0 * wk[c] + dl1 * wk[2 * D + c]) * inv;
    }
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t task = b * K + k;
        const A a0 = alpha[2 * task], a1 = alpha[2 * task + 1];
        const T* rg = dy + b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k;
        const int64_t o = ((b * Tn + t) * K + k) * D;
        const A m = frame_on(a.mask, a.sm, b, t, k) ? A(1) : A(0);  // the mean's gradient: present frames only
        const A* dpk = dpooled.data() + k * 2 * D;
        if (a.s_dy.d == 1)
          for (int64_t d = 0; d < D; ++d) {
            const A g = Scalar<Tag>::load(rg[d]);
            dxs[o + d] = Scalar<Tag>::store(a0 * g + m * dpk[d]);
            dxt[o + d] = Scalar<Tag>::store(a1 * g + m * dpk[D + d]);
          }
        else
          for (int64_t d = 0; d < D; ++d) {
            const A g = Scalar<Tag>::load(rg[d * a.s_dy.d]);
            dxs[o + d] = Scalar<Tag>::store(a0 * g + m * dpk[d]);
            dxt[o + d] = Scalar<Tag>::store(a1 * g + m * dpk[D + d]);
          }
      }
  }
}

// Backward phase 2, per entity k: dweight[k, j, :] = sum_b dlogits[b, k, j] pooled[b, k, :], dbias
// likewise; b runs in order, so the result does not depend on the thread count.
template <typename Tag> void bwd_weights(const RoutedMergeBwdArgs& a, int64_t begin, int64_t end) {
  using A = typename Scalar<Tag>::acc;
  const int64_t B = a.B, K = a.K, D = a.D;
  A* dw = static_cast<A*>(a.dweight);
  A* dbias = static_cast<A*>(a.dbias);
  const A* dlogits = static_cast<const A*>(a.scratch_dlogits);
  const A* pooled_all = static_cast<const A*>(a.scratch_pooled);
  for (int64_t k = begin; k < end; ++k) {
    A* dwk = dw + k * 4 * D;
    std::fill(dwk, dwk + 4 * D, A(0));
    A db0 = 0, db1 = 0;
    for (int64_t b = 0; b < B; ++b) {
      const A dl0 = dlogits[2 * (b * K + k)], dl1 = dlogits[2 * (b * K + k) + 1];
      const A* pooled = pooled_all + (b * K + k) * 2 * D;
      db0 += dl0;
      db1 += dl1;
      for (int64_t c = 0; c < 2 * D; ++c) {
        dwk[c] += dl0 * pooled[c];
        dwk[2 * D + c] += dl1 * pooled[c];
      }
    }
    dbias[2 * k] = db0;
    dbias[2 * k + 1] = db1;
  }
}

#define MDN_RANGE_FN(name, impl, Args, Tag) \
  MDN_CPU_CLONES void name(const Args& a, int64_t b, int64_t e) { impl<Tag>(a, b, e); }
MDN_RANGE_FN(fwd_f32, fwd_clips, RoutedMergeFwdArgs, float)
MDN_RANGE_FN(fwd_f64, fwd_clips, RoutedMergeFwdArgs, double)
MDN_RANGE_FN(fwd_f16, fwd_clips, RoutedMergeFwdArgs, Half16)
MDN_RANGE_FN(fwd_bf16, fwd_clips, RoutedMergeFwdArgs, BFloat16)
MDN_RANGE_FN(bwd_f32, bwd_clips, RoutedMergeBwdArgs, float)
MDN_RANGE_FN(bwd_f64, bwd_clips, RoutedMergeBwdArgs, double)
MDN_RANGE_FN(bwd_f16, bwd_clips, RoutedMergeBwdArgs, Half16)
MDN_RANGE_FN(bwd_bf16, bwd_clips, RoutedMergeBwdArgs, BFloat16)
MDN_RANGE_FN(dw_f32, bwd_weights, RoutedMergeBwdArgs, float)
MDN_RANGE_FN(dw_f64, bwd_weights, RoutedMergeBwdArgs, double)
MDN_RANGE_FN(dw_f16, bwd_weights, RoutedMergeBwdArgs, Half16)
MDN_RANGE_FN(dw_bf16, bwd_weights, RoutedMergeBwdArgs, BFloat16)
#undef MDN_RANGE_FN

template <typename Args> using RangeFn = void (*)(const Args&, int64_t, int64_t);

template <typename Args> RangeFn<Args> pick(DType t, RangeFn<Args> f32, RangeFn<Args> f64, RangeFn<Args> f16,
                                            RangeFn<Args> bf16) {
  switch (t) {
    case DType::Float32: return f32;
    case DType::Float64: return f64;
    case DType::Float16: return f16;
    case DType::BFloat16: return bf16;
  }
  return nullptr;
}

bool sizes_ok(const RoutedMergeFwdArgs& a) { return a.B >= 1 && a.T >= 1 && a.K >= 1 && a.D >= 1; }
bool sizes_ok(const RoutedMergeBwdArgs& a) { return a.B >= 1 && a.T >= 1 && a.K >= 1 && a.D >= 1; }

}  // namespace

int routed_merge_fwd_cpu(const RoutedMergeFwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a)) return kBadSize;
  const auto fn = pick<RoutedMergeFwdArgs>(a.dtype, fwd_f32, fwd_f64, fwd_f16, fwd_bf16);
  if (!fn) return kBadDType;
  pf(0, a.B, 1, [&](int64_t b, int64_t e) { fn(a, b, e); });
  return kOk;
}

int routed_merge_bwd_cpu(const RoutedMergeBwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a)) return kBadSize;
  const auto fn = pick<RoutedMergeBwdArgs>(a.dtype, bwd_f32, bwd_f64, bwd_f16, bwd_bf16);
  const auto dw = pick<RoutedMergeBwdArgs>(a.dtype, dw_f32, dw_f64, dw_f16, dw_bf16);
  if (!fn || !dw) return kBadDType;
  pf(0, a.B, 1, [&](int64_t b, int64_t e) { fn(a, b, e); });
  pf(0, a.K, 1, [&](int64_t b, int64_t e) { dw(a, b, e); });
  return kOk;
}

}  // namespace mdn
