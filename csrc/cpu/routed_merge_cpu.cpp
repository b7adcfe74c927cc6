// Host routed_merge: one task per clip b visits the clip's rows (t, k) in memory order (t outer, k inner)
// for the pooling of every entity, applies the routers and writes the merged rows in a second pass over
// the same rows (the clip's block, still in cache). The backward does the same per clip and keeps the
// per-(b, k) router gradients in scratch; the weight / bias gradients are then summed over b in a fixed
// order (deterministic). The per-clip loops are compiled per x86 ISA level (cpu_math.h: MDN_CPU_CLONES).
//
// One template serves every dtype and layout; a row policy (`Rows`, below) says how the rows reach its
// vector loops, as the attention kernel's in-place / gathered rows do:
//   direct   (storage type = accumulation type, unit feature stride, D % kVec == 0: the usual fp32 and
//            fp64 case): rows are read and written in place, and large fp32 outputs are streamed;
//   convert  (fp16 / bf16, strided features, or D % kVec != 0): each row is converted into a zero-padded
//            accumulation-type buffer of Dp = round_up(D, kVec) elements, output rows are computed into a
//            buffer and narrowed; the routers are read from a copy padded the same way.
// Both run the same Vec8 loops, so the fp32 fast path and the generic path cannot drift apart.
//
// Loop heads are aligned to 64 bytes in this file (GCC). The kernels' loops are short and run about 10^6
// times per call, and with GCC 12's default alignment the fp32 backward's speed depended on where the
// code landed: the same machine code as the older fp32 fast path (callgrind: 2 % fewer instructions)
// ran 1.01-1.30x its time depending on placement (B=256 T=8 K=6 D=256, one thread, AVX-512 clone;
// tools/cpu_kernel_ab.py), and the extension as built was on the slow side. Aligned: 1.02-1.05x in
// every placement. Set before the includes so that every function of this file, the inlined helpers
// included, gets the same options (GCC may refuse to inline across differing optimize options); here rather
// than in setup.py / CMakeLists.txt so that both builds get it and the other kernels are unchanged.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("align-loops=64")
#endif
#include "routed_merge_cpu.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
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

inline bool frame_on(const uint8_t* mask, const Strides3& sm, int64_t b, int64_t t, int64_t k) {
  return mask ? mask[b * sm.b + t * sm.t + k * sm.k] != 0 : true;
}

template <typename A> inline A hsum8(const Vec8<A>& v) {
  A s = 0;
  for (int l = 0; l < kVec; ++l) s += v[l];
  return s;
}

// Large outputs (y, dx_st, dx_ts) are written with non-temporal stores: they are not read again by this
// op, and streaming them saves the read-for-ownership of every output line (a quarter of the forward's
// memory traffic). Outputs at least this large (bytes, each) are streamed: well past a core's L2, so a
// consumer would mostly miss anyway; smaller ones are stored normally and stay cached for the next op.
constexpr int64_t kStreamMinBytes = int64_t(4) << 20;

typedef float F4 __attribute__((vector_size(16)));

