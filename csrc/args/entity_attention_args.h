// entity_attention's argument plumbing, torch-free: checks the op's arguments and fills the kernels'
// argument blocks (common/op_args.h). Used by the torch layer (torch/*_op.cpp: CPU and CUDA) and by the
// CUDA emulation (emu/emu_ops.cpp), so the emulated kernels get exactly the blocks a GPU launch gets.
// Each call returns "" or the error naming the argument. Two steps per direction, because the caller
// allocates the outputs in between (torch allocates them; the emulation adds guard pads):
//   *_inputs fills the shape and every input field,
//   *_outputs checks the caller's outputs (contiguous, sizes, dtype, device) and sets their pointers.
#pragma once

#include "arg_checks.h"

namespace mdn {

// q, k, v [P, B, T, K, H, Dh] (any strides, one float dtype and device); axes: P entries, 0 spatial,
// 1 temporal; mask: [B, T, K] bool or absent; scale: the softmax scale.
ArgError entity_attention_fwd_inputs(const TensorRef& q, const TensorRef& k, const TensorRef& v, const int64_t* axes,
                                     int64_t n_axes, const TensorRef& mask, double scale, EntityAttentionFwdArgs* a);
// out: q's sizes, q's dtype; lse: [P, B, T, K, H] in the accumulation dtype.
ArgError entity_attention_fwd_outputs(const TensorRef& q, const TensorRef& out, const TensorRef& lse,
                                      EntityAttentionFwdArgs* a);

// grad_out like q (any strides); lse: the forward's.
ArgError entity_attention_bwd_inputs(const TensorRef& grad_out, const TensorRef& q, const TensorRef& k,
                                     const TensorRef& v, const TensorRef& lse, const int64_t* axes, int64_t n_axes,
                                     const TensorRef& mask, double scale, EntityAttentionBwdArgs* a);
// dq, dk, dv: q's sizes and dtype, contiguous.
ArgError entity_attention_bwd_outputs(const TensorRef& q, const TensorRef& dq, const TensorRef& dk,
                                      const TensorRef& dv, EntityAttentionBwdArgs* a);

}  // namespace mdn
