// routed_merge's torch ops (schemas in library.cpp); the same pattern as entity_attention_op.cpp.
#include "../args/routed_merge_args.h"
#include "launch.h"

namespace {

using namespace mdn_torch;

std::tuple<Tensor, Tensor> routed_merge_fwd(Tensor x_st, Tensor x_ts, Tensor weight, Tensor bias, double tau,
                                            std::optional<Tensor> mask) {
  mdn::RoutedMergeFwdArgs a;
  const mdn::TensorRef rx = ref(x_st, "x_st");
  check(mdn::routed_merge_fwd_inputs(rx, ref(x_ts, "x_ts"), ref(weight, "weight"), ref(bias, "bias"), tau,
                                     ref(mask, "mask"), &a));
  Tensor y = new_output(sizes_of(x_st), x_st.scalar_type(), x_st);
  Tensor alpha = new_output({a.B, a.K, 2}, weight.scalar_type(), x_st);
  check(mdn::routed_merge_fwd_outputs(rx, ref(y, "y"), ref(alpha, "alpha"), &a));
  const int st = MDN_RUN(x_st, mdn::routed_merge_fwd_cpu(a, cpu_parallel_for), mdn::routed_merge_fwd_cuda(a, stream));
  check_status(st, "routed_merge_fwd", cuda_text(st));
  return {y, alpha};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> routed_merge_bwd(Tensor grad_y, std::optional<Tensor> grad_alpha,
                                                            Tensor x_st, Tensor x_ts, Tensor weight, Tensor alpha,
                                                            double tau, std::optional<Tensor> mask) {
  mdn::RoutedMergeBwdArgs a;
  const mdn::TensorRef rx = ref(x_st, "x_st");
  // alpha's gradient reaches the kernel contiguous in the accumulation dtype (autograd may give a view);
  // converted only when it is not (each conversion is a dispatcher call by name, ~1 us even when a no-op).
  std::optional<Tensor> dalpha;
  if (grad_alpha.has_value() && grad_alpha->defined()) {
    dalpha = *grad_alpha;
    if (dalpha->scalar_type() != weight.scalar_type()) dalpha = torch::stable::to(*dalpha, weight.scalar_type());
    if (!dalpha->is_contiguous()) dalpha = torch::stable::contiguous(*dalpha);
  }
  check(mdn::routed_merge_bwd_inputs(ref(grad_y, "grad_y"), ref(dalpha, "grad_alpha"), rx, ref(x_ts, "x_ts"),
                                     ref(weight, "weight"), ref(alpha, "alpha"), tau, ref(mask, "mask"), &a));
  const ScalarType acc = weight.scalar_type();
  const auto xs = sizes_of(x_st);
  Tensor dx_st = new_output(xs, x_st.scalar_type(), x_st), dx_ts = new_output(xs, x_st.scalar_type(), x_st);
  Tensor dweight = new_output(sizes_of(weight), acc, x_st), dbias = new_output({a.K, 2}, acc, x_st);
  Tensor scratch_dl = empty_contiguous({a.B, a.K, 2}, acc, x_st);
  Tensor scratch_pooled = empty_contiguous({a.B, a.K, 2 * a.D}, acc, x_st);
  check(mdn::routed_merge_bwd_outputs(rx, ref(dx_st, "dx_st"), ref(dx_ts, "dx_ts"), ref(dweight, "dweight"),
                                      ref(dbias, "dbias"), ref(scratch_dl, "scratch_dlogits"),
                                      ref(scratch_pooled, "scratch_pooled"), &a));
  const int st = MDN_RUN(x_st, mdn::routed_merge_bwd_cpu(a, cpu_parallel_for), mdn::routed_merge_bwd_cuda(a, stream));
  check_status(st, "routed_merge_bwd", cuda_text(st));
  return {dx_st, dx_ts, dweight, dbias};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(mdn_fast, MDN_DISPATCH_KEY, m) {
  m.impl("routed_merge_fwd", TORCH_BOX(&routed_merge_fwd));
  m.impl("routed_merge_bwd", TORCH_BOX(&routed_merge_bwd));
}