// Stores v at p; stream (fp32 only): p is 16-byte aligned and the line should bypass the caches.
template <typename A> inline void put8(A* p, const Vec8<A>& v, bool /*stream*/) { store8(p, v); }
template <> inline void put8<float>(float* p, const Vec8<float>& v, bool stream) {
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

// Prefetch the cache lines of one row into L2 (the next clip's rows, fetched while the current clip's
// write pass keeps the core busy with cache hits and streaming stores). Strided rows are left alone.
template <typename T> inline void prefetch_row_l2(const T* row, int64_t sd, int64_t D) {
  if (sd != 1) return;
  const char* p = reinterpret_cast<const char*>(row);
  const int64_t bytes = D * static_cast<int64_t>(sizeof(T));
  for (int64_t o = 0; o < bytes; o += 64) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    asm volatile("prefetcht1 %0" : : "m"(*(p + o)));
#else
    __builtin_prefetch(p + o, 0, 2);
#endif
  }
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// ---- the row policy
template <typename Tag, bool kDirect> struct Rows {
  using T = typename Scalar<Tag>::storage;
  using A = typename Scalar<Tag>::acc;
  static_assert(!kDirect || std::is_same<T, A>::value, "direct rows need storage type = accumulation type");

  int64_t D, Dp;  // features; features padded to a multiple of kVec (= D when direct)
  bool stream;    // outputs streamed (fp32, large, aligned)

  Rows(int64_t d, bool large_aligned_outputs)
      : D(d), Dp(kDirect ? d : round_up(d, kVec)), stream(kDirect && std::is_same<A, float>::value &&
                                                          large_aligned_outputs && d % 4 == 0) {}

  // Row src (features at stride sd) as Dp accumulation-type values: in place, or converted into buf.
  const A* in(const T* src, int64_t sd, A* buf) const {
    if constexpr (kDirect) {
      (void)sd;
      (void)buf;
      return src;
    } else {
      if (sd == 1)
        for (int64_t d = 0; d < D; ++d) buf[d] = Scalar<Tag>::load(src[d]);
      else
        for (int64_t d = 0; d < D; ++d) buf[d] = Scalar<Tag>::load(src[d * sd]);
      for (int64_t d = D; d < Dp; ++d) buf[d] = A(0);
      return buf;
    }
  }
  // Where the vector loop writes output row dst (contiguous, D elements): dst itself, or buf.
  A* out(T* dst, A* buf) const {
    if constexpr (kDirect) {
      (void)buf;
      return dst;
    } else {
      (void)dst;
      return buf;
    }
  }
  void put(A* o, int64_t d, const Vec8<A>& v) const {
    if constexpr (kDirect)
      put8(o + d, v, stream);
    else
      store8(o + d, v);
  }
  // Finishes output row dst after the vector loop wrote o = out(dst, buf).
  void commit(T* dst, const A* o) const {
    if constexpr (!kDirect)
      for (int64_t d = 0; d < D; ++d) dst[d] = Scalar<Tag>::store(o[d]);
    else
      (void)dst, (void)o;
  }
  // The routers [K, 2, 2D] with each 2D half-row ([x_st part | x_ts part]) padded to [Dp | Dp], matching
  // the pooled rows: the weight itself when direct, else a padded copy in buf.
  const A* weights(const A* w, int64_t K, std::vector<A>& buf) const {
    if constexpr (kDirect) {
      (void)K;
      (void)buf;
      return w;
    } else {
      buf.assign(K * 4 * Dp, A(0));
      for (int64_t r = 0; r < 2 * K; ++r)  // r = (k, j)
        for (int64_t h = 0; h < 2; ++h)
          std::copy(w + r * 2 * D + h * D, w + r * 2 * D + h * D + D, buf.data() + r * 2 * Dp + h * Dp);
      return buf.data();
    }
  }
};

// Forward of clips [begin, end).
template <typename Tag, bool kDirect> void fwd_clips(const RoutedMergeFwdArgs& a, int64_t begin, int64_t end) {
  using R = Rows<Tag, kDirect>;
  using T = typename R::T;
  using A = typename R::A;
  using V = Vec8<A>;
  const T* xs = static_cast<const T*>(a.x_st);
  const T* xt = static_cast<const T*>(a.x_ts);
  const A* bias = static_cast<const A*>(a.bias);
  T* y = static_cast<T*>(a.y);
  A* alpha = static_cast<A*>(a.alpha);
  const A tau = static_cast<A>(a.tau);
  const R io(a.D, a.B * a.T * a.K * a.D * int64_t(sizeof(T)) >= kStreamMinBytes && aligned16(y));
  const int64_t Tn = a.T, K = a.K, D = a.D, Dp = io.Dp;
  std::vector<A> pooled(K * 2 * Dp), a01(2 * K), wbuf, bs(kDirect ? 0 : Dp), bt(kDirect ? 0 : Dp),
      bo(kDirect ? 0 : Dp);
  const A* w = io.weights(static_cast<const A*>(a.weight), K, wbuf);
  std::vector<int64_t> present(K);
  for (int64_t b = begin; b < end; ++b) {
    std::fill(pooled.begin(), pooled.end(), A(0));
    std::fill(present.begin(), present.end(), int64_t(0));
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        if (!frame_on(a.mask, a.sm, b, t, k)) continue;
        ++present[k];
        const A* rs = io.in(xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k, a.s_st.d, bs.data());
        const A* rt = io.in(xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k, a.s_ts.d, bt.data());
        A* ps = pooled.data() + k * 2 * Dp;
        A* pt = ps + Dp;
        for (int64_t d = 0; d < Dp; d += kVec) {
          store8(ps + d, load8(ps + d) + load8(rs + d));
          store8(pt + d, load8(pt + d) + load8(rt + d));
        }
      }
    for (int64_t k = 0; k < K; ++k) {
      const A* pk = pooled.data() + k * 2 * Dp;
      const A inv = inv_count<A>(present[k]);
      const A* wk = w + k * 4 * Dp;  // weight[k] is [2, 2D]
      V s0{}, s1{};
      for (int64_t c = 0; c < 2 * Dp; c += kVec) {
        const V p = load8(pk + c) * inv;
        s0 += load8(wk + c) * p;
        s1 += load8(wk + 2 * Dp + c) * p;
      }
      const A l0 = bias[2 * k] + hsum8<A>(s0);
      const A l1 = bias[2 * k + 1] + hsum8<A>(s1);
      router_softmax(l0, l1, tau, a01[2 * k], a01[2 * k + 1]);
      alpha[2 * (b * K + k)] = a01[2 * k];
      alpha[2 * (b * K + k) + 1] = a01[2 * k + 1];
    }
    const bool pf_next = b + 1 < end;
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const V a0 = splat8(a01[2 * k]), a1 = splat8(a01[2 * k + 1]);
        const T* xs_row = xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k;
        const T* xt_row = xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k;
        if (pf_next) {
          prefetch_row_l2(xs_row + a.s_st.b, a.s_st.d, D);
          prefetch_row_l2(xt_row + a.s_ts.b, a.s_ts.d, D);
        }
        const A* rs = io.in(xs_row, a.s_st.d, bs.data());
        const A* rt = io.in(xt_row, a.s_ts.d, bt.data());
        T* dst = y + ((b * Tn + t) * K + k) * D;
        A* o = io.out(dst, bo.data());
        for (int64_t d = 0; d < Dp; d += kVec) io.put(o, d, a0 * load8(rs + d) + a1 * load8(rt + d));
        io.commit(dst, o);
      }
  }
  if (io.stream) stream_fence();
}

