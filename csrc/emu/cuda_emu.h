// CPU emulation of the CUDA execution model, for running csrc/cuda's kernels without a GPU.
//
// Included (through cuda/cuda_api.cuh) when the kernel sources are compiled by a host C++ compiler
// with MDN_CUDA_EMULATE defined; tests/ops/_cuda_emu.py builds them so, with emulator.cpp, fiber.cpp and
// emu_ops.cpp, into one shared library. The .cu files themselves are not changed for it.
//
// Model: every CUDA thread of a block is a fiber; blocks run one after another. A thread runs until it
// reaches __syncthreads() or a warp shuffle, then the scheduler (emulator.cpp) runs others, in an order
// the caller chooses: lockstep (every thread to its next sync point, in order, reversed or shuffled) or
// warp-serial (one warp alone up to its next barrier, warps in order or reversed). Barriers and shuffles
// are checked (partial barriers, barriers after an exit, masks naming exited or absent lanes, lanes
// disagreeing on a mask, deadlock), as are the launch limits; __shared__ memory is filled with a chosen
// byte before every block. A failed check stops the launch with a message naming the kernel, block and
// thread, and the launch reports cudaErrorLaunchFailure.
//
// Not modelled: the memory model (threads interleave only at sync points, so a race between two
// threads that never meet at one is not seen), device intrinsics (__expf / __logf run as the host's expf / logf),
// FMA contraction (the host compiler's choice applies), occupancy and speed.
#pragma once

#include <cuda_bf16.h>  // the toolkit's own __half / __nv_bfloat16 with their host conversions
#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

// One copy per kernel (a function-local static) shared by the block's fibers: blocks run one at a
// time, so one copy is all a block needs. emulator.cpp finds these variables in the library's symbol
// table to poison them before every block and to check the static shared memory of each kernel.
#undef __shared__
#define __shared__ static

namespace mdn_emu {

struct Coords {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
// The running fiber's coordinates.
const Coords& coords();

void syncthreads(const char* file, int line);

// One lane's part of __shfl_xor_sync: publishes `in` (size bytes), waits for every lane of `mask`,
// then reads lane (lane ^ lane_mask)'s bytes into `out`.
void shuffle_xor(const char* file, int line, unsigned mask, int lane_mask, int width, const void* in, void* out,
                 std::size_t size);

template <typename T> T shfl_xor(const char* file, int line, unsigned mask, T var, int lane_mask, int width = 32) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8, "shuffles move up to 8 bytes");
  T out;
  shuffle_xor(file, line, mask, lane_mask, width, &var, &out, sizeof(T));
  return out;
}

struct LaunchConfig {
  const char* kernel;  // from kernel_name<&kernel>()
  const char* file;
  int line;
  dim3 grid, block;
  std::size_t shared_bytes;  // dynamic shared memory (the kernels use none)
  cudaStream_t stream;       // ignored: launches run to completion on the calling thread
};

// Runs body(ctx) once per thread of the grid under the configured schedule; records an error (for
// cudaGetLastError and last_error_message) instead of running when the launch is invalid.
void run_grid(const LaunchConfig& cfg, void (*body)(void*), void* ctx);

// "... [with auto Kernel = <name>]": the kernel's name as the compiler spells it.
template <auto Kernel> const char* kernel_name() { return __PRETTY_FUNCTION__; }

template <auto Kernel> struct Launch {
  LaunchConfig cfg;
  template <typename... Args> void operator()(Args... args) {
    auto body = [&]() { Kernel(args...); };  // each thread gets its own copy of the parameters
    using Body = decltype(body);
    run_grid(cfg, [](void* p) { (*static_cast<Body*>(p))(); }, &body);
  }
};

}  // namespace mdn_emu

namespace mdn_emu {
// The runtime's error calls, as macros below: the process may also hold the real libcudart (a CUDA
// build of torch), whose symbols would otherwise win the dynamic linker's lookup.
cudaError_t get_last_error();
const char* get_error_string(cudaError_t error);
}  // namespace mdn_emu

#define cudaGetLastError ::mdn_emu::get_last_error
#define cudaGetErrorString ::mdn_emu::get_error_string

#define threadIdx (::mdn_emu::coords().thread_idx)
#define blockIdx (::mdn_emu::coords().block_idx)
#define blockDim (::mdn_emu::coords().block_dim)
#define gridDim (::mdn_emu::coords().grid_dim)
#define __syncthreads() ::mdn_emu::syncthreads(__FILE__, __LINE__)
#define __shfl_xor_sync(...) ::mdn_emu::shfl_xor(__FILE__, __LINE__, __VA_ARGS__)

#define MDN_LAUNCH(kernel, grid, block, shared_bytes, stream)                                            \
  ::mdn_emu::Launch<&kernel>{{::mdn_emu::kernel_name<&kernel>(), __FILE__, __LINE__, dim3(grid), dim3(block), \
                              static_cast<std::size_t>(shared_bytes), (stream)}}
