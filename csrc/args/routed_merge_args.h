// routed_merge's argument plumbing, torch-free (see entity_attention_args.h for the two-step pattern).
#pragma once

#include "arg_checks.h"

namespace mdn {

// x_st, x_ts [B, T, K, D] (any strides, one float dtype and device); weight [K, 2, 2D] and bias [K, 2]
// contiguous in the accumulation dtype; mask [B, T, K] bool or absent.
ArgError routed_merge_fwd_inputs(const TensorRef& x_st, const TensorRef& x_ts, const TensorRef& weight,
                                 const TensorRef& bias, double tau, const TensorRef& mask, RoutedMergeFwdArgs* a);
// y: [B, T, K, D] in x's dtype; alpha: [B, K, 2] in the accumulation dtype.
ArgError routed_merge_fwd_outputs(const TensorRef& x_st, const TensorRef& y, const TensorRef& alpha,
                                  RoutedMergeFwdArgs* a);

// grad_y like x_st (any strides); grad_alpha: [B, K, 2] contiguous accumulation dtype, or absent;
// alpha: the forward's.
ArgError routed_merge_bwd_inputs(const TensorRef& grad_y, const TensorRef& grad_alpha, const TensorRef& x_st,
                                 const TensorRef& x_ts, const TensorRef& weight, const TensorRef& alpha, double tau,
                                 const TensorRef& mask, RoutedMergeBwdArgs* a);
// dx_st, dx_ts [B, T, K, D] x's dtype; dweight [K, 2, 2D], dbias [K, 2], and the scratch dlogits [B, K, 2]
// and pooled [B, K, 2D], all in the accumulation dtype.
ArgError routed_merge_bwd_outputs(const TensorRef& x_st, const TensorRef& dx_st, const TensorRef& dx_ts,
                                  const TensorRef& dweight, const TensorRef& dbias, const TensorRef& scratch_dlogits,
                                  const TensorRef& scratch_pooled, RoutedMergeBwdArgs* a);

}  // namespace mdn
