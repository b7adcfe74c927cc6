// Host entity_attention: one task per (path, clip, group); inside a task, every head in turn.
//
// A group has N <= 64 members and Dh <= 128 features, so each head's q, k, v tiles are copied once
// into small per-thread buffers in the accumulation type (this also absorbs any input strides and
// the 16-bit conversion) and every product runs on those buffers:
//   scores  s_i = q_i K^T        with K stored transposed [Dp][Np] -> vector lanes run over keys
//   output  o_i = sum_j p_ij v_j with V stored as rows [N][Dp]     -> vector lanes run over features
// Np and Dp are N and Dh rounded up to the lane count with zero padding, so the inner loops have
// fixed-width bodies the compiler vectorises at -O3 without tails. No N x N matrix is kept: a task
// holds one row of N scores at a time.
#include "entity_attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/softmax_math.h"
#include "cpu_math.h"

namespace mdn {
namespace {

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// The tiles of one (group, head): rows [N][Dp] and transposed [Dp][Np] buffers.
template <typename A> struct Tiles {
  int64_t N = 0, Np = 0, Dh = 0, Dp = 0;
  std::vector<A> q, k, kt, vt, v, dout, dk, dv;

  void resize(int64_t n, int64_t dh, bool backward) {
    N = n;
    Np = round_up(n, kLanes);
    Dh = dh;
    Dp = round_up(dh, kLanes);
    const size_t rows = static_cast<size_t>(Np * Dp);
    // Zero-filled: the padding (members >= N, features >= Dh) must stay 0; loads write only the rest.
    q.assign(rows, A(0));
    kt.assign(rows, A(0));
    v.assign(rows, A(0));
    if (backward) {
      k.assign(rows, A(0));
      vt.assign(rows, A(0));
      dout.assign(rows, A(0));
      dk.assign(rows, A(0));
      dv.assign(rows, A(0));
    }
  }
};

// Copy the N x Dh tile of head h of one group into rows[n * Dp + d] (and/or cols[d * Np + n]).
template <typename Tag>
void load_tile(const typename Scalar<Tag>::storage* x, const Strides6& s, GroupView gv, int64_t h, int64_t N,
               int64_t Dh, int64_t Dp, int64_t Np, typename Scalar<Tag>::acc* rows,
               typename Scalar<Tag>::acc* cols) {
  for (int64_t n = 0; n < N; ++n) {
    const auto* src = x + gv.base + n * gv.member + h * s.h;
    if (s.d == 1) {
      if (rows)
        for (int64_t d = 0; d < Dh; ++d) rows[n * Dp + d] = Scalar<Tag>::load(src[d]);
      if (cols)
        for (int64_t d = 0; d < Dh; ++d) cols[d * Np + n] = Scalar<Tag>::load(src[d]);
    } else {
      if (rows)
        for (int64_t d = 0; d < Dh; ++d) rows[n * Dp + d] = Scalar<Tag>::load(src[d * s.d]);
      if (cols)
        for (int64_t d = 0; d < Dh; ++d) cols[d * Np + n] = Scalar<Tag>::load(src[d * s.d]);
    }
  }
}

// Which members of a group are present keys; returns how many are.
int64_t load_key_mask(const uint8_t* mask, const Strides3& sm, int axis, int64_t b, int64_t g, int64_t N,
                      uint8_t* ok) {
  if (!mask) {
    for (int64_t n = 0; n < N; ++n) ok[n] = 1;
    return N;
  }
  const GroupView mv = mask_group_view(sm, axis, b, g);
  int64_t present = 0;
  for (int64_t n = 0; n < N; ++n) {
    ok[n] = mask[mv.base + n * mv.member] != 0;
    present += ok[n];
  }
  return present;
}

// Queries are processed kRows at a time: each loaded vector of k / v then feeds kRows independent
// accumulators (the FMA chains of one query alone would leave the core waiting on latency).
constexpr int kRows = 4;  // the dk / dv update below is written out for 4 rows

// s[r][j] = sum_d rows[r * Dp + d] * cols[d * Np + j] for r < kRows, j < Np (cols is [Dp][Np]).
template <typename A>
inline void rows_times_cols(const A* rows, const A* cols, int64_t Dp, int64_t Np, A (*s)[kMaxMembers]) {
  for (int64_t j0 = 0; j0 < Np; j0 += kLanes) {
    A acc[kRows][kLanes] = {};
    for (int64_t d = 0; d < Dp; ++d) {
      const A* c = cols + d * Np + j0;
      for (int r = 0; r < kRows; ++r) {
        const A x = rows[r * Dp + d];
        for (int l = 0; l < kLanes; ++l) acc[r][l] += x * c[l];
      }
    }
    for (int r = 0; r < kRows; ++r)
      for (int l = 0; l < kLanes; ++l) s[r][j0 + l] = acc[r][l];
  }
}

// out[r][d] = sum_j w[r][j] * rows[j * Dp + d] for r < kRows, d < Dp.
template <typename A>
inline void weights_times_rows(const A (*w)[kMaxMembers], const A* rows, int64_t N, int64_t Dp, A (*out)[kMaxDh]) {
  for (int64_t d0 = 0; d0 < Dp; d0 += kLanes) {
    A acc[kRows][kLanes] = {};
    for (int64_t j = 0; j < N; ++j) {
      const A* v = rows + j * Dp + d0;
      for (int r = 0; r < kRows; ++r) {
        const A wj = w[r][j];
        for (int l = 0; l < kLanes; ++l) acc[r][l] += wj * v[l];
      }
    }
    for (int r = 0; r < kRows; ++r)
      for (int l = 0; l < kLanes; ++l) out[r][d0 + l] = acc[r][l];
  }
}

template <typename Tag> inline void fwd_range(const EntityAttentionFwdArgs& a, int64_t begin, int64_t end) {
  using T = typename Scalar<Tag>::storage;
  using A = typename Scalar<Tag>::acc;
  const EntityAttentionShape sh = a.shape;
  const Strides6 so = contiguous_strides6(sh.B, sh.T, sh.K, sh.H, sh.Dh);
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  T* out = static_cast<T*>(a.out);
  A* lse = static_cast<A*>(a.lse);
  const A scale = static_cast<A>(a.scale);
  {
    Tiles<A> tl;
    A s[kRows][kMaxMembers], p[kRows][kMaxMembers], o[kRows][kMaxDh];
    uint8_t ok[kMaxMembers];
    for (int64_t task = begin; task < end; ++task) {
      const PathTask pt = task_of(task, sh.P, sh.temporal_bits, sh.B, sh.T, sh.K);
      const int64_t N = members_of(pt.axis, sh.T, sh.K);
      if (tl.N != N || tl.Dh != sh.Dh) tl.resize(N, sh.Dh, false);
      const int64_t Dp = tl.Dp, Np = tl.Np, Dh = sh.Dh;
      const GroupView gq = group_view(a.sq, pt.axis, pt.p, pt.b, pt.g);
      const GroupView gk = group_view(a.sk, pt.axis, pt.p, pt.b, pt.g);
      const GroupView gv = group_view(a.sv, pt.axis, pt.p, pt.b, pt.g);
      const GroupView go = group_view(so, pt.axis, pt.p, pt.b, pt.g);
      const int64_t present = load_key_mask(a.mask, a.sm, pt.axis, pt.b, pt.g, N, ok);
      for (int64_t h = 0; h < sh.H; ++h) {
        T* out_h = out + go.base + h * so.h;
        A* lse_h = lse + go.base / sh.Dh + h;  // lse is out's layout without the Dh dim
        const int64_t lse_member = go.member / sh.Dh;
        if (present == 0) {  // no key to attend to: output 0 (lse -inf, unused by the backward)
          for (int64_t i = 0; i < N; ++i) {
            for (int64_t d = 0; d < Dh; ++d) out_h[i * go.member + d] = Scalar<Tag>::store(A(0));
            lse_h[i * lse_member] = neg_inf<A>();
          }
          continue;
        }
        load_tile<Tag>(q, a.sq, gq, h, N, Dh, Dp, Np, tl.q.data(), nullptr);
        load_tile<Tag>(k, a.sk, gk, h, N, Dh, Dp, Np, nullptr, tl.kt.data());
        load_tile<Tag>(v, a.sv, gv, h, N, Dh, Dp, Np, tl.v.data(), nullptr);
        for (int64_t i0 = 0; i0 < N; i0 += kRows) {  // query rows past N are zero padding
          rows_times_cols(tl.q.data() + i0 * Dp, tl.kt.data(), Dp, Np, s);
          const int rows = static_cast<int>(std::min<int64_t>(kRows, N - i0));
          for (int r = 0; r < kRows; ++r) {
            A mx = neg_inf<A>();
            for (int64_t j = 0; j < N; ++j) {
              s[r][j] = ok[j] ? s[r][j] * scale : neg_inf<A>();
              mx = std::max(mx, s[r][j]);
            }
            exp_shifted(s[r], mx, N, p[r]);  // p_j = exp(s_j - mx), 0 for masked keys
            A sum = 0;
            for (int64_t j = 0; j < N; ++j) sum += p[r][j];
            const A inv = A(1) / sum;
            for (int64_t j = 0; j < N; ++j) p[r][j] *= inv;
            if (r < rows) lse_h[(i0 + r) * lse_member] = mx + std::log(sum);
          }
          weights_times_rows(p, tl.v.data(), N, Dp, o);
          for (int r = 0; r < rows; ++r) {
            T* dst = out_h + (i0 + r) * go.member;
            for (int64_t d = 0; d < Dh; ++d) dst[d] = Scalar<Tag>::store(o[r][d]);
          }
        }
      }
    }
  }
}

template <typename Tag> inline void bwd_range(const EntityAttentionBwdArgs& a, int64_t begin, int64_t end) {
  using T = typename Scalar<Tag>::storage;
  using A = typename Scalar<Tag>::acc;
  const EntityAttentionShape sh = a.shape;
  const Strides6 so = contiguous_strides6(sh.B, sh.T, sh.K, sh.H, sh.Dh);
  const T* q = static_cast<const T*>(a.q);
  const T* k = static_cast<const T*>(a.k);
  const T* v = static_cast<const T*>(a.v);
  const T* dout = static_cast<const T*>(a.dout);
  const A* lse = static_cast<const A*>(a.lse);
  T* dq = static_cast<T*>(a.dq);
  T* dk = static_cast<T*>(a.dk);
  T* dv = static_cast<T*>(a.dv);
  const A scale = static_cast<A>(a.scale);
  {
    Tiles<A> tl;
    A s[kRows][kMaxMembers], p[kRows][kMaxMembers], dp[kRows][kMaxMembers], ds[kRows][kMaxMembers];
    A g[kRows][kMaxDh];
    uint8_t ok[kMaxMembers];
    for (int64_t task = begin; task < end; ++task) {
      const PathTask pt = task_of(task, sh.P, sh.temporal_bits, sh.B, sh.T, sh.K);
      const int64_t N = members_of(pt.axis, sh.T, sh.K);
      if (tl.N != N || tl.Dh != sh.Dh) tl.resize(N, sh.Dh, true);
      const int64_t Dp = tl.Dp, Np = tl.Np, Dh = sh.Dh;
      const GroupView gq = group_view(a.sq, pt.axis, pt.p, pt.b, pt.g);
      const GroupView gk = group_view(a.sk, pt.axis, pt.p, pt.b, pt.g);
      const GroupView gv = group_view(a.sv, pt.axis, pt.p, pt.b, pt.g);
      const GroupView gdo = group_view(a.sdo, pt.axis, pt.p, pt.b, pt.g);
      const GroupView go = group_view(so, pt.axis, pt.p, pt.b, pt.g);
      const int64_t present = load_key_mask(a.mask, a.sm, pt.axis, pt.b, pt.g, N, ok);
      for (int64_t h = 0; h < sh.H; ++h) {
        const int64_t off = go.base + h * so.h;
        if (present == 0) {  // the output was the constant 0: every gradient of the group is 0
          for (int64_t i = 0; i < N; ++i)
            for (int64_t d = 0; d < Dh; ++d) {
              const int64_t o = off + i * go.member + d;
              dq[o] = dk[o] = dv[o] = Scalar<Tag>::store(A(0));
            }
          continue;
        }
        const A* lse_h = lse + go.base / sh.Dh + h;
        const int64_t lse_member = go.member / sh.Dh;
        load_tile<Tag>(q, a.sq, gq, h, N, Dh, Dp, Np, tl.q.data(), nullptr);
        load_tile<Tag>(k, a.sk, gk, h, N, Dh, Dp, Np, tl.k.data(), tl.kt.data());
        load_tile<Tag>(v, a.sv, gv, h, N, Dh, Dp, Np, nullptr, tl.vt.data());
        load_tile<Tag>(dout, a.sdo, gdo, h, N, Dh, Dp, Np, tl.dout.data(), nullptr);
        std::fill(tl.dk.begin(), tl.dk.begin() + N * Dp, A(0));
        std::fill(tl.dv.begin(), tl.dv.begin() + N * Dp, A(0));
        for (int64_t i0 = 0; i0 < N; i0 += kRows) {  // query rows past N are zero padding
          const int rows = static_cast<int>(std::min<int64_t>(kRows, N - i0));
          const A* qi = tl.q.data() + i0 * Dp;
          const A* doi = tl.dout.data() + i0 * Dp;
          rows_times_cols(qi, tl.kt.data(), Dp, Np, s);    // s_ij = q_i . k_j
          rows_times_cols(doi, tl.vt.data(), Dp, Np, dp);  // dp_ij = do_i . v_j
          for (int r = 0; r < kRows; ++r) {
            if (r >= rows) {  // padding rows must add nothing to dk, dv
              for (int64_t j = 0; j < N; ++j) p[r][j] = ds[r][j] = A(0);
              continue;
            }
            const A lse_i = lse_h[(i0 + r) * lse_member];
            for (int64_t j = 0; j < N; ++j) s[r][j] = ok[j] ? s[r][j] * scale - lse_i : neg_inf<A>();
            exp_shifted(s[r], A(0), N, p[r]);  // p_ij = exp(scale s_ij - lse_i)
            A Di = 0;                          // D_i = sum_j p_ij dp_ij = do_i . o_i
            for (int64_t j = 0; j < N; ++j) Di += p[r][j] * dp[r][j];
            for (int64_t j = 0; j < N; ++j) ds[r][j] = p[r][j] * (dp[r][j] - Di) * scale;
          }
          weights_times_rows(ds, tl.k.data(), N, Dp, g);  // dq_i = scale sum_j ds_ij k_j
          for (int r = 0; r < rows; ++r) {
            T* dqi = dq + off + (i0 + r) * go.member;
            for (int64_t d = 0; d < Dh; ++d) dqi[d] = Scalar<Tag>::store(g[r][d]);
          }
          for (int64_t j = 0; j < N; ++j) {  // dk_j += sum_i ds_ij q_i, dv_j += sum_i p_ij do_i
            A* dkj = tl.dk.data() + j * Dp;
            A* dvj = tl.dv.data() + j * Dp;
            const A ds0 = ds[0][j], ds1 = ds[1][j], ds2 = ds[2][j], ds3 = ds[3][j];
            const A p0 = p[0][j], p1 = p[1][j], p2 = p[2][j], p3 = p[3][j];
            for (int64_t d = 0; d < Dp; ++d) {
              dkj[d] += ds0 * qi[d] + ds1 * qi[Dp + d] + ds2 * qi[2 * Dp + d] + ds3 * qi[3 * Dp + d];
              dvj[d] += p0 * doi[d] + p1 * doi[Dp + d] + p2 * doi[2 * Dp + d] + p3 * doi[3 * Dp + d];
            }
          }
        }
        for (int64_t j = 0; j < N; ++j) {
          T* dkj = dk + off + j * go.member;
          T* dvj = dv + off + j * go.member;
          for (int64_t d = 0; d < Dh; ++d) {
            dkj[d] = Scalar<Tag>::store(tl.dk[j * Dp + d]);
            dvj[d] = Scalar<Tag>::store(tl.dv[j * Dp + d]);
          }
        }
      }
    }
  }
}

// One entry point per element type, cloned per x86 ISA level (cpu_math.h: MDN_CPU_CLONES) so the
// same loops run with AVX2 / AVX-512 where the CPU has them and SSE2 elsewhere.
#define MDN_RANGE_FN(name, impl, Args, Tag) \
  MDN_CPU_CLONES void name(const Args& a, int64_t b, int64_t e) { impl<Tag>(a, b, e); }
MDN_RANGE_FN(fwd_f32, fwd_range, EntityAttentionFwdArgs, float)
MDN_RANGE_FN(fwd_f64, fwd_range, EntityAttentionFwdArgs, double)
MDN_RANGE_FN(fwd_f16, fwd_range, EntityAttentionFwdArgs, Half16)
MDN_RANGE_FN(fwd_bf16, fwd_range, EntityAttentionFwdArgs, BFloat16)
MDN_RANGE_FN(bwd_f32, bwd_range, EntityAttentionBwdArgs, float)
MDN_RANGE_FN(bwd_f64, bwd_range, EntityAttentionBwdArgs, double)
MDN_RANGE_FN(bwd_f16, bwd_range, EntityAttentionBwdArgs, Half16)
MDN_RANGE_FN(bwd_bf16, bwd_range, EntityAttentionBwdArgs, BFloat16)
#undef MDN_RANGE_FN

template <typename Args> using RangeFn = void (*)(const Args&, int64_t, int64_t);

template <typename Args> int run(const Args& a, const ParallelFor& pf, RangeFn<Args> f32, RangeFn<Args> f64,
                                 RangeFn<Args> f16, RangeFn<Args> bf16) {
  RangeFn<Args> fn = nullptr;
  switch (a.dtype) {
    case DType::Float32: fn = f32; break;
    case DType::Float64: fn = f64; break;
    case DType::Float16: fn = f16; break;
    case DType::BFloat16: fn = bf16; break;
  }
  if (!fn) return kBadDType;
  const auto& sh = a.shape;
  pf(0, total_tasks(sh.P, sh.temporal_bits, sh.B, sh.T, sh.K), 1, [&](int64_t b, int64_t e) { fn(a, b, e); });
  return kOk;
}

bool sizes_ok(const EntityAttentionShape& s) {
  return s.P >= 1 && s.P <= kMaxPaths && s.Dh >= 1 && s.Dh <= kMaxDh && s.T >= 1 && s.T <= kMaxMembers &&
         s.K >= 1 && s.K <= kMaxMembers && s.B >= 1 && s.H >= 1;
}

}  // namespace

int entity_attention_fwd_cpu(const EntityAttentionFwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a.shape)) return kBadSize;
  return run(a, pf, fwd_f32, fwd_f64, fwd_f16, fwd_bf16);
}

int entity_attention_bwd_cpu(const EntityAttentionBwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a.shape)) return kBadSize;
  return run(a, pf, bwd_f32, bwd_f64, bwd_f16, bwd_bf16);
}

}  // namespace mdn