// Backward phase 1, per clip: pooled inputs, gradient of alpha, of the logits, of the pooled means, of x.
template <typename Tag, bool kDirect> void bwd_clips(const RoutedMergeBwdArgs& a, int64_t begin, int64_t end) {
  using R = Rows<Tag, kDirect>;
  using T = typename R::T;
  using A = typename R::A;
  using V = Vec8<A>;
  const T* xs = static_cast<const T*>(a.x_st);
  const T* xt = static_cast<const T*>(a.x_ts);
  const T* dy = static_cast<const T*>(a.dy);
  const A* alpha = static_cast<const A*>(a.alpha);
  const A* dalpha = static_cast<const A*>(a.dalpha);
  T* dxs = static_cast<T*>(a.dx_st);
  T* dxt = static_cast<T*>(a.dx_ts);
  A* dlogits = static_cast<A*>(a.scratch_dlogits);    // [B, K, 2]
  A* pooled_all = static_cast<A*>(a.scratch_pooled);  // [B, K, 2D]
  const A tau = static_cast<A>(a.tau);
  const R io(a.D, a.B * a.T * a.K * a.D * int64_t(sizeof(T)) >= kStreamMinBytes && aligned16(dxs) &&
                      aligned16(dxt));
  const int64_t Tn = a.T, K = a.K, D = a.D, Dp = io.Dp;
  std::vector<A> dpooled(K * 2 * Dp), dA(2 * K), wbuf, padded(kDirect ? 0 : K * 2 * Dp), bs(kDirect ? 0 : Dp),
      bt(kDirect ? 0 : Dp), bg(kDirect ? 0 : Dp), bo0(kDirect ? 0 : Dp), bo1(kDirect ? 0 : Dp);
  const A* w = io.weights(static_cast<const A*>(a.weight), K, wbuf);
  std::vector<int64_t> present(K);
  for (int64_t b = begin; b < end; ++b) {
    // The clip's pooled means: in the scratch itself when direct (its [2D] rows are the padded layout),
    // else in a padded buffer copied into the scratch afterwards (phase 2 reads them).
    A* pooled = kDirect ? pooled_all + b * K * 2 * D : padded.data();
    std::fill(pooled, pooled + K * 2 * Dp, A(0));
    std::fill(present.begin(), present.end(), int64_t(0));
    for (int64_t c = 0; c < 2 * K; ++c) dA[c] = dalpha ? dalpha[2 * b * K + c] : A(0);
    // Pass 1: one fused loop per row: the two dots of dy with the inputs (y = a0 x_st + a1 x_ts at
    // every t) and the pooling of present frames.
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const A* rs = io.in(xs + b * a.s_st.b + t * a.s_st.t + k * a.s_st.k, a.s_st.d, bs.data());
        const A* rt = io.in(xt + b * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k, a.s_ts.d, bt.data());
        const A* rg = io.in(dy + b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k, a.s_dy.d, bg.data());
        A* ps = pooled + k * 2 * Dp;
        A* pt = ps + Dp;
        V g0{}, g1{};
        if (frame_on(a.mask, a.sm, b, t, k)) {
          ++present[k];
          for (int64_t d = 0; d < Dp; d += kVec) {
            const V s = load8(rs + d), u = load8(rt + d), g = load8(rg + d);
            g0 += g * s;
            g1 += g * u;
            store8(ps + d, load8(ps + d) + s);
            store8(pt + d, load8(pt + d) + u);
          }
        } else {
          for (int64_t d = 0; d < Dp; d += kVec) {
            const V g = load8(rg + d);
            g0 += g * load8(rs + d);
            g1 += g * load8(rt + d);
          }
        }
        dA[2 * k] += hsum8<A>(g0);
        dA[2 * k + 1] += hsum8<A>(g1);
      }
    for (int64_t k = 0; k < K; ++k) {
      A* pk = pooled + k * 2 * Dp;
      const A inv = inv_count<A>(present[k]);
      const int64_t task = b * K + k;
      const A a0 = alpha[2 * task], a1 = alpha[2 * task + 1];
      A dl0, dl1;
      router_softmax_bwd(a0, a1, dA[2 * k], dA[2 * k + 1], tau, dl0, dl1);
      dlogits[2 * task] = dl0;
      dlogits[2 * task + 1] = dl1;
      const A* wk = w + k * 4 * Dp;
      A* dpk = dpooled.data() + k * 2 * Dp;
      const V vd0 = splat8(dl0 * inv), vd1 = splat8(dl1 * inv);
      for (int64_t c = 0; c < 2 * Dp; c += kVec) {
        store8(pk + c, load8(pk + c) * inv);
        store8(dpk + c, vd0 * load8(wk + c) + vd1 * load8(wk + 2 * Dp + c));
      }
      if constexpr (!kDirect) {
        A* dst = pooled_all + task * 2 * D;
        std::copy(pk, pk + D, dst);
        std::copy(pk + Dp, pk + Dp + D, dst + D);
      }
    }
    // Pass 2: dx from dy (the clip's block of dy is still in L2) and the pooled means' gradient.
    const bool pf_next = b + 1 < end;
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t task = b * K + k;
        const V a0 = splat8(alpha[2 * task]), a1 = splat8(alpha[2 * task + 1]);
        const T* dy_row = dy + b * a.s_dy.b + t * a.s_dy.t + k * a.s_dy.k;
        const int64_t off = ((b * Tn + t) * K + k) * D;
        const A* dps = dpooled.data() + k * 2 * Dp;
        const A* dpt = dps + Dp;
        if (pf_next) {
          prefetch_row_l2(xs + (b + 1) * a.s_st.b + t * a.s_st.t + k * a.s_st.k, a.s_st.d, D);
          prefetch_row_l2(xt + (b + 1) * a.s_ts.b + t * a.s_ts.t + k * a.s_ts.k, a.s_ts.d, D);
          prefetch_row_l2(dy_row + a.s_dy.b, a.s_dy.d, D);
        }
        const A* rg = io.in(dy_row, a.s_dy.d, bg.data());
        A* o0 = io.out(dxs + off, bo0.data());
        A* o1 = io.out(dxt + off, bo1.data());
        if (frame_on(a.mask, a.sm, b, t, k))
          for (int64_t d = 0; d < Dp; d += kVec) {
            const V g = load8(rg + d);
            io.put(o0, d, a0 * g + load8(dps + d));
            io.put(o1, d, a1 * g + load8(dpt + d));
          }
        else  // the mean's gradient reaches present frames only
          for (int64_t d = 0; d < Dp; d += kVec) {
            const V g = load8(rg + d);
            io.put(o0, d, a0 * g);
            io.put(o1, d, a1 * g);
          }
        io.commit(dxs + off, o0);
        io.commit(dxt + off, o1);
      }
  }
  if (io.stream) stream_fence();
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

