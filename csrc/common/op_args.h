// Argument blocks of the kernels (host and device alike): raw pointers, element strides and sizes.
// The torch layer fills them; the kernels read nothing else.
#pragma once

#include <cstdint>

#include "dtype.h"
#include "group_index.h"
#include "limits.h"  // largest sizes the kernels take: kMaxK, kMaxT, kMaxDh, kMaxPaths (from mdn_fast/_limits.py)

namespace mdn {

struct EntityAttentionShape {
  int P;
  int64_t B, T, K, H, Dh;
  uint64_t temporal_bits;  // bit p set: path p attends along time (else across entities)
};

// What both directions of entity_attention read. The forward and backward blocks extend it (as
// flash-attention's backward parameters extend the forward's), so the backward's block is the forward's
// inputs plus its own fields rather than a copy of each; the argument plumbing fills it once (args/).
//   q, k, v : [P, B, T, K, H, Dh], any strides, element type `dtype`
//   mask    : [B, T, K] bytes (0 = absent key), any strides, or null (all present)
//   scale   : the softmax scale
struct EntityAttentionInputs {
  EntityAttentionShape shape;
  DType dtype;
  const void *q, *k, *v;
  Strides6 sq, sk, sv;
  const uint8_t* mask;
  Strides3 sm;
  double scale;
};

// Forward: out = softmax(scale * q k^T, masked) v per (path, clip, group, head).
//   out     : [P, B, T, K, H, Dh] contiguous, `dtype`
//   lse     : [P, B, T, K, H] contiguous, accumulation type (float; double for Float64),
//             log-sum-exp of the scaled scores of each query row; -inf where the group has no key
struct EntityAttentionFwdArgs : EntityAttentionInputs {
  void* out;
  void* lse;
};

// Backward: dq, dk, dv (contiguous [P, B, T, K, H, Dh], `dtype`) from dout (any strides) and the
// forward's lse. Rows of a group with no present key get zero gradient.
struct EntityAttentionBwdArgs : EntityAttentionInputs {
  const void* dout;
  Strides6 sdo;
  const void* lse;
  void *dq, *dk, *dv;
};

// Strides of a [B, T, K, D] tensor (in elements).
struct Strides4 {
  int64_t b, t, k, d;
};

// What both directions of routed_merge read; the forward and backward blocks extend it likewise.
//   x_st, x_ts : [B, T, K, D], any strides, `dtype`
//   weight     : [K, 2, 2D] contiguous, accumulation type
//   mask       : [B, T, K] bytes or null
//   tau        : the router's softmax temperature
struct RoutedMergeInputs {
  int64_t B, T, K, D;
  DType dtype;
  const void *x_st, *x_ts;
  Strides4 s_st, s_ts;
  const void* weight;
  const uint8_t* mask;
  Strides3 sm;
  double tau;
};

// routed_merge forward, one pass per (b, k):
//   bias       : [K, 2] contiguous, accumulation type
//   y          : [B, T, K, D] contiguous, `dtype`;  alpha: [B, K, 2] contiguous, accumulation type
struct RoutedMergeFwdArgs : RoutedMergeInputs {
  const void* bias;
  void *y, *alpha;
};

// routed_merge backward. dy: [B, T, K, D] any strides, `dtype`; alpha: the forward's; dalpha: [B, K, 2]
// contiguous, acc, or null.
// Outputs: dx_st, dx_ts [B, T, K, D] contiguous `dtype`; dweight [K, 2, 2D], dbias [K, 2] contiguous acc.
// Scratch (acc type, given by the caller so device code allocates nothing):
//   dlogits [B, K, 2], pooled [B, K, 2D]: per-(b, k) partials, reduced over b afterwards in a fixed
//   order, so the weight gradient is deterministic.
struct RoutedMergeBwdArgs : RoutedMergeInputs {
  const void* dy;
  Strides4 s_dy;
  const void *alpha, *dalpha;
  void *dx_st, *dx_ts, *dweight, *dbias;
  void *scratch_dlogits, *scratch_pooled;
};

}  // namespace mdn
