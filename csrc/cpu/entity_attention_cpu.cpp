// Host entity_attention: one task per clip b; inside it every path, group and head in turn (a thread
// walks a contiguous run of clips). While one (path, clip, group) computes, the rows of the next one
// are software-prefetched (they are 1-2 cache lines strided by whole tokens, which the hardware
// prefetchers do not follow), and the output rows with write intent.
//
// Per (path, group, head) the N <= 64 members are taken in query blocks of kVec = 8 rows with the
// queries in vector lanes (Vec8, vec8.h):
//   qt[d]   = scale * q[i0 + l][d]                 Q^T of the block (8 x 8 register transposes)
//   s[c]    = sum_d k_c[d] qt[d]                   scores of present key c for the 8 queries
//   p[c]    = exp(s[c] - max_c s) / sum_c ...      softmax across vectors: no horizontal reduction
//   o_i     = sum_c p[c][i] v_c                    rows of V times broadcast weights
// Masked keys are dropped from the key list up front. K, V (and q / dout rows in the backward) are
// read in place when they are float rows with unit feature stride and Dh % 8 == 0; otherwise (16-bit
// types, strided features, odd Dh) the head's rows are first converted into padded buffers.
// Backward (per block, recomputing p from the saved lse): dp[c] = sum_d v_c[d] dot[d] with
// dot = dO^T, delta = sum_c p[c] dp[c], ds[c] = scale p[c] (dp[c] - delta); then
// dq_i = sum_c ds[c][i] k_c, dk_c += sum_i ds[c][i] q_i, dv_c += sum_i p[c][i] dO_i.
#include "entity_attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../common/softmax_math.h"
#include "cpu_math.h"
#include "vec8.h"