// Entry points per (dtype, policy), each compiled per ISA level: overloads on the dtype tag (plain
// functions, not templates: one set of clones each), picked by dispatch_dtype. Direct rows exist for the
// types stored as their accumulation type (float, double) only.
MDN_RANGE_FN(fwd_direct, RoutedMergeFwdArgs, float, fwd_clips<float, true>)
MDN_RANGE_FN(fwd_direct, RoutedMergeFwdArgs, double, fwd_clips<double, true>)
MDN_RANGE_FN(fwd_converted, RoutedMergeFwdArgs, float, fwd_clips<float, false>)
MDN_RANGE_FN(fwd_converted, RoutedMergeFwdArgs, double, fwd_clips<double, false>)
MDN_RANGE_FN(fwd_converted, RoutedMergeFwdArgs, Half16, fwd_clips<Half16, false>)
MDN_RANGE_FN(fwd_converted, RoutedMergeFwdArgs, BFloat16, fwd_clips<BFloat16, false>)
MDN_RANGE_FN(bwd_direct, RoutedMergeBwdArgs, float, bwd_clips<float, true>)
MDN_RANGE_FN(bwd_direct, RoutedMergeBwdArgs, double, bwd_clips<double, true>)
MDN_RANGE_FN(bwd_converted, RoutedMergeBwdArgs, float, bwd_clips<float, false>)
MDN_RANGE_FN(bwd_converted, RoutedMergeBwdArgs, double, bwd_clips<double, false>)
MDN_RANGE_FN(bwd_converted, RoutedMergeBwdArgs, Half16, bwd_clips<Half16, false>)
MDN_RANGE_FN(bwd_converted, RoutedMergeBwdArgs, BFloat16, bwd_clips<BFloat16, false>)
MDN_RANGE_FN(bwd_router, RoutedMergeBwdArgs, float, bwd_weights<float>)
MDN_RANGE_FN(bwd_router, RoutedMergeBwdArgs, double, bwd_weights<double>)
MDN_RANGE_FN(bwd_router, RoutedMergeBwdArgs, Half16, bwd_weights<Half16>)
MDN_RANGE_FN(bwd_router, RoutedMergeBwdArgs, BFloat16, bwd_weights<BFloat16>)

