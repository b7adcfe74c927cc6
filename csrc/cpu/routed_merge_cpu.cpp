// Host routed_merge: one task per (b, k) reads that entity's T rows of both paths for the pooling,
// applies the router and writes the merged rows (a second read of the same rows, still in cache).
// The backward does the same per (b, k) and keeps the per-(b, k) router gradients in scratch; the
// weight / bias gradients are then summed over b in a fixed order (deterministic).
#include "routed_merge_cpu.h"

#include <algorithm>
#include <vector>

#include "../common/router_math.h"

namespace mdn {
namespace {

template <typename Tag> using St = typename Scalar<Tag>::storage;

inline int64_t present_frames(const uint8_t* mask, const Strides3& sm, int64_t b, int64_t k, int64_t T,
                              uint8_t* ok) {
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t) {
    ok[t] = mask ? mask[b * sm.b + t * sm.t + k * sm.k] != 0 : 1;
    n += ok[t];
  }
  return n;
}

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

template <typename Tag> void fwd_impl(const RoutedMergeFwdArgs& a, const ParallelFor& parallel_for) {
  using T = St<Tag>;
  using A = typename Scalar<Tag>::acc;
  const int64_t B = a.B, Tn = a.T, K = a.K, D = a.D;
  const T* xs = static_cast<const T*>(a.x_st);
  const T* xt = static_cast<const T*>(a.x_ts);
  const A* w = static_cast<const A*>(a.weight);
  const A* bias = static_cast<const A*>(a.bias);
  T* y = static_cast<T*>(a.y);
  A* alpha = static_cast<A*>(a.alpha);
  const A tau = static_cast<A>(a.tau);

  parallel_for(0, B * K, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> pooled(2 * D);
    std::vector<uint8_t> ok(Tn);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / K, k = task % K;
      const int64_t present = present_frames(a.mask, a.sm, b, k, Tn, ok.data());
      std::fill(pooled.begin(), pooled.end(), A(0));
      for (int64_t t = 0; t < Tn; ++t) {
        if (!ok[t]) continue;
        add_row<Tag>(xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k, a.s_st.d, D, pooled.data());
        add_row<Tag>(xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k, a.s_ts.d, D, pooled.data() + D);
      }
      const A inv = inv_count<A>(present);
      for (int64_t c = 0; c < 2 * D; ++c) pooled[c] *= inv;
      const A* wk = w + k * 4 * D;  // weight[k] is [2, 2D]
      const A l0 = bias[2 * k] + dot(wk, pooled.data(), 2 * D);
      const A l1 = bias[2 * k + 1] + dot(wk + 2 * D, pooled.data(), 2 * D);
      A a0, a1;
      router_softmax(l0, l1, tau, a0, a1);
      alpha[2 * task] = a0;
      alpha[2 * task + 1] = a1;
      for (int64_t t = 0; t < Tn; ++t) {
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
  });
}

template <typename Tag> void bwd_impl(const RoutedMergeBwdArgs& a, const ParallelFor& parallel_for) {
  using T = St<Tag>;
  using A = typename Scalar<Tag>::acc;
  const int64_t B = a.B, Tn = a.T, K = a.K, D = a.D;
  const T* xs = static_cast<const T*>(a.x_st);
  const T* xt = static_cast<const T*>(a.x_ts);
  const T* dy = static_cast<const T*>(a.dy);
  const A* w = static_cast<const A*>(a.weight);
  const A* alpha = static_cast<const A*>(a.alpha);
  const A* dalpha = static_cast<const A*>(a.dalpha);
  T* dxs = static_cast<T*>(a.dx_st);
  T* dxt = static_cast<T*>(a.dx_ts);
  A* dw = static_cast<A*>(a.dweight);
  A* dbias = static_cast<A*>(a.dbias);
  A* dlogits = static_cast<A*>(a.scratch_dlogits);  // [B, K, 2]
  A* pooled_all = static_cast<A*>(a.scratch_pooled);  // [B, K, 2D]
  const A tau = static_cast<A>(a.tau);

  // Phase 1, per (b, k): pooled inputs, gradient of alpha, of the logits, of the pooled means, of x.
  parallel_for(0, B * K, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> dpooled(2 * D);
    std::vector<uint8_t> ok(Tn);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / K, k = task % K;
      const int64_t present = present_frames(a.mask, a.sm, b, k, Tn, ok.data());
      A* pooled = pooled_all + task * 2 * D;
      std::fill(pooled, pooled + 2 * D, A(0));
      A dA0 = dalpha ? dalpha[2 * task] : A(0), dA1 = dalpha ? dalpha[2 * task + 1] : A(0);
      for (int64_t t = 0; t < Tn; ++t) {
        const T* rs = xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k;
        const T* rt = xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k;
        const T* rg = dy + b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k;
        dA0 += dot_row<Tag, A>(rg, a.s_dy.d, rs, a.s_st.d, D);  // y = a0 x_st + a1 x_ts at every t
        dA1 += dot_row<Tag, A>(rg, a.s_dy.d, rt, a.s_ts.d, D);
        if (ok[t]) {
          add_row<Tag>(rs, a.s_st.d, D, pooled);
          add_row<Tag>(rt, a.s_ts.d, D, pooled + D);
        }
      }
      const A inv = inv_count<A>(present);
      for (int64_t c = 0; c < 2 * D; ++c) pooled[c] *= inv;
      const A a0 = alpha[2 * task], a1 = alpha[2 * task + 1];
      A dl0, dl1;
      router_softmax_bwd(a0, a1, dA0, dA1, tau, dl0, dl1);
      dlogits[2 * task] = dl0;
      dlogits[2 * task + 1] = dl1;
      const A* wk = w + k * 4 * D;
      for (int64_t c = 0; c < 2 * D; ++c) dpooled[c] = (dl0 * wk[c] + dl1 * wk[2 * D + c]) * inv;
      for (int64_t t = 0; t < Tn; ++t) {
        const T* rg = dy + b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k;
        const int64_t o = ((b * Tn + t) * K + k) * D;
        const A m = ok[t] ? A(1) : A(0);  // the mean's gradient reaches present frames only
        for (int64_t d = 0; d < D; ++d) {
          const A g = Scalar<Tag>::load(rg[d * a.s_dy.d]);
          dxs[o + d] = Scalar<Tag>::store(a0 * g + m * dpooled[d]);
          dxt[o + d] = Scalar<Tag>::store(a1 * g + m * dpooled[D + d]);
        }
      }
    }
  });

  // Phase 2, per entity k: dweight[k, j, :] = sum_b dlogits[b, k, j] pooled[b, k, :], dbias likewise;
  // b runs in order, so the result does not depend on the thread count.
  parallel_for(0, K, 1, [&](int64_t begin, int64_t end) {
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
  });
}

