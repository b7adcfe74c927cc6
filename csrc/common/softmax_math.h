// Softmax pieces shared by the host and device kernels: a numerically safe exp, the online-softmax
// update (running max m, running sum l of exp(s - m)) and the log-sum-exp it yields.
#pragma once

#include <cmath>

#include "mdn_hd.h"

namespace mdn {

template <typename A> MDN_HD A neg_inf() { return -HUGE_VAL; }
template <> MDN_HD float neg_inf<float>() { return -HUGE_VALF; }

// exp(x) that is 0 for x = -inf (plain exp already is; named so call sites read as intent) and
// that uses the fast device intrinsic for float under nvcc.
MDN_HD float exp_acc(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  return std::exp(x);
#endif
}
MDN_HD double exp_acc(double x) { return exp(x); }

MDN_HD float log_acc(float x) {
#if defined(__CUDA_ARCH__)
  return __logf(x);
#else
  return std::log(x);
#endif
}
MDN_HD double log_acc(double x) { return log(x); }

// Running state of a softmax over a stream of scores: m = max so far, l = sum exp(s - m).
template <typename A> struct OnlineSoftmax {
  A m;
  A l;
};

template <typename A> MDN_HD OnlineSoftmax<A> online_softmax_init() { return {neg_inf<A>(), A(0)}; }

// Add one score s. Returns the factor by which an accumulator of exp-weighted values built so far
// must be rescaled, and writes p = exp(s - m_new), the weight of the new value. Masked keys never come
// here (the callers skip them): a score of -inf is a present key's (an infinite q or k) and weighs 0
// beside any finite score; when every score is -inf the state becomes NaN, as softmax itself gives.
template <typename A> MDN_HD A online_softmax_step(OnlineSoftmax<A>& st, A s, A& p) {
  const A m_new = s > st.m ? s : st.m;
  const A rescale = exp_acc(st.m - m_new);  // exp(-inf) = 0 on the first finite score
  p = exp_acc(s - m_new);
  st.l = st.l * rescale + p;
  st.m = m_new;
  return rescale;
}

// Merge two partial states (as when lanes or threads each saw part of the scores). Returns the
// rescale factors for a's and b's accumulators in ra, rb.
template <typename A> MDN_HD OnlineSoftmax<A> online_softmax_merge(OnlineSoftmax<A> a, OnlineSoftmax<A> b,
                                                                  A& ra, A& rb) {
  const A m = a.m > b.m ? a.m : b.m;
  if (m == neg_inf<A>()) {
    ra = A(1);
    rb = A(1);
    return a;
  }
  ra = exp_acc(a.m - m);
  rb = exp_acc(b.m - m);
  return {m, a.l * ra + b.l * rb};
}

// log(sum exp(s)) of the scores seen; -inf when none was seen (no present key), NaN when the scores made
// the state NaN (a NaN or +inf score, or all -inf): the backward then gives NaN, as the forward did.
template <typename A> MDN_HD A online_softmax_lse(const OnlineSoftmax<A>& st) {
  return st.l > A(0) ? st.m + log_acc(st.l) : (st.l == A(0) ? neg_inf<A>() : st.l);
}

// Softmax probability of score s given the row's log-sum-exp (0 for a masked key or an empty row).
template <typename A> MDN_HD A prob_from_lse(A s, A lse) {
  return (s == neg_inf<A>() || lse == neg_inf<A>()) ? A(0) : exp_acc(s - lse);
}

}  // namespace mdn
