// MDN_HD marks a function callable from host and device code. It expands to `__host__ __device__`
// under nvcc and to nothing for the host compiler, so these headers compile everywhere without CUDA.
#pragma once

#if defined(__CUDACC__)
#define MDN_HD __host__ __device__ __forceinline__
#else
#define MDN_HD inline
#endif
