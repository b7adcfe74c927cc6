// CUDA entity_attention. Grid: x = (path, clip, group) task of every path (common/group_index.h:
// task_of), y = head. A block of W warps takes one (task, head); a warp takes one query (forward,
// and dq in the backward) or one key (dk, dv in the backward) at a time; each lane holds the features
// d = lane + 32 r (r < 4, Dh <= 128) in registers, dot products are warp sums. The group's k and v
// rows are re-read from L1/L2 by each warp (a group is at most 64 x 128 elements). No N x N matrix
// is stored: the forward runs an online softmax, the backward recomputes probabilities from the
// forward's log-sum-exp. Mirrors csrc/cpu/entity_attention_cpu.cpp.
#include "entity_attention_cuda.cuh"

#include "../common/softmax_math.h"
#include "reduce.cuh"

namespace mdn {
namespace {

constexpr int kPerLane = kMaxDh / 32;  // features per lane

// Rows hold Scalar<Tag>::storage elements; the registers hold its accumulation type A.
template <typename Tag, typename T, typename A>
__device__ __forceinline__ void load_row(const T* row, int64_t sd, int64_t Dh, A (&x)[kPerLane]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t d = lane + 32 * r;
    x[r] = d < Dh ? Scalar<Tag>::load(row[d * sd]) : A(0);
  }
}

template <typename Tag, typename T, typename A>
__device__ __forceinline__ void store_row(T* row, int64_t Dh, const A (&x)[kPerLane], A factor) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < kPerLane; ++r) {
    const int64_t d = lane + 32 * r;
    if (d < Dh) row[d] = Scalar<Tag>::store(x[r] * factor);
  }
}

template <typename A> __device__ __forceinline__ A warp_dot(const A (&x)[kPerLane], const A (&y)[kPerLane]) {
  A s = A(0);
#pragma unroll
  for (int r = 0; r < kPerLane; ++r) s += x[r] * y[r];
  return warp_sum(s);
}

// Shared per-block prologue: the task's coordinates and which members are present keys.
struct BlockTask {
  PathTask pt;
  int64_t N;
};

__device__ __forceinline__ BlockTask block_task(const EntityAttentionShape& sh, const uint8_t* mask,
                                                const Strides3& sm, uint8_t* ok) {
  BlockTask bt;
  bt.pt = task_of(blockIdx.x, sh.P, sh.temporal_bits, sh.B, sh.T, sh.K);
  bt.N = members_of(bt.pt.axis, sh.T, sh.K);
  const GroupView mv = mask_group_view(sm, bt.pt.axis, bt.pt.b, bt.pt.g);
  for (int64_t n = threadIdx.x; n < bt.N; n += blockDim.x) ok[n] = mask ? (mask[mv.base + n * mv.member] != 0) : 1;
  __syncthreads();
  return bt;
}

// One input's rows for this block's group at head h: row n (a member of the group) starts at
// ptr + n * member, its features sd apart. Shared by the forward and backward kernels.
template <typename T> struct GroupRows {
  const T* ptr;
  int64_t member, sd;
};

template <typename T>
__device__ __forceinline__ GroupRows<T> group_rows(const void* data, const Strides6& s, const BlockTask& bt,
                                                   int64_t h) {
  const GroupView g = group_view(s, bt.pt.axis, bt.pt.p, bt.pt.b, bt.pt.g);
  return {static_cast<const T*>(data) + g.base + h * s.h, g.member, s.d};
}

template <typename Tag, typename T, typename A>
__device__ __forceinline__ void load_row(const GroupRows<T>& rows, int64_t n, int64_t Dh, A (&x)[kPerLane]) {
  load_row<Tag>(rows.ptr + n * rows.member, rows.sd, Dh, x);
}

