// The CUDA API the kernels use, in one place. nvcc gets the real runtime; a host C++ compiler with
// MDN_CUDA_EMULATE defined gets csrc/emu's CPU emulation of the same names (threads as fibers, blocks
// one after another, checked barriers and shuffles). Every launch goes through MDN_LAUNCH:
//   MDN_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...);
// so the same .cu files compile unmodified for the GPU and for the emulation; launch_status() then
// turns the launch's error state into the kernels' Status code.
#pragma once

#if defined(MDN_CUDA_EMULATE)
#include "../emu/cuda_emu.h"
#else
#include <cuda_runtime.h>  // cuda_fp16 / cuda_bf16 come with dtype.h, below
#define MDN_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<grid, block, shared_bytes, stream>>>
#endif

#include "../common/dtype.h"

namespace mdn {

// The error state after a launch as a mdn::Status code.
inline int launch_status() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? kOk : kCudaErrorBase + static_cast<int>(e);
}

}  // namespace mdn
