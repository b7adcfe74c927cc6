// Host routed_merge: one task per clip b visits the clip's rows (t, k) in memory order (t outer, k inner)
// for the pooling of every entity, applies the routers and writes the merged rows in a second pass over
// the same rows (the clip's block, still in cache). The backward does the same per clip and keeps the
// per-(b, k) router gradients in scratch; the weight / bias gradients are then summed over b in a fixed
// order (deterministic). The per-clip loops are compiled per x86 ISA level (cpu_math.h: MDN_CPU_CLONES).
#include "routed_merge_cpu.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

#include "../common/router_math.h"
#include "cpu_math.h"
#include "vec8.h"

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

// ---- fp32 fast path: every row contiguous along d and D a multiple of 8 (the usual case). One fused
// Vec8 loop per row does all the work of a pass; large outputs (y, dx_st, dx_ts) are written with
// non-temporal stores: they are not read again by this op, and streaming them saves the
// read-for-ownership of every output line (a quarter of the forward's memory traffic). The write pass
// of clip b also prefetches clip b + 1's rows into L2, so the reads overlap the writes.

typedef float F4 __attribute__((vector_size(16)));

// Stores v at p; stream: p is 16-byte aligned and the line should bypass the caches.
inline void put8(float* p, const Vec8<float>& v, bool stream) {
#if defined(__SSE2__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12))
  if (stream) {
    const F4 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3);
    const F4 hi = __builtin_shufflevector(v, v, 4, 5, 6, 7);
    _mm_stream_ps(p, (__m128)lo);
    _mm_stream_ps(p + 4, (__m128)hi);
    return;
  }
#endif
  (void)stream;
  store8(p, v);
}

// Orders this thread's streaming stores before the caller's next use of the outputs.
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

inline float hsum8(const Vec8<float>& v) {
  float s = 0;
  for (int l = 0; l < kVec; ++l) s += v[l];
  return s;
}

// Prefetch the cache lines of one row of D floats into L2 (the next clip's rows, fetched while the
// current clip's write pass keeps the core busy with cache hits and streaming stores).
inline void prefetch_row_l2(const float* row, int64_t D) {
  for (int64_t d = 0; d < D; d += 16) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    asm volatile("prefetcht1 %0" : : "m"(*reinterpret_cast<const char*>(row + d)));
#else
    __builtin_prefetch(row + d, 0, 2);
#endif
  }
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Outputs at least this large (bytes, each) are streamed: well past a core's L2, so a consumer would
// mostly miss anyway; smaller ones are stored normally and stay cached for the next op.
constexpr int64_t kStreamMinBytes = int64_t(4) << 20;

template <typename Args> bool stream_outputs(const Args& a) {
  return a.B * a.T * a.K * a.D * int64_t(sizeof(float)) >= kStreamMinBytes && a.D % 4 == 0;
}

template <typename Args> bool fast_f32(const Args& a) {
  return a.dtype == DType::Float32 && a.D % kVec == 0 && a.s_st.d == 1 && a.s_ts.d == 1;
}