template <typename Tag> __global__ void ea_fwd_kernel(EntityAttentionFwdArgs a) {
  using T = typename Scalar<Tag>::storage;
  using A = typename Scalar<Tag>::acc;
  __shared__ uint8_t ok[kMaxMembers];
  const EntityAttentionShape sh = a.shape;
  const BlockTask bt = block_task(sh, a.mask, a.sm, ok);
  const int64_t h = blockIdx.y;
  const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const Strides6 so = contiguous_strides6(sh.B, sh.T, sh.K, sh.H, sh.Dh);
  const GroupRows<T> q = group_rows<T>(a.q, a.sq, bt, h);
  const GroupRows<T> k = group_rows<T>(a.k, a.sk, bt, h);
  const GroupRows<T> v = group_rows<T>(a.v, a.sv, bt, h);
  const GroupView go = group_view(so, bt.pt.axis, bt.pt.p, bt.pt.b, bt.pt.g);
  T* out = static_cast<T*>(a.out) + go.base + h * so.h;
  A* lse = static_cast<A*>(a.lse) + go.base / sh.Dh + h;
  const A scale = static_cast<A>(a.scale);

  for (int64_t i = warp; i < bt.N; i += warps) {
    A qi[kPerLane], kj[kPerLane], vj[kPerLane], o[kPerLane];
    load_row<Tag>(q, i, sh.Dh, qi);
#pragma unroll
    for (int r = 0; r < kPerLane; ++r) o[r] = A(0);
    OnlineSoftmax<A> st = online_softmax_init<A>();
    for (int64_t j = 0; j < bt.N; ++j) {
      if (!ok[j]) continue;  // masked key: weight 0 (uniform across the warp: no divergence)
      load_row<Tag>(k, j, sh.Dh, kj);
      load_row<Tag>(v, j, sh.Dh, vj);
      const A s = warp_dot(qi, kj) * scale;
      A p;
      const A rescale = online_softmax_step(st, s, p);
#pragma unroll
      for (int r = 0; r < kPerLane; ++r) o[r] = o[r] * rescale + p * vj[r];
    }
    // No present key: l = 0, the output is 0 and lse = -inf (the backward then gives 0 gradients).
    const A inv = st.l > A(0) ? A(1) / st.l : A(0);
    store_row<Tag>(out + i * go.member, sh.Dh, o, inv);
    if ((threadIdx.x & 31) == 0) lse[i * (go.member / sh.Dh)] = online_softmax_lse(st);
  }
}

template <typename Tag> __global__ void ea_bwd_kernel(EntityAttentionBwdArgs a) {
  using T = typename Scalar<Tag>::storage;
  using A = typename Scalar<Tag>::acc;
  __shared__ uint8_t ok[kMaxMembers];
  __shared__ A Dsh[kMaxMembers];  // D_i = sum_j p_ij dp_ij = do_i . o_i
  const EntityAttentionShape sh = a.shape;
  const BlockTask bt = block_task(sh, a.mask, a.sm, ok);
  const int64_t h = blockIdx.y;
  const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const Strides6 so = contiguous_strides6(sh.B, sh.T, sh.K, sh.H, sh.Dh);
  const GroupRows<T> q = group_rows<T>(a.q, a.sq, bt, h);
  const GroupRows<T> k = group_rows<T>(a.k, a.sk, bt, h);
  const GroupRows<T> v = group_rows<T>(a.v, a.sv, bt, h);
  const GroupRows<T> dout = group_rows<T>(a.dout, a.sdo, bt, h);
  const GroupView go = group_view(so, bt.pt.axis, bt.pt.p, bt.pt.b, bt.pt.g);
  const A* lse = static_cast<const A*>(a.lse) + go.base / sh.Dh + h;
  const int64_t lse_member = go.member / sh.Dh;
  const int64_t off = go.base + h * so.h;
  T* dq = static_cast<T*>(a.dq) + off;
  T* dk = static_cast<T*>(a.dk) + off;
  T* dv = static_cast<T*>(a.dv) + off;
  const A scale = static_cast<A>(a.scale);

  // Pass 1, a warp per query i: D_i, then dq_i = scale sum_j p_ij (dp_ij - D_i) k_j.
  for (int64_t i = warp; i < bt.N; i += warps) {
    A qi[kPerLane], doi[kPerLane], kj[kPerLane], vj[kPerLane], g[kPerLane];
    load_row<Tag>(q, i, sh.Dh, qi);
    load_row<Tag>(dout, i, sh.Dh, doi);
    const A lse_i = lse[i * lse_member];
    A Di = A(0);
    for (int64_t j = 0; j < bt.N; ++j) {
      if (!ok[j]) continue;
      load_row<Tag>(k, j, sh.Dh, kj);
      load_row<Tag>(v, j, sh.Dh, vj);
      Di += prob_from_lse(warp_dot(qi, kj) * scale, lse_i) * warp_dot(doi, vj);
    }
#pragma unroll
    for (int r = 0; r < kPerLane; ++r) g[r] = A(0);
    for (int64_t j = 0; j < bt.N; ++j) {
      if (!ok[j]) continue;
      load_row<Tag>(k, j, sh.Dh, kj);
      load_row<Tag>(v, j, sh.Dh, vj);
      const A p = prob_from_lse(warp_dot(qi, kj) * scale, lse_i);
      const A ds = p * (warp_dot(doi, vj) - Di);
#pragma unroll
      for (int r = 0; r < kPerLane; ++r) g[r] += ds * kj[r];
    }
    store_row<Tag>(dq + i * go.member, sh.Dh, g, scale);
    if ((threadIdx.x & 31) == 0) Dsh[i] = Di;
  }
  __syncthreads();

  // Pass 2, a warp per key j: dv_j = sum_i p_ij do_i, dk_j = scale sum_i p_ij (dp_ij - D_i) q_i.
  for (int64_t j = warp; j < bt.N; j += warps) {
    A kj[kPerLane], vj[kPerLane], qi[kPerLane], doi[kPerLane], gk_[kPerLane], gv_[kPerLane];
#pragma unroll
    for (int r = 0; r < kPerLane; ++r) gk_[r] = gv_[r] = A(0);
    if (ok[j]) {  // a masked key got weight 0 everywhere: its gradients are 0
      load_row<Tag>(k, j, sh.Dh, kj);
      load_row<Tag>(v, j, sh.Dh, vj);
      for (int64_t i = 0; i < bt.N; ++i) {
        load_row<Tag>(q, i, sh.Dh, qi);
        load_row<Tag>(dout, i, sh.Dh, doi);
        const A p = prob_from_lse(warp_dot(qi, kj) * scale, lse[i * lse_member]);
        const A ds = p * (warp_dot(doi, vj) - Dsh[i]);
#pragma unroll
        for (int r = 0; r < kPerLane; ++r) {
          gv_[r] += p * doi[r];
          gk_[r] += ds * qi[r];
        }
      }
    }
    store_row<Tag>(dk + j * go.member, sh.Dh, gk_, scale);
    store_row<Tag>(dv + j * go.member, sh.Dh, gv_, A(1));
  }
}

