#include "entity_attention_args.h"

namespace mdn {
namespace {

ArgError axes_bits(const int64_t* axes, int64_t n_axes, int64_t P, uint64_t* bits) {
  if (n_axes != P) return cat("axes: expected ", P, " entries (one per path), got ", n_axes);
  if (P > kMaxPaths)
    return cat("q: P = ", P, " paths exceeds the kernels' limit P <= ", kMaxPaths,
               " (mdn_fast._limits.MAX_PATHS); split the paths over several calls");
  *bits = 0;
  for (int64_t p = 0; p < P; ++p) {
    if (axes[p] != 0 && axes[p] != 1) return cat("axes: entries must be 0 (spatial) or 1 (temporal), got ", axes[p]);
    if (axes[p] == 1) *bits |= uint64_t(1) << p;
  }
  return {};
}

// The shape of q, its axes and the kernels' limits (those of mdn_fast/_limits.py, from which
// common/limits.h is generated; the Python layer refuses larger sizes first, this guards direct
// torch.ops calls).
ArgError shape_of(const TensorRef& q, const int64_t* axes, int64_t n_axes, EntityAttentionShape* s) {
  if (q.dim != 6) return cat("q: expected 6 dims [P, B, T, K, H, Dh], got ", sizes_str(q));
  if (ArgError e = check_nonempty(q, "q"); !e.empty()) return e;
  s->P = static_cast<int>(q.sizes[0]);
  s->B = q.sizes[1];
  s->T = q.sizes[2];
  s->K = q.sizes[3];
  s->H = q.sizes[4];
  s->Dh = q.sizes[5];
  if (ArgError e = axes_bits(axes, n_axes, q.sizes[0], &s->temporal_bits); !e.empty()) return e;
  if (s->K > kMaxK)
    return cat("q: K = ", s->K, " entities exceeds the kernels' limit K <= ", kMaxK,
               " (mdn_fast._limits.MAX_K); use backend='reference' for larger groups");
  if (s->T > kMaxT)
    return cat("q: T = ", s->T, " frames exceeds the kernels' limit T <= ", kMaxT,
               " (mdn_fast._limits.MAX_T); use backend='reference' for longer clips");
  if (s->Dh > kMaxDh)
    return cat("q: Dh = ", s->Dh, " exceeds the kernels' limit Dh <= ", kMaxDh,
               " (mdn_fast._limits.MAX_DH); use backend='reference' for wider heads");
  if (s->H > 65535) return cat("q: H = ", s->H, " heads exceeds the kernels' limit H <= 65535");
  return {};
}

// The block both directions read (EntityAttentionInputs): k and v like q, the shape and axes, the dtype,
// the mask.
ArgError common_inputs(const TensorRef& q, const TensorRef& k, const TensorRef& v, const int64_t* axes,
                       int64_t n_axes, const TensorRef& mask, double scale, EntityAttentionInputs* a) {
  if (ArgError e = check_same(k, "k", q, "q"); !e.empty()) return e;
  if (ArgError e = check_same(v, "v", q, "q"); !e.empty()) return e;
  if (ArgError e = shape_of(q, axes, n_axes, &a->shape); !e.empty()) return e;
  if (ArgError e = kernel_dtype(q, "q", &a->dtype); !e.empty()) return e;
  const auto& s = a->shape;
  if (ArgError e = mask_arg(mask, q, s.B, s.T, s.K, &a->mask, &a->sm); !e.empty()) return e;
  a->q = q.data;
  a->k = k.data;
  a->v = v.data;
  a->sq = strides6(q);
  a->sk = strides6(k);
  a->sv = strides6(v);
  a->scale = scale;
  return {};
}

}  // namespace

ArgError entity_attention_fwd_inputs(const TensorRef& q, const TensorRef& k, const TensorRef& v, const int64_t* axes,
                                     int64_t n_axes, const TensorRef& mask, double scale, EntityAttentionFwdArgs* a) {
  *a = {};
  return common_inputs(q, k, v, axes, n_axes, mask, scale, a);
}

ArgError entity_attention_fwd_outputs(const TensorRef& q, const TensorRef& out, const TensorRef& lse,
                                      EntityAttentionFwdArgs* a) {
  const auto& s = a->shape;
  if (ArgError e = check_output(out, "out", {s.P, s.B, s.T, s.K, s.H, s.Dh}, q.elem, q); !e.empty()) return e;
  if (ArgError e = check_output(lse, "lse", {s.P, s.B, s.T, s.K, s.H}, acc_elem(q.elem), q); !e.empty()) return e;
  a->out = out.data;
  a->lse = lse.data;
  return {};
}

ArgError entity_attention_bwd_inputs(const TensorRef& grad_out, const TensorRef& q, const TensorRef& k,
                                     const TensorRef& v, const TensorRef& lse, const int64_t* axes, int64_t n_axes,
                                     const TensorRef& mask, double scale, EntityAttentionBwdArgs* a) {
  *a = {};
  if (ArgError e = check_same(grad_out, "grad_out", q, "q"); !e.empty()) return e;
  if (ArgError e = common_inputs(q, k, v, axes, n_axes, mask, scale, a); !e.empty()) return e;
  const auto& s = a->shape;
  if (!has_sizes(lse, {s.P, s.B, s.T, s.K, s.H}) || !is_contiguous(lse) || lse.elem != acc_elem(q.elem) ||
      !same_device(lse, q))
    return cat("lse: expected the forward's contiguous [P, B, T, K, H] ", elem_name(acc_elem(q.elem)),
               " log-sum-exp, got ", sizes_str(lse), " ", elem_name(lse.elem));
  a->dout = grad_out.data;
  a->sdo = strides6(grad_out);
  a->lse = lse.data;
  return {};
}

ArgError entity_attention_bwd_outputs(const TensorRef& q, const TensorRef& dq, const TensorRef& dk,
                                      const TensorRef& dv, EntityAttentionBwdArgs* a) {
  const auto& s = a->shape;
  const std::initializer_list<int64_t> sizes = {s.P, s.B, s.T, s.K, s.H, s.Dh};
  if (ArgError e = check_output(dq, "dq", sizes, q.elem, q); !e.empty()) return e;
  if (ArgError e = check_output(dk, "dk", sizes, q.elem, q); !e.empty()) return e;
  if (ArgError e = check_output(dv, "dv", sizes, q.elem, q); !e.empty()) return e;
  a->dq = dq.data;
  a->dk = dk.data;
  a->dv = dv.data;
  return {};
}

}  // namespace mdn
