// Where the op files' kernels run. The same op sources compile into two libraries:
//   mdn_fast._C      (MDN_DISPATCH_KEY = CPU): the host kernels, on torch's intra-op thread pool;
//   mdn_fast._C_cuda (MDN_FAST_CUDA_LIBRARY, MDN_DISPATCH_KEY = CUDA): the CUDA kernels, on the current
//                    stream of the tensors' device. Loaded only when torch is a CUDA build, so one wheel
//                    serves a CPU torch and a CUDA torch.
#pragma once

#include "stable_ref.h"

#if defined(MDN_FAST_CUDA_LIBRARY)
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <cuda_runtime_api.h>

#include "../cuda/entity_attention_cuda.cuh"
#include "../cuda/routed_merge_cuda.cuh"
#define MDN_DISPATCH_KEY CUDA
#else
#include "../cpu/entity_attention_cpu.h"
#include "../cpu/routed_merge_cpu.h"
#define MDN_DISPATCH_KEY CPU
#endif

namespace mdn_torch {

#if defined(MDN_FAST_CUDA_LIBRARY)
// Runs launch(stream) on the current CUDA stream of `like`'s device, with that device current.
template <typename F> int on_device(const Tensor& like, F&& launch) {
  const torch::stable::accelerator::DeviceGuard guard(like.get_device_index());
  void* stream = nullptr;
  STD_TORCH_CHECK(aoti_torch_get_current_cuda_stream(like.get_device_index(), &stream) == AOTI_TORCH_SUCCESS,
                  "mdn_fast: cannot get the current CUDA stream");
  return launch(static_cast<cudaStream_t>(stream));
}
inline const char* cuda_text(int code) {
  return code >= mdn::kCudaErrorBase ? cudaGetErrorString(static_cast<cudaError_t>(code - mdn::kCudaErrorBase))
                                     : nullptr;
}
#define MDN_RUN(like, cpu_call, cuda_call) ::mdn_torch::on_device(like, [&](cudaStream_t stream) { return cuda_call; })
#else
inline void cpu_parallel_for(int64_t begin, int64_t end, int64_t grain, const mdn::ParallelBody& body) {
  torch::stable::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) { body(b, e); });
}
inline const char* cuda_text(int) { return nullptr; }
#define MDN_RUN(like, cpu_call, cuda_call) (cpu_call)
#endif

}  // namespace mdn_torch