// Rows of a type stored as its accumulation type (kStoredAsAcc) can be read and written in place when
// every tensor has unit feature stride and the rows are whole vectors.
bool unit_rows(int64_t D, std::initializer_list<int64_t> feature_strides) {
  if (D % kVec != 0) return false;
  for (int64_t s : feature_strides)
    if (s != 1) return false;
  return true;
}

bool sizes_ok(int64_t B, int64_t T, int64_t K, int64_t D) { return B >= 1 && T >= 1 && K >= 1 && D >= 1; }

}  // namespace

int routed_merge_fwd_cpu(const RoutedMergeFwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a.B, a.T, a.K, a.D)) return kBadSize;
  return dispatch_dtype(a.dtype, [&](auto tag) {
    using Tag = typename decltype(tag)::type;
    if constexpr (kStoredAsAcc<Tag>) {
      if (unit_rows(a.D, {a.s_st.d, a.s_ts.d}))
        return pf(0, a.B, 1, [&](int64_t b, int64_t e) { fwd_direct(tag, a, b, e); });
    }
    pf(0, a.B, 1, [&](int64_t b, int64_t e) { fwd_converted(tag, a, b, e); });
  });
}

int routed_merge_bwd_cpu(const RoutedMergeBwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a.B, a.T, a.K, a.D)) return kBadSize;
  return dispatch_dtype(a.dtype, [&](auto tag) {
    using Tag = typename decltype(tag)::type;
    [&] {  // the clips, then the router's gradients
      if constexpr (kStoredAsAcc<Tag>) {
        if (unit_rows(a.D, {a.s_st.d, a.s_ts.d, a.s_dy.d}))
          return pf(0, a.B, 1, [&](int64_t b, int64_t e) { bwd_direct(tag, a, b, e); });
      }
      pf(0, a.B, 1, [&](int64_t b, int64_t e) { bwd_converted(tag, a, b, e); });
    }();
    pf(0, a.K, 1, [&](int64_t b, int64_t e) { bwd_router(tag, a, b, e); });
  });
}

}  // namespace mdn