bool sizes_ok(const EntityAttentionShape& s) {
  return s.P >= 1 && s.P <= kMaxPaths && s.Dh >= 1 && s.Dh <= kMaxDh && s.T >= 1 && s.T <= kMaxT &&
         s.K >= 1 && s.K <= kMaxK && s.B >= 1 && s.H >= 1 && s.H <= 65535;
}

// Launch shape: one block per (task, head); as many warps as the largest group has members, at most 8.
template <typename Args> bool launch_dims(const Args& a, dim3& grid, dim3& block) {
  const auto& s = a.shape;
  const int64_t tasks = total_tasks(s.P, s.temporal_bits, s.B, s.T, s.K);
  if (tasks > 2147483647LL) return false;
  int64_t n_max = 0;
  for (int p = 0; p < s.P; ++p) {
    const int64_t n = members_of(path_axis(s.temporal_bits, p), s.T, s.K);
    n_max = n > n_max ? n : n_max;
  }
  const int warps = static_cast<int>(n_max < 8 ? n_max : 8);
  grid = dim3(static_cast<unsigned>(tasks), static_cast<unsigned>(s.H), 1);
  block = dim3(32 * warps, 1, 1);
  return true;
}

}  // namespace

int entity_attention_fwd_cuda(const EntityAttentionFwdArgs& a, cudaStream_t stream) {
  dim3 grid, block;
  if (!sizes_ok(a.shape) || !launch_dims(a, grid, block)) return kBadSize;
  const int dt_status = dispatch_dtype(a.dtype, [&](auto tag) {
    using Tag = typename decltype(tag)::type;
    MDN_LAUNCH(ea_fwd_kernel<Tag>, grid, block, 0, stream)(a);
  });
  if (dt_status != kOk) return dt_status;
  return launch_status();
}

int entity_attention_bwd_cuda(const EntityAttentionBwdArgs& a, cudaStream_t stream) {
  dim3 grid, block;
  if (!sizes_ok(a.shape) || !launch_dims(a, grid, block)) return kBadSize;
  const int dt_status = dispatch_dtype(a.dtype, [&](auto tag) {
    using Tag = typename decltype(tag)::type;
    MDN_LAUNCH(ea_bwd_kernel<Tag>, grid, block, 0, stream)(a);
  });
  if (dt_status != kOk) return dt_status;
  return launch_status();
}

}  // namespace mdn