bool sizes_ok(const RoutedMergeFwdArgs& a) { return a.B >= 1 && a.T >= 1 && a.K >= 1 && a.D >= 1; }
bool sizes_ok(const RoutedMergeBwdArgs& a) { return a.B >= 1 && a.T >= 1 && a.K >= 1 && a.D >= 1; }

}  // namespace

int routed_merge_fwd_cpu(const RoutedMergeFwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a)) return kBadSize;
  switch (a.dtype) {
    case DType::Float32: fwd_impl<float>(a, pf); return kOk;
    case DType::Float64: fwd_impl<double>(a, pf); return kOk;
    case DType::Float16: fwd_impl<Half16>(a, pf); return kOk;
    case DType::BFloat16: fwd_impl<BFloat16>(a, pf); return kOk;
  }
  return kBadDType;
}

int routed_merge_bwd_cpu(const RoutedMergeBwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a)) return kBadSize;
  switch (a.dtype) {
    case DType::Float32: bwd_impl<float>(a, pf); return kOk;
    case DType::Float64: bwd_impl<double>(a, pf); return kOk;
    case DType::Float16: bwd_impl<Half16>(a, pf); return kOk;
    case DType::BFloat16: bwd_impl<BFloat16>(a, pf); return kOk;
  }
  return kBadDType;
}

}  // namespace mdn
