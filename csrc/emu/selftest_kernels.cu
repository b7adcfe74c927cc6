// Kernels with planted bugs (and their correct twins) that the emulator's checks must catch; run by
// tests/ops/test_cuda_emulated.py through mdn_emu_selftest(). Emulation only: not part of any GPU build
// (big_shared_kernel does not even compile for a GPU: 64 KiB of static shared memory).
#include <cstring>
#include <string>

#include "../cuda/reduce.cuh"
#include "emulator.h"

namespace mdn {
namespace selftest {

// Correct: every thread gets the block's sum of threadIdx.x (warp sums, then a block sum in shared memory).
__global__ void block_sum_kernel(float* out) {
  __shared__ float red[32];
  out[threadIdx.x] = block_sum(static_cast<float>(threadIdx.x), red);
}

// Threads >= 40 leave before the barrier the others wait at.
__global__ void partial_barrier_kernel(float* out) {
  if (threadIdx.x >= 40) return;
  __syncthreads();
  out[threadIdx.x] = 1.f;
}

// Odd and even threads wait at two different barriers.
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x & 1) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.f;
}

// A full-mask warp sum in a block of 48 threads: the second warp has 16 lanes.
__global__ void shuffle_absent_lane_kernel(float* out) { out[threadIdx.x] = warp_sum(1.f); }

// Lane 5 exits, the others name it in a full-mask warp sum.
__global__ void shuffle_exited_lane_kernel(float* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = warp_sum(1.f);
}

// Lane 0 passes the full mask, the other lanes leave out lane 31.
__global__ void shuffle_mask_disagree_kernel(float* out) {
  const unsigned mask = threadIdx.x == 0 ? 0xffffffffu : 0x7fffffffu;
  out[threadIdx.x] = __shfl_xor_sync(mask, 1.f, 1);
}

// Lane 0 waits at the barrier while lanes 1..31 wait for it in a shuffle.
__global__ void deadlock_kernel(float* out) {
  if (threadIdx.x == 0) __syncthreads();
  else out[threadIdx.x] = warp_sum(1.f);
  if (threadIdx.x != 0) __syncthreads();
}

// Reads another thread's shared slot: with the barrier right, without it a read of poisoned memory.
template <bool Barrier> __global__ void exchange_kernel(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = static_cast<float>(threadIdx.x);
  if (Barrier) __syncthreads();
  out[threadIdx.x] = s[63 - threadIdx.x];
}

// Reads the other warp's slot after a warp-level sum but no block barrier: every lockstep order has all
// threads write before any shuffle completes, so only a warp-serial schedule sees the bug.
__global__ void warp_only_sync_kernel(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = static_cast<float>(threadIdx.x);
  const float w = warp_sum(1.f);
  out[threadIdx.x] = s[(threadIdx.x + 32) % 64] + w - 32.f;
}

__global__ void big_shared_kernel(float* out) {
  __shared__ float s[16384];  // 64 KiB
  s[threadIdx.x] = 1.f;
  out[threadIdx.x] = s[threadIdx.x];
}

__global__ void grid_kernel(float* out) { out[0] = 1.f; }

}  // namespace selftest
}  // namespace mdn

// Launches self-test `name` on host memory `out` (room for 1024 floats); 0 when the launch succeeded,
// else 2 with the emulator's message in err.
extern "C" int mdn_emu_selftest(const char* name, float* out, char* err, long long err_len) {
  using namespace mdn::selftest;
  const std::string n(name);
  if (n == "block_sum") MDN_LAUNCH(block_sum_kernel, 1, 96, 0, nullptr)(out);
  else if (n == "partial_barrier") MDN_LAUNCH(partial_barrier_kernel, 2, 64, 0, nullptr)(out);
  else if (n == "divergent_barrier") MDN_LAUNCH(divergent_barrier_kernel, 1, 64, 0, nullptr)(out);
  else if (n == "shuffle_absent_lane") MDN_LAUNCH(shuffle_absent_lane_kernel, 1, 48, 0, nullptr)(out);
  else if (n == "shuffle_exited_lane") MDN_LAUNCH(shuffle_exited_lane_kernel, 1, 32, 0, nullptr)(out);
  else if (n == "shuffle_mask_disagree") MDN_LAUNCH(shuffle_mask_disagree_kernel, 1, 32, 0, nullptr)(out);
  else if (n == "deadlock") MDN_LAUNCH(deadlock_kernel, 1, 32, 0, nullptr)(out);
  else if (n == "exchange") MDN_LAUNCH(exchange_kernel<true>, 1, 64, 0, nullptr)(out);
  else if (n == "exchange_no_barrier") MDN_LAUNCH(exchange_kernel<false>, 1, 64, 0, nullptr)(out);
  else if (n == "warp_only_sync") MDN_LAUNCH(warp_only_sync_kernel, 1, 64, 0, nullptr)(out);
  else if (n == "big_shared") MDN_LAUNCH(big_shared_kernel, 1, 32, 0, nullptr)(out);
  else if (n == "too_many_threads") MDN_LAUNCH(grid_kernel, 1, 1025, 0, nullptr)(out);
  else if (n == "grid_too_tall") MDN_LAUNCH(grid_kernel, dim3(1, 70000, 1), 32, 0, nullptr)(out);
  else if (n == "dynamic_shared") MDN_LAUNCH(grid_kernel, 1, 32, 49153, nullptr)(out);
  else {
    std::snprintf(err, static_cast<std::size_t>(err_len), "no self-test %s", name);
    return 1;
  }
  if (cudaGetLastError() == cudaSuccess) return 0;
  std::snprintf(err, static_cast<std::size_t>(err_len), "%s", mdn_emu::take_error_message().c_str());
  return 2;
}
