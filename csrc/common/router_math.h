// The two-way tempered softmax of the per-entity router and its backward, shared by host and device.
#pragma once

#include "mdn_hd.h"
#include "softmax_math.h"

namespace mdn {

// alpha = softmax([l0, l1] / tau), computed from the difference so it never overflows.
template <typename A> MDN_HD void router_softmax(A l0, A l1, A tau, A& a0, A& a1) {
  const A z0 = l0 / tau, z1 = l1 / tau;
  const A m = z0 > z1 ? z0 : z1;
  const A e0 = exp_acc(z0 - m), e1 = exp_acc(z1 - m);
  const A inv = A(1) / (e0 + e1);
  a0 = e0 * inv;
  a1 = e1 * inv;
}

// Gradient of the logits from the gradient of alpha: dl_j = a_j (dA_j - sum_i a_i dA_i) / tau.
template <typename A> MDN_HD void router_softmax_bwd(A a0, A a1, A dA0, A dA1, A tau, A& dl0, A& dl1) {
  const A dot = a0 * dA0 + a1 * dA1;
  dl0 = a0 * (dA0 - dot) / tau;
  dl1 = a1 * (dA1 - dot) / tau;
}

// 1 / (number of present frames), the weight of one present frame in a masked time mean
// (0 present frames: the mean is 0, any weight works; 1 keeps it finite).
template <typename A> MDN_HD A inv_count(long long present) { return A(1) / A(present > 0 ? present : 1); }

}  // namespace mdn
