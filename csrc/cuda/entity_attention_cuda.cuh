// CUDA kernels of entity_attention (forward and backward), all paths in one launch, on raw pointers,
// strides and a stream. Layouts and semantics: common/op_args.h. Returns a mdn::Status code
// (kCudaErrorBase + cudaError_t when a launch failed).
#pragma once

#include "cuda_api.cuh"

#include "../common/op_args.h"

namespace mdn {

int entity_attention_fwd_cuda(const EntityAttentionFwdArgs& a, cudaStream_t stream);
int entity_attention_bwd_cuda(const EntityAttentionBwdArgs& a, cudaStream_t stream);

}  // namespace mdn
