// entity_attention's torch ops (schemas in library.cpp): the tensors become TensorRefs, the plumbing of
// args/entity_attention_args.cpp checks them and fills the kernel's argument block, outputs are
// allocated and the kernel runs (launch.h: host kernels in _C, CUDA kernels in _C_cuda).
#include "../args/entity_attention_args.h"
#include "launch.h"

namespace {

using namespace mdn_torch;
using torch::headeronly::HeaderOnlyArrayRef;

std::tuple<Tensor, Tensor> entity_attention_fwd(Tensor q, Tensor k, Tensor v, HeaderOnlyArrayRef<int64_t> axes,
                                                std::optional<Tensor> mask, double scale) {
  mdn::EntityAttentionFwdArgs a;
  const mdn::TensorRef rq = ref(q, "q");
  check(mdn::entity_attention_fwd_inputs(rq, ref(k, "k"), ref(v, "v"), axes.data(), axes.size(), ref(mask, "mask"),
                                         scale, &a));
  const auto& s = a.shape;
  Tensor out = new_output(sizes_of(q), q.scalar_type(), q);
  Tensor lse = new_output({s.P, s.B, s.T, s.K, s.H}, acc_type(q.scalar_type()), q);
  check(mdn::entity_attention_fwd_outputs(rq, ref(out, "out"), ref(lse, "lse"), &a));
  const int st = MDN_RUN(q, mdn::entity_attention_fwd_cpu(a, cpu_parallel_for),
                         mdn::entity_attention_fwd_cuda(a, stream));
  check_status(st, "entity_attention_fwd", cuda_text(st));
  return {out, lse};
}

std::tuple<Tensor, Tensor, Tensor> entity_attention_bwd(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor lse,
                                                        HeaderOnlyArrayRef<int64_t> axes, std::optional<Tensor> mask,
                                                        double scale) {
  mdn::EntityAttentionBwdArgs a;
  const mdn::TensorRef rq = ref(q, "q");
  check(mdn::entity_attention_bwd_inputs(ref(grad_out, "grad_out"), rq, ref(k, "k"), ref(v, "v"), ref(lse, "lse"),
                                         axes.data(), axes.size(), ref(mask, "mask"), scale, &a));
  const auto sizes = sizes_of(q);
  Tensor dq = new_output(sizes, q.scalar_type(), q), dk = new_output(sizes, q.scalar_type(), q),
         dv = new_output(sizes, q.scalar_type(), q);
  check(mdn::entity_attention_bwd_outputs(rq, ref(dq, "dq"), ref(dk, "dk"), ref(dv, "dv"), &a));
  const int st = MDN_RUN(q, mdn::entity_attention_bwd_cpu(a, cpu_parallel_for),
                         mdn::entity_attention_bwd_cuda(a, stream));
  check_status(st, "entity_attention_bwd", cuda_text(st));
  return {dq, dk, dv};
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(mdn_fast, MDN_DISPATCH_KEY, m) {
  m.impl("entity_attention_fwd", TORCH_BOX(&entity_attention_fwd));
  m.impl("entity_attention_bwd", TORCH_BOX(&entity_attention_bwd));
}
