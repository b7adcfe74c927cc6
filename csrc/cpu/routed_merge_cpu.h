// Host kernels of routed_merge (forward and backward) on raw pointers and strides.
// Layouts and semantics: common/op_args.h. Returns a mdn::Status code (0 = ok).
#pragma once

#include "../common/op_args.h"
#include "parallel.h"

namespace mdn {

int routed_merge_fwd_cpu(const RoutedMergeFwdArgs& a, const ParallelFor& parallel_for);
int routed_merge_bwd_cpu(const RoutedMergeBwdArgs& a, const ParallelFor& parallel_for);

}  // namespace mdn