void fwd_clips_f32(const RoutedMergeFwdArgs& a, int64_t begin, int64_t end) {
  using V = Vec8<float>;
  const int64_t Tn = a.T, K = a.K, D = a.D;
  const float* xs = static_cast<const float*>(a.x_st);
  const float* xt = static_cast<const float*>(a.x_ts);
  const float* w = static_cast<const float*>(a.weight);
  const float* bias = static_cast<const float*>(a.bias);
  float* y = static_cast<float*>(a.y);
  float* alpha = static_cast<float*>(a.alpha);
  const float tau = static_cast<float>(a.tau);
  const bool stream = stream_outputs(a) && aligned16(y);  // D % 4 == 0: every row starts aligned too
  std::vector<float> pooled(K * 2 * D), a01(2 * K);
  std::vector<int64_t> present(K);
  for (int64_t b = begin; b < end; ++b) {
    std::fill(pooled.begin(), pooled.end(), 0.0f);
    std::fill(present.begin(), present.end(), int64_t(0));
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        if (!frame_on(a.mask, a.sm, b, t, k)) continue;
        ++present[k];
        const float* rs = xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k;
        const float* rt = xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k;
        float* ps = pooled.data() + k * 2 * D;
        float* pt = ps + D;
        for (int64_t d = 0; d < D; d += kVec) {
          store8(ps + d, load8(ps + d) + load8(rs + d));
          store8(pt + d, load8(pt + d) + load8(rt + d));
        }
      }
    for (int64_t k = 0; k < K; ++k) {
      float* pk = pooled.data() + k * 2 * D;
      const float inv = inv_count<float>(present[k]);
      const float* wk = w + k * 4 * D;  // weight[k] is [2, 2D]
      V s0{}, s1{};
      for (int64_t c = 0; c < 2 * D; c += kVec) {
        const V p = load8(pk + c) * inv;
        s0 += load8(wk + c) * p;
        s1 += load8(wk + 2 * D + c) * p;
      }
      const float l0 = bias[2 * k] + hsum8(s0);
      const float l1 = bias[2 * k + 1] + hsum8(s1);
      router_softmax(l0, l1, tau, a01[2 * k], a01[2 * k + 1]);
      alpha[2 * (b * K + k)] = a01[2 * k];
      alpha[2 * (b * K + k) + 1] = a01[2 * k + 1];
    }
    const bool pf_next = b + 1 < end;
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const V a0 = splat8(a01[2 * k]), a1 = splat8(a01[2 * k + 1]);
        const float* rs = xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k;
        const float* rt = xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k;
        float* dst = y + ((b * Tn + t) * K + k) * D;
        if (pf_next) {
          prefetch_row_l2(rs + a.s_st.b, D);
          prefetch_row_l2(rt + a.s_ts.b, D);
        }
        for (int64_t d = 0; d < D; d += kVec) put8(dst + d, a0 * load8(rs + d) + a1 * load8(rt + d), stream);
      }
  }
  stream_fence();
}

