// Device-side element types: loads widen to the accumulation type, stores narrow with round-to-nearest
// (cuda_fp16 / cuda_bf16 intrinsics), plus warp and block reductions shared by the CUDA kernels.
#pragma once

#include "cuda_api.cuh"

#include "../common/dtype.h"

namespace mdn {

template <typename T> struct DevScalar;
template <> struct DevScalar<float> {
  using acc = float;
  static __device__ __forceinline__ float load(float x) { return x; }
  static __device__ __forceinline__ float store(float x) { return x; }
};
template <> struct DevScalar<double> {
  using acc = double;
  static __device__ __forceinline__ double load(double x) { return x; }
  static __device__ __forceinline__ double store(double x) { return x; }
};
template <> struct DevScalar<__half> {
  using acc = float;
  static __device__ __forceinline__ float load(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half store(float x) { return __float2half_rn(x); }
};
template <> struct DevScalar<__nv_bfloat16> {
  using acc = float;
  static __device__ __forceinline__ float load(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 store(float x) { return __float2bfloat16_rn(x); }
};

// Runs launch(DTypeTag<scalar>{}) for the storage type of `dt` (one place for the dtype switch of every
// launcher); kBadDType for a dtype no kernel takes.
template <typename T> struct DTypeTag { using type = T; };
template <typename F> inline int dispatch_dtype(DType dt, F&& launch) {
  switch (dt) {
    case DType::Float32: launch(DTypeTag<float>{}); return kOk;
    case DType::Float64: launch(DTypeTag<double>{}); return kOk;
    case DType::Float16: launch(DTypeTag<__half>{}); return kOk;
    case DType::BFloat16: launch(DTypeTag<__nv_bfloat16>{}); return kOk;
    default: return kBadDType;
  }
}

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

// Turn the error state after a launch into a mdn::Status code.
inline int launch_status() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? kOk : kCudaErrorBase + static_cast<int>(e);
}

}  // namespace mdn
