#include "routed_merge_args.h"

namespace mdn {
namespace {

// The block both directions read (RoutedMergeInputs): x_st's shape and dtype, x_ts like it, the router
// weight and the mask.
ArgError common_inputs(const TensorRef& x_st, const TensorRef& x_ts, const TensorRef& weight, double tau,
                       const TensorRef& mask, RoutedMergeInputs* a) {
  if (ArgError e = check_same(x_ts, "x_ts", x_st, "x_st"); !e.empty()) return e;
  if (x_st.dim != 4) return cat("x_st: expected 4 dims [B, T, K, D], got ", sizes_str(x_st));
  if (ArgError e = check_nonempty(x_st, "x_st"); !e.empty()) return e;
  a->B = x_st.sizes[0];
  a->T = x_st.sizes[1];
  a->K = x_st.sizes[2];
  a->D = x_st.sizes[3];
  if (ArgError e = kernel_dtype(x_st, "x_st", &a->dtype); !e.empty()) return e;
  const ElemType acc = acc_elem(x_st.elem);
  if (!has_sizes(weight, {a->K, 2, 2 * a->D}) || !is_contiguous(weight) || weight.elem != acc ||
      !same_device(weight, x_st))
    return cat("weight: expected a contiguous [K, 2, 2D] = [", a->K, ", 2, ", 2 * a->D, "] ", elem_name(acc),
               " tensor on ", device_str(x_st), ", got ", sizes_str(weight), " ", elem_name(weight.elem), " on ",
               device_str(weight));
  if (ArgError e = mask_arg(mask, x_st, a->B, a->T, a->K, &a->mask, &a->sm); !e.empty()) return e;
  a->x_st = x_st.data;
  a->x_ts = x_ts.data;
  a->s_st = strides4(x_st);
  a->s_ts = strides4(x_ts);
  a->weight = weight.data;
  a->tau = tau;
  return {};
}

// A [B, K, 2] accumulation-dtype tensor of the forward (alpha) or its gradient.
ArgError check_bk2(const TensorRef& t, const char* name, const char* what, const TensorRef& x_st, int64_t B,
                   int64_t K) {
  const ElemType acc = acc_elem(x_st.elem);
  if (!has_sizes(t, {B, K, 2}) || !is_contiguous(t) || t.elem != acc || !same_device(t, x_st))
    return cat(name, ": expected ", what, " (a contiguous [B, K, 2] = [", B, ", ", K, ", 2] ", elem_name(acc),
               " tensor), got ", sizes_str(t), " ", elem_name(t.elem));
  return {};
}

}  // namespace

ArgError routed_merge_fwd_inputs(const TensorRef& x_st, const TensorRef& x_ts, const TensorRef& weight,
                                 const TensorRef& bias, double tau, const TensorRef& mask, RoutedMergeFwdArgs* a) {
  *a = {};
  if (ArgError e = common_inputs(x_st, x_ts, weight, tau, mask, a); !e.empty()) return e;
  const ElemType acc = acc_elem(x_st.elem);
  if (!has_sizes(bias, {a->K, 2}) || !is_contiguous(bias) || bias.elem != acc || !same_device(bias, x_st))
    return cat("bias: expected a contiguous [K, 2] ", elem_name(acc), " tensor, got ", sizes_str(bias), " ",
               elem_name(bias.elem));
  a->bias = bias.data;
  return {};
}

ArgError routed_merge_fwd_outputs(const TensorRef& x_st, const TensorRef& y, const TensorRef& alpha,
                                  RoutedMergeFwdArgs* a) {
  if (ArgError e = check_output(y, "y", {a->B, a->T, a->K, a->D}, x_st.elem, x_st); !e.empty()) return e;
  if (ArgError e = check_output(alpha, "alpha", {a->B, a->K, 2}, acc_elem(x_st.elem), x_st); !e.empty()) return e;
  a->y = y.data;
  a->alpha = alpha.data;
  return {};
}

ArgError routed_merge_bwd_inputs(const TensorRef& grad_y, const TensorRef& grad_alpha, const TensorRef& x_st,
                                 const TensorRef& x_ts, const TensorRef& weight, const TensorRef& alpha, double tau,
                                 const TensorRef& mask, RoutedMergeBwdArgs* a) {
  *a = {};
  if (ArgError e = check_same(grad_y, "grad_y", x_st, "x_st"); !e.empty()) return e;
  if (ArgError e = common_inputs(x_st, x_ts, weight, tau, mask, a); !e.empty()) return e;
  if (ArgError e = check_bk2(alpha, "alpha", "the forward's routing weights", x_st, a->B, a->K); !e.empty()) return e;
  if (grad_alpha.defined) {
    if (ArgError e = check_bk2(grad_alpha, "grad_alpha", "alpha's gradient", x_st, a->B, a->K); !e.empty()) return e;
    a->dalpha = grad_alpha.data;
  }
  a->dy = grad_y.data;
  a->s_dy = strides4(grad_y);
  a->alpha = alpha.data;
  return {};
}

ArgError routed_merge_bwd_outputs(const TensorRef& x_st, const TensorRef& dx_st, const TensorRef& dx_ts,
                                  const TensorRef& dweight, const TensorRef& dbias, const TensorRef& scratch_dlogits,
                                  const TensorRef& scratch_pooled, RoutedMergeBwdArgs* a) {
  const ElemType acc = acc_elem(x_st.elem);
  const std::initializer_list<int64_t> x_sizes = {a->B, a->T, a->K, a->D};
  if (ArgError e = check_output(dx_st, "dx_st", x_sizes, x_st.elem, x_st); !e.empty()) return e;
  if (ArgError e = check_output(dx_ts, "dx_ts", x_sizes, x_st.elem, x_st); !e.empty()) return e;
  if (ArgError e = check_output(dweight, "dweight", {a->K, 2, 2 * a->D}, acc, x_st); !e.empty()) return e;
  if (ArgError e = check_output(dbias, "dbias", {a->K, 2}, acc, x_st); !e.empty()) return e;
  if (ArgError e = check_output(scratch_dlogits, "scratch_dlogits", {a->B, a->K, 2}, acc, x_st); !e.empty()) return e;
  if (ArgError e = check_output(scratch_pooled, "scratch_pooled", {a->B, a->K, 2 * a->D}, acc, x_st); !e.empty())
    return e;
  a->dx_st = dx_st.data;
  a->dx_ts = dx_ts.data;
  a->dweight = dweight.data;
  a->dbias = dbias.data;
  a->scratch_dlogits = scratch_dlogits.data;
  a->scratch_pooled = scratch_pooled.data;
  return {};
}

}  // namespace mdn
