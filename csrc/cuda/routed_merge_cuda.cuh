// CUDA kernels of routed_merge (forward and backward) on raw pointers, strides and a stream.
// Layouts and semantics: common/op_args.h. Returns a mdn::Status code.
#pragma once

#include "cuda_api.cuh"

#include "../common/op_args.h"

namespace mdn {

int routed_merge_fwd_cuda(const RoutedMergeFwdArgs& a, cudaStream_t stream);
int routed_merge_bwd_cuda(const RoutedMergeBwdArgs& a, cudaStream_t stream);

}  // namespace mdn
