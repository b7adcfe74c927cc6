// The warp and block sums of the CUDA kernels (the element types and their conversions are
// common/dtype.h's Scalar<Tag>, shared with the CPU kernels).
#pragma once

#include "cuda_api.cuh"

namespace mdn {

template <typename A> __device__ __forceinline__ A warp_sum(A x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Sum of x over the block (every thread gets it). `smem` holds one A per warp; blockDim.x % 32 == 0.
template <typename A> __device__ __forceinline__ A block_sum(A x, A* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  x = warp_sum(x);
  __syncthreads();  // smem may still be read by a previous call
  if (lane == 0) smem[warp] = x;
  __syncthreads();
  A total = A(0);
  for (int w = 0; w < warps; ++w) total += smem[w];
  return total;
}

}  // namespace mdn