namespace mdn {
namespace {

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Present keys of a group (indices of members whose mask is set); returns how many.
int present_keys(const uint8_t* mask, const Strides3& sm, int axis, int64_t b, int64_t g, int64_t N, int* idx) {
  int n = 0;
  if (!mask) {
    for (int64_t m = 0; m < N; ++m) idx[n++] = static_cast<int>(m);
    return n;
  }
  const GroupView mv = mask_group_view(sm, axis, b, g);
  for (int64_t m = 0; m < N; ++m)
    if (mask[mv.base + m * mv.member]) idx[n++] = static_cast<int>(m);
  return n;
}

// Where the rows of one (group, head) of a [P, B, T, K, H, Dh] tensor start: row m at base + m * member,
// features at stride d.
template <typename T> struct RowsOf {
  const T* base;
  int64_t member, d;
  const T* row(int64_t m) const { return base + m * member; }
};

template <typename T> RowsOf<T> rows_of(const T* x, const Strides6& s, int axis, int64_t p, int64_t b, int64_t g,
                                       int64_t h) {
  const GroupView gv = group_view(s, axis, p, b, g);
  return {x + gv.base + h * s.h, gv.member, s.d};
}

// True when rows of this tensor can be read in place as accumulation-type vectors of Dp = Dh elements.
template <typename Tag> bool in_place(const Strides6& s, int64_t Dh) {
  return kStoredAsAcc<Tag> && s.d == 1 && Dh % kVec == 0;
}

// Pointers to the rows `members[0..n)`, either in place or converted into buf[c * Dp .. + Dp) with
// zero padding from Dh to Dp.
template <typename Tag, typename A>
void gather_rows(const RowsOf<typename Scalar<Tag>::storage>& x, bool direct, const int* members, int n,
                 int64_t Dh, int64_t Dp, A* buf, const A** out) {
  for (int c = 0; c < n; ++c) {
    const auto* src = x.row(members[c]);
    if (direct) {
      out[c] = reinterpret_cast<const A*>(src);
      continue;
    }
    A* dst = buf + c * Dp;
    if (x.d == 1)
      for (int64_t d = 0; d < Dh; ++d) dst[d] = Scalar<Tag>::load(src[d]);
    else
      for (int64_t d = 0; d < Dh; ++d) dst[d] = Scalar<Tag>::load(src[d * x.d]);
    for (int64_t d = Dh; d < Dp; ++d) dst[d] = A(0);
    out[c] = dst;
  }
}

// Software prefetch of the rows of one group (all heads) of a tensor ahead of their use: the
// rows of a group are 1-2 cache lines each, strided by whole tokens, a pattern the hardware prefetchers
// do not follow, so without this every row is a cache miss (measured: most of the kernel's time).
// Rows with strided features are left to the hardware.
template <typename T>
inline void prefetch_group(const T* x, const Strides6& s, int axis, int64_t p, int64_t b, int64_t g, int64_t N,
                           int64_t H, int64_t Dh, bool write = false) {
  if (s.d != 1) return;
  const GroupView gv = group_view(s, axis, p, b, g);
  const int64_t bytes = Dh * static_cast<int64_t>(sizeof(T));
  for (int64_t m = 0; m < N; ++m)
    for (int64_t h = 0; h < H; ++h) {
      const char* row = reinterpret_cast<const char*>(x + gv.base + m * gv.member + h * s.h);
      if (write) {
        for (int64_t o = 0; o < bytes; o += 64) prefetch_line_for_write(row + o);
        if (reinterpret_cast<uintptr_t>(row) & 63) prefetch_line_for_write(row + bytes - 1);
      } else {
        for (int64_t o = 0; o < bytes; o += 64) prefetch_line(row + o);
        if (reinterpret_cast<uintptr_t>(row) & 63) prefetch_line(row + bytes - 1);  // row not line-aligned
      }
    }
}

// The (path, clip, group) unit that follows (p, b, g) in a task's iteration order (clip, path, group):
// its rows are prefetched while (p, b, g) computes. One unit ahead (~1 us of work) covers the memory
// latency and keeps the prefetched lines (one group, all heads: ~20 KB) from evicting the current ones.
struct Unit {
  bool valid;
  int p, axis;
  int64_t b, g, N;
};

inline Unit next_unit(const EntityAttentionShape& sh, int p, int64_t b, int64_t g, int64_t b_end) {
  int axis = path_axis(sh.temporal_bits, p);
  if (g + 1 < groups_of(axis, sh.T, sh.K)) return {true, p, axis, b, g + 1, members_of(axis, sh.T, sh.K)};
  if (p + 1 < sh.P) {
    axis = path_axis(sh.temporal_bits, p + 1);
    return {true, p + 1, axis, b, 0, members_of(axis, sh.T, sh.K)};
  }
  axis = path_axis(sh.temporal_bits, 0);
  return {b + 1 < b_end, 0, axis, b + 1, 0, members_of(axis, sh.T, sh.K)};
}

// xt[d][l] = mul * rows[l][d] for l < nq, 0 for the padding lanes: the block's transposed tile, in 8 x 8
// register tiles. Rows hold Dp elements (in place: Dp = Dh; buffers are zero padded to Dp).
template <typename A> void transpose_block(const A* const* rows, int nq, int64_t Dp, A mul, Vec8<A>* xt) {
  Vec8<A> r[kVec];
  for (int64_t d0 = 0; d0 < Dp; d0 += kVec) {
    for (int l = 0; l < kVec; ++l) r[l] = l < nq ? load8(rows[l] + d0) : Vec8<A>{};
    transpose8x8(r, xt + d0);
    for (int l = 0; l < kVec; ++l) xt[d0 + l] *= mul;
  }
}

// out[j] = sum_d rows[j][d] * xt[d] for J rows (J vectors over the block's queries).
template <int J, typename A>
inline void rows_dot_block(const A* const* rows, const Vec8<A>* xt, int64_t Dh, Vec8<A>* out) {
  Vec8<A> a0[J], a1[J];
  for (int j = 0; j < J; ++j) a0[j] = a1[j] = Vec8<A>{};
  int64_t d = 0;
  for (; d + 2 <= Dh; d += 2) {  // two accumulators per row: independent FMA chains
    const Vec8<A> x0 = xt[d], x1 = xt[d + 1];
    for (int j = 0; j < J; ++j) {
      a0[j] += rows[j][d] * x0;
      a1[j] += rows[j][d + 1] * x1;
    }
  }
  if (d < Dh)
    for (int j = 0; j < J; ++j) a0[j] += rows[j][d] * xt[d];
  for (int j = 0; j < J; ++j) out[j] = a0[j] + a1[j];
}

template <typename A> void rows_dot(const A* const* rows, int n, const Vec8<A>* xt, int64_t Dh, Vec8<A>* out) {
  int c = 0;
  for (; c + 4 <= n; c += 4) rows_dot_block<4>(rows + c, xt, Dh, out + c);
  switch (n - c) {
    case 3: rows_dot_block<3>(rows + c, xt, Dh, out + c); break;
    case 2: rows_dot_block<2>(rows + c, xt, Dh, out + c); break;
    case 1: rows_dot_block<1>(rows + c, xt, Dh, out + c); break;
    default: break;
  }
}

// out[r][:Dp] (+)= sum_{c < C} w[r * wr + c * wc] * rows[c][:Dp] for R output rows.
template <int R, typename A>
inline void combine_rows_block(const A* w, int64_t wr, int64_t wc, int C, const A* const* rows, int64_t Dp,
                               A* const* out, bool accumulate) {
  for (int64_t d0 = 0; d0 < Dp; d0 += kVec) {
    Vec8<A> acc[R];
    for (int r = 0; r < R; ++r) acc[r] = accumulate ? load8(out[r] + d0) : Vec8<A>{};
    for (int c = 0; c < C; ++c) {
      const Vec8<A> x = load8(rows[c] + d0);
      for (int r = 0; r < R; ++r) acc[r] += w[r * wr + c * wc] * x;
    }
    for (int r = 0; r < R; ++r) store8(out[r] + d0, acc[r]);
  }
}

template <typename A>
void combine_rows(const A* w, int64_t wr, int64_t wc, int R, int C, const A* const* rows, int64_t Dp,
                  A* const* out, bool accumulate) {
  int r = 0;
  for (; r + kVec <= R; r += kVec) combine_rows_block<kVec>(w + r * wr, wr, wc, C, rows, Dp, out + r, accumulate);
  const A* wt = w + r * wr;
  A* const* ot = out + r;
  switch (R - r) {
    case 7: combine_rows_block<7>(wt, wr, wc, C, rows, Dp, ot, accumulate); break;
    case 6: combine_rows_block<6>(wt, wr, wc, C, rows, Dp, ot, accumulate); break;
    case 5: combine_rows_block<5>(wt, wr, wc, C, rows, Dp, ot, accumulate); break;
    case 4: combine_rows_block<4>(wt, wr, wc, C, rows, Dp, ot, accumulate); break;
    case 3: combine_rows_block<3>(wt, wr, wc, C, rows, Dp, ot, accumulate); break;
    case 2: combine_rows_block<2>(wt, wr, wc, C, rows, Dp, ot, accumulate); break;
    case 1: combine_rows_block<1>(wt, wr, wc, C, rows, Dp, ot, accumulate); break;
    default: break;
  }
}

// Rows [0, n) of a contiguous [.., N, .., Dh] output (row m at base + m * member) from acc rows.
template <typename Tag, typename A>
void store_rows(const A* const* src, int n, const int* members, int64_t Dh, typename Scalar<Tag>::storage* base,
                int64_t member) {
  for (int c = 0; c < n; ++c) {
    auto* dst = base + members[c] * member;
    for (int64_t d = 0; d < Dh; ++d) dst[d] = Scalar<Tag>::store(src[c][d]);
  }
}

template <typename Tag> void zero_rows(typename Scalar<Tag>::storage* base, int64_t member, int64_t n, int64_t Dh) {
  using A = typename Scalar<Tag>::acc;
  for (int64_t m = 0; m < n; ++m)
    for (int64_t d = 0; d < Dh; ++d) base[m * member + d] = Scalar<Tag>::store(A(0));
}

// Per-thread scratch of the kernels (sizes for N <= kMaxMembers, Dh <= kMaxDh). The vector tiles are
// fixed arrays (a std::vector would drop the vectors' alignment); the row buffers are only touched by
// unaligned loads and stores.
template <typename A> struct Scratch {
  Vec8<A> qt[kMaxDh], dot[kMaxDh], s[kMaxMembers], p[kMaxMembers], dp[kMaxMembers];
  std::vector<A> kbuf, vbuf, qbuf, dobuf, obuf, dkbuf, dvbuf;
  explicit Scratch(int64_t Dp, bool backward) {
    const size_t rows = static_cast<size_t>(kMaxMembers * Dp);
    qbuf.resize(rows);
    kbuf.resize(rows);
    vbuf.resize(rows);
    obuf.resize(rows);
    if (backward) {
      dobuf.resize(rows);
      dkbuf.resize(rows);
      dvbuf.resize(rows);
    }
  }
};

template <typename Tag> void fwd_clips(const EntityAttentionFwdArgs& a, int64_t b_begin, int64_t b_end) {
  using T = typename Scalar<Tag>::storage;
  using A = typename Scalar<Tag>::acc;
  using V = Vec8<A>;
  const EntityAttentionShape sh = a.shape;
  const int64_t Dh = sh.Dh, Dp = round_up(Dh, kVec);
  const Strides6 so = contiguous_strides6(sh.B, sh.T, sh.K, sh.H, sh.Dh);
  const bool q_direct = in_place<Tag>(a.sq, Dh);
  const bool k_direct = in_place<Tag>(a.sk, Dh), v_direct = in_place<Tag>(a.sv, Dh);
  const bool o_direct = kStoredAsAcc<Tag> && Dh % kVec == 0;
  const A scale = static_cast<A>(a.scale);
  T* out = static_cast<T*>(a.out);
  A* lse = static_cast<A*>(a.lse);
  Scratch<A> w(Dp, false);
  int keys[kMaxMembers], all[kMaxMembers];
  for (int m = 0; m < kMaxMembers; ++m) all[m] = m;
  const A *qrow[kMaxMembers], *krow[kMaxMembers], *vrow[kMaxMembers];
  A* orow[kVec];

  for (int64_t b = b_begin; b < b_end; ++b)
    for (int p = 0; p < sh.P; ++p) {
      const int axis = path_axis(sh.temporal_bits, p);
      const int64_t G = groups_of(axis, sh.T, sh.K), N = members_of(axis, sh.T, sh.K);
      for (int64_t g = 0; g < G; ++g) {
        const int np = present_keys(a.mask, a.sm, axis, b, g, N, keys);
        const Unit nx = next_unit(sh, p, b, g, b_end);
        if (nx.valid) {
          prefetch_group(static_cast<const T*>(a.q), a.sq, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh);
          prefetch_group(static_cast<const T*>(a.k), a.sk, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh);
          prefetch_group(static_cast<const T*>(a.v), a.sv, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh);
          prefetch_group(static_cast<const T*>(a.out), so, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh, true);
        }
        const GroupView go = group_view(so, axis, p, b, g);
        const int64_t lse_member = go.member / Dh;  // lse is out's layout without the Dh dim
        for (int64_t h = 0; h < sh.H; ++h) {
          T* out_h = out + go.base + h * so.h;
          A* lse_h = lse + go.base / Dh + h;
          if (np == 0) {  // no key to attend to: output 0, lse -inf (unused by the backward)
            zero_rows<Tag>(out_h, go.member, N, Dh);
            for (int64_t i = 0; i < N; ++i) lse_h[i * lse_member] = neg_inf<A>();
            continue;
          }
          gather_rows<Tag>(rows_of(static_cast<const T*>(a.q), a.sq, axis, p, b, g, h), q_direct, all,
                           static_cast<int>(N), Dh, Dp, w.qbuf.data(), qrow);
          gather_rows<Tag>(rows_of(static_cast<const T*>(a.k), a.sk, axis, p, b, g, h), k_direct, keys, np, Dh,
                           Dp, w.kbuf.data(), krow);
          gather_rows<Tag>(rows_of(static_cast<const T*>(a.v), a.sv, axis, p, b, g, h), v_direct, keys, np, Dh,
                           Dp, w.vbuf.data(), vrow);
          for (int64_t i0 = 0; i0 < N; i0 += kVec) {
            const int nq = static_cast<int>(std::min<int64_t>(kVec, N - i0));
            transpose_block(qrow + i0, nq, Dp, scale, w.qt);
            V* s = w.s;
            rows_dot(krow, np, w.qt, Dh, s);
            V mx = s[0];
            for (int c = 1; c < np; ++c) mx = max8(mx, s[c]);
            V sum{};
            for (int c = 0; c < np; ++c) {
              s[c] = exp8(s[c] - mx);
              sum += s[c];
            }
            const V inv = A(1) / sum;
            for (int c = 0; c < np; ++c) s[c] *= inv;
            const V lse_v = mx + log8(sum);  // sum >= 1: the row's maximum contributes exp(0)
            for (int l = 0; l < nq; ++l) lse_h[(i0 + l) * lse_member] = lse_v[l];
            for (int r = 0; r < nq; ++r)
              orow[r] = o_direct ? reinterpret_cast<A*>(out_h + (i0 + r) * go.member) : w.obuf.data() + r * Dp;
            combine_rows(reinterpret_cast<const A*>(s), 1, kVec, nq, np, vrow, Dp, orow, false);
            if (!o_direct) store_rows<Tag>(orow, nq, all, Dh, out_h + i0 * go.member, go.member);
          }
        }
      }
    }
}

template <typename Tag> void bwd_clips(const EntityAttentionBwdArgs& a, int64_t b_begin, int64_t b_end) {
  using T = typename Scalar<Tag>::storage;
  using A = typename Scalar<Tag>::acc;
  using V = Vec8<A>;
  const EntityAttentionShape sh = a.shape;
  const int64_t Dh = sh.Dh, Dp = round_up(Dh, kVec);
  const Strides6 so = contiguous_strides6(sh.B, sh.T, sh.K, sh.H, sh.Dh);
  const bool q_direct = in_place<Tag>(a.sq, Dh), k_direct = in_place<Tag>(a.sk, Dh);
  const bool v_direct = in_place<Tag>(a.sv, Dh), do_direct = in_place<Tag>(a.sdo, Dh);
  const bool o_direct = kStoredAsAcc<Tag> && Dh % kVec == 0;
  const A scale = static_cast<A>(a.scale);
  const A* lse = static_cast<const A*>(a.lse);
  T* dq = static_cast<T*>(a.dq);
  T* dk = static_cast<T*>(a.dk);
  T* dv = static_cast<T*>(a.dv);
  Scratch<A> w(Dp, true);
  int keys[kMaxMembers], all[kMaxMembers];
  uint8_t present[kMaxMembers];
  for (int m = 0; m < kMaxMembers; ++m) all[m] = m;
  const A *krow[kMaxMembers], *vrow[kMaxMembers], *qrow[kMaxMembers], *dorow[kMaxMembers];
  A *dqrow[kVec], *dkrow[kMaxMembers], *dvrow[kMaxMembers];

  for (int64_t b = b_begin; b < b_end; ++b)
    for (int p = 0; p < sh.P; ++p) {
      const int axis = path_axis(sh.temporal_bits, p);
      const int64_t G = groups_of(axis, sh.T, sh.K), N = members_of(axis, sh.T, sh.K);
      for (int64_t g = 0; g < G; ++g) {
        const int np = present_keys(a.mask, a.sm, axis, b, g, N, keys);
        for (int64_t m = 0; m < N; ++m) present[m] = 0;
        for (int c = 0; c < np; ++c) present[keys[c]] = 1;
        const Unit nx = next_unit(sh, p, b, g, b_end);
        if (nx.valid) {
          prefetch_group(static_cast<const T*>(a.q), a.sq, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh);
          prefetch_group(static_cast<const T*>(a.k), a.sk, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh);
          prefetch_group(static_cast<const T*>(a.v), a.sv, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh);
          prefetch_group(static_cast<const T*>(a.dout), a.sdo, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh);
          prefetch_group(static_cast<const T*>(a.dq), so, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh, true);
          prefetch_group(static_cast<const T*>(a.dk), so, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh, true);
          prefetch_group(static_cast<const T*>(a.dv), so, nx.axis, nx.p, nx.b, nx.g, nx.N, sh.H, Dh, true);
        }
        const GroupView go = group_view(so, axis, p, b, g);
        const int64_t lse_member = go.member / Dh;
        for (int64_t h = 0; h < sh.H; ++h) {
          const int64_t off = go.base + h * so.h;
          if (np == 0) {  // the output was the constant 0: every gradient of the group is 0
            zero_rows<Tag>(dq + off, go.member, N, Dh);
            zero_rows<Tag>(dk + off, go.member, N, Dh);
            zero_rows<Tag>(dv + off, go.member, N, Dh);
            continue;
          }
          const A* lse_h = lse + go.base / Dh + h;
          const auto qx = rows_of(static_cast<const T*>(a.q), a.sq, axis, p, b, g, h);
          const auto dox = rows_of(static_cast<const T*>(a.dout), a.sdo, axis, p, b, g, h);
          gather_rows<Tag>(rows_of(static_cast<const T*>(a.k), a.sk, axis, p, b, g, h), k_direct, keys, np, Dh,
                           Dp, w.kbuf.data(), krow);
          gather_rows<Tag>(rows_of(static_cast<const T*>(a.v), a.sv, axis, p, b, g, h), v_direct, keys, np, Dh,
                           Dp, w.vbuf.data(), vrow);
          gather_rows<Tag>(qx, q_direct, all, static_cast<int>(N), Dh, Dp, w.qbuf.data(), qrow);
          gather_rows<Tag>(dox, do_direct, all, static_cast<int>(N), Dh, Dp, w.dobuf.data(), dorow);
          for (int c = 0; c < np; ++c) {
            dkrow[c] = o_direct ? reinterpret_cast<A*>(dk + off + keys[c] * go.member) : w.dkbuf.data() + c * Dp;
            dvrow[c] = o_direct ? reinterpret_cast<A*>(dv + off + keys[c] * go.member) : w.dvbuf.data() + c * Dp;
          }
          for (int64_t i0 = 0; i0 < N; i0 += kVec) {
            const int nq = static_cast<int>(std::min<int64_t>(kVec, N - i0));
            transpose_block(qrow + i0, nq, Dp, scale, w.qt);
            transpose_block(dorow + i0, nq, Dp, A(1), w.dot);
            V lse_v{};  // padding lanes: 0 keeps their (unused) probabilities finite
            for (int l = 0; l < nq; ++l) lse_v[l] = lse_h[(i0 + l) * lse_member];
            V* s = w.s;
            V* pr = w.p;
            V* dp = w.dp;
            rows_dot(krow, np, w.qt, Dh, s);    // s[c] = scale q_i . k_c
            rows_dot(vrow, np, w.dot, Dh, dp);  // dp[c] = do_i . v_c
            V delta{};
            for (int c = 0; c < np; ++c) {
              pr[c] = exp8(s[c] - lse_v);
              delta += pr[c] * dp[c];
            }
            for (int c = 0; c < np; ++c) s[c] = pr[c] * (dp[c] - delta) * scale;  // s now holds ds
            const A* ds = reinterpret_cast<const A*>(s);
            const A* pw = reinterpret_cast<const A*>(pr);
            for (int r = 0; r < nq; ++r)
              dqrow[r] = o_direct ? reinterpret_cast<A*>(dq + off + (i0 + r) * go.member) : w.obuf.data() + r * Dp;
            combine_rows(ds, 1, kVec, nq, np, krow, Dp, dqrow, false);  // dq_i = sum_c ds[c][i] k_c
            if (!o_direct) store_rows<Tag>(dqrow, nq, all, Dh, dq + off + i0 * go.member, go.member);
            combine_rows(ds, kVec, 1, np, nq, qrow + i0, Dp, dkrow, i0 > 0);  // dk_c += sum_i ds[c][i] q_i
            combine_rows(pw, kVec, 1, np, nq, dorow + i0, Dp, dvrow, i0 > 0);  // dv_c += sum_i p[c][i] do_i
          }
          if (!o_direct) {
            store_rows<Tag>(dkrow, np, keys, Dh, dk + off, go.member);
            store_rows<Tag>(dvrow, np, keys, Dh, dv + off, go.member);
          }
          for (int64_t m = 0; m < N; ++m)  // absent keys were never attended to: zero gradient
            if (!present[m]) {
              zero_rows<Tag>(dk + off + m * go.member, go.member, 1, Dh);
              zero_rows<Tag>(dv + off + m * go.member, go.member, 1, Dh);
            }
        }
      }
    }
}

// One entry point per element type, cloned per x86 ISA level (cpu_math.h: MDN_CPU_CLONES) so the
// same loops run with AVX2 / AVX-512 where the CPU has them and SSE2 elsewhere. Overloads on the dtype
// tag (plain functions: the clones are not templates), picked by dispatch_dtype. (Making Dh = 32 a
// compile-time constant was tried: no measurable gain, so the head dim stays a runtime value.)
MDN_RANGE_FN(fwd_range, EntityAttentionFwdArgs, float, fwd_clips<float>)
MDN_RANGE_FN(fwd_range, EntityAttentionFwdArgs, double, fwd_clips<double>)
MDN_RANGE_FN(fwd_range, EntityAttentionFwdArgs, Half16, fwd_clips<Half16>)
MDN_RANGE_FN(fwd_range, EntityAttentionFwdArgs, BFloat16, fwd_clips<BFloat16>)
MDN_RANGE_FN(bwd_range, EntityAttentionBwdArgs, float, bwd_clips<float>)
MDN_RANGE_FN(bwd_range, EntityAttentionBwdArgs, double, bwd_clips<double>)
MDN_RANGE_FN(bwd_range, EntityAttentionBwdArgs, Half16, bwd_clips<Half16>)
MDN_RANGE_FN(bwd_range, EntityAttentionBwdArgs, BFloat16, bwd_clips<BFloat16>)

bool sizes_ok(const EntityAttentionShape& s) {
  return s.P >= 1 && s.P <= kMaxPaths && s.Dh >= 1 && s.Dh <= kMaxDh && s.T >= 1 && s.T <= kMaxT &&
         s.K >= 1 && s.K <= kMaxK && s.B >= 1 && s.H >= 1;
}

}  // namespace

// Tasks are clips: each thread gets a contiguous run of clips (sequential memory per thread).
int entity_attention_fwd_cpu(const EntityAttentionFwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a.shape)) return kBadSize;
  return dispatch_dtype(a.dtype, [&](auto tag) {
    pf(0, a.shape.B, 1, [&](int64_t b, int64_t e) { fwd_range(tag, a, b, e); });
  });
}

int entity_attention_bwd_cpu(const EntityAttentionBwdArgs& a, const ParallelFor& pf) {
  if (!sizes_ok(a.shape)) return kBadSize;
  return dispatch_dtype(a.dtype, [&](auto tag) {
    pf(0, a.shape.B, 1, [&](int64_t b, int64_t e) { bwd_range(tag, a, b, e); });
  });
}

}  // namespace mdn
