// Host kernels of entity_attention (forward and backward) on raw pointers and strides.
// Layouts and semantics: common/op_args.h. Returns a mdn::Status code (0 = ok).
#pragma once

#include "../common/op_args.h"
#include "parallel.h"

namespace mdn {

int entity_attention_fwd_cpu(const EntityAttentionFwdArgs& a, const ParallelFor& parallel_for);
int entity_attention_bwd_cpu(const EntityAttentionBwdArgs& a, const ParallelFor& parallel_for);

}  // namespace mdn