void bwd_clips_f32(const RoutedMergeBwdArgs& a, int64_t begin, int64_t end) {
  using V = Vec8<float>;
  const int64_t Tn = a.T, K = a.K, D = a.D;
  const float* xs = static_cast<const float*>(a.x_st);
  const float* xt = static_cast<const float*>(a.x_ts);
  const float* dy = static_cast<const float*>(a.dy);
  const float* w = static_cast<const float*>(a.weight);
  const float* alpha = static_cast<const float*>(a.alpha);
  const float* dalpha = static_cast<const float*>(a.dalpha);
  float* dxs = static_cast<float*>(a.dx_st);
  float* dxt = static_cast<float*>(a.dx_ts);
  float* dlogits = static_cast<float*>(a.scratch_dlogits);  // [B, K, 2]
  float* pooled_all = static_cast<float*>(a.scratch_pooled);  // [B, K, 2D]
  const float tau = static_cast<float>(a.tau);
  const bool stream = stream_outputs(a) && aligned16(dxs) && aligned16(dxt);
  std::vector<float> dpooled(K * 2 * D), dA(2 * K);
  std::vector<int64_t> present(K);
  for (int64_t b = begin; b < end; ++b) {
    float* pooled = pooled_all + b * K * 2 * D;
    std::fill(pooled, pooled + K * 2 * D, 0.0f);
    std::fill(present.begin(), present.end(), int64_t(0));
    for (int64_t c = 0; c < 2 * K; ++c) dA[c] = dalpha ? dalpha[2 * b * K + c] : 0.0f;
    // Pass 1: one fused loop per row: the two dots of dy with the inputs (y = a0 x_st + a1 x_ts at
    // every t) and the pooling of present frames.
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const float* rs = xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k;
        const float* rt = xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k;
        const float* rg = dy + b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k;
        float* ps = pooled + k * 2 * D;
        float* pt = ps + D;
        V g0{}, g1{};
        if (frame_on(a.mask, a.sm, b, t, k)) {
          ++present[k];
          for (int64_t d = 0; d < D; d += kVec) {
            const V s = load8(rs + d), u = load8(rt + d), g = load8(rg + d);
            g0 += g * s;
            g1 += g * u;
            store8(ps + d, load8(ps + d) + s);
            store8(pt + d, load8(pt + d) + u);
          }
        } else {
          for (int64_t d = 0; d < D; d += kVec) {
            const V g = load8(rg + d);
            g0 += g * load8(rs + d);
            g1 += g * load8(rt + d);
          }
        }
        dA[2 * k] += hsum8(g0);
        dA[2 * k + 1] += hsum8(g1);
      }
    for (int64_t k = 0; k < K; ++k) {
      float* pk = pooled + k * 2 * D;
      const float inv = inv_count<float>(present[k]);
      const int64_t task = b * K + k;
      const float a0 = alpha[2 * task], a1 = alpha[2 * task + 1];
      float dl0, dl1;
      router_softmax_bwd(a0, a1, dA[2 * k], dA[2 * k + 1], tau, dl0, dl1);
      dlogits[2 * task] = dl0;
      dlogits[2 * task + 1] = dl1;
      const float* wk = w + k * 4 * D;
      float* dpk = dpooled.data() + k * 2 * D;
      const V vd0 = splat8(dl0 * inv), vd1 = splat8(dl1 * inv);
      for (int64_t c = 0; c < 2 * D; c += kVec) {
        store8(pk + c, load8(pk + c) * inv);
        store8(dpk + c, vd0 * load8(wk + c) + vd1 * load8(wk + 2 * D + c));
      }
    }
    // Pass 2: dx from dy (the clip's block of dy is still in L2) and the pooled means' gradient.
    const bool pf_next = b + 1 < end;
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t task = b * K + k;
        const V a0 = splat8(alpha[2 * task]), a1 = splat8(alpha[2 * task + 1]);
        const float* rg = dy + b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k;
        const int64_t o = ((b * Tn + t) * K + k) * D;
        const float* dps = dpooled.data() + k * 2 * D;
        const float* dpt = dps + D;
        if (pf_next) {
          prefetch_row_l2(xs + (b + 1) * a.s_st.b + t * a.s_st.t + k * a.s_st.k, D);
          prefetch_row_l2(xt + (b + 1) * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k, D);
          prefetch_row_l2(rg + a.s_dy.b, D);
        }
        if (frame_on(a.mask, a.sm, b, t, k))
          for (int64_t d = 0; d < D; d += kVec) {
            const V g = load8(rg + d);
            put8(dxs + o + d, a0 * g + load8(dps + d), stream);
            put8(dxt + o + d, a1 * g + load8(dpt + d), stream);
          }
        else  // the mean's gradient reaches present frames only
          for (int64_t d = 0; d < D; d += kVec) {
            const V g = load8(rg + d);
            put8(dxs + o + d, a0 * g, stream);
            put8(dxt + o + d, a1 * g, stream);
          }
      }
  }
  stream_fence();
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
MDN_CPU_CLONES void fwd_f32_fast(const RoutedMergeFwdArgs& a, int64_t b, int64_t e) { fwd_clips_f32(a, b, e); }
MDN_CPU_CLONES void bwd_f32_fast(const RoutedMergeBwdArgs& a, int64_t b, int64_t e) { bwd_clips_f32(a, b, e); }

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
  const auto fn = fast_f32(a) ? fwd_f32_fast : pick<RoutedMergeFwdArgs>(a.dtype, fwd_f32, fwd_f64, fwd_f16, fwd_bf16);
  if (!fn) return kBadDType;
  pf(0, a.B, 1, [&](int64_t b, int64_t e) { fn(a, b, e); });
  return kOk;
}

int routed_merge_bwd_cpu(const RoutedMergeBwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a)) return kBadSize;
  const auto fn = fast_f32(a) && a.s_dy.d == 1 ? bwd_f32_fast
                                               : pick<RoutedMergeBwdArgs>(a.dtype, bwd_f32, bwd_f64, bwd_f16, bwd_bf16);
  const auto dw = pick<RoutedMergeBwdArgs>(a.dtype, dw_f32, dw_f64, dw_f16, dw_bf16);
  if (!fn || !dw) return kBadDType;
  pf(0, a.B, 1, [&](int64_t b, int64_t e) { fn(a, b, e); });
  pf(0, a.K, 1, [&](int64_t b, int64_t e) { dw(a, b, e); });
  return kOk;
}

}  // namespace mdn
