// C entry points of the CUDA emulation library, called from Python through ctypes (tests/ops/_cuda_emu.py).
// Each op runs the same plumbing as the torch layer (args/: checks and the kernel's argument block)
// and the same launcher as a GPU build (cuda/*.cu, compiled here against cuda_emu.h), on host memory.
// Returns 0 on success, 1 for an argument error, 2 when the launch failed; `err` gets the message.
#include <cstdio>
#include <string>

#include "../args/entity_attention_args.h"
#include "../args/routed_merge_args.h"
#include "../cuda/entity_attention_cuda.cuh"
#include "../cuda/routed_merge_cuda.cuh"
#include "emulator.h"

using mdn::TensorRef;

namespace {

int report(int code, const std::string& msg, char* err, long long err_len) {
  if (err && err_len > 0) std::snprintf(err, static_cast<std::size_t>(err_len), "%s", msg.c_str());
  return code;
}

int finish(int status, const char* op, char* err, long long err_len) {
  if (status == mdn::kOk) return 0;
  std::string why = mdn_emu::take_error_message();
  if (why.empty()) why = status == mdn::kBadSize ? "sizes beyond the kernel's limits" : "kernel status " + std::to_string(status);
  return report(2, std::string(op) + ": " + why, err, err_len);
}

}  // namespace

extern "C" {

void mdn_emu_configure(int schedule, unsigned long long seed, int poison_byte) {
  mdn_emu::configure(schedule, seed, poison_byte);
}

void mdn_emu_stats(unsigned long long* out) {
  const mdn_emu::Stats s = mdn_emu::stats();
  out[0] = s.launches;
  out[1] = s.blocks;
  out[2] = s.threads;
  out[3] = s.switches;
}

int mdn_emu_entity_attention_fwd(const TensorRef* q, const TensorRef* k, const TensorRef* v, const long long* axes,
                                 long long n_axes, const TensorRef* mask, double scale, const TensorRef* out,
                                 const TensorRef* lse, char* err, long long err_len) {
  mdn::EntityAttentionFwdArgs a;
  const auto* ax = reinterpret_cast<const int64_t*>(axes);
  if (auto e = mdn::entity_attention_fwd_inputs(*q, *k, *v, ax, n_axes, *mask, scale, &a); !e.empty())
    return report(1, e, err, err_len);
  if (auto e = mdn::entity_attention_fwd_outputs(*q, *out, *lse, &a); !e.empty()) return report(1, e, err, err_len);
  return finish(mdn::entity_attention_fwd_cuda(a, nullptr), "entity_attention_fwd", err, err_len);
}

int mdn_emu_entity_attention_bwd(const TensorRef* grad_out, const TensorRef* q, const TensorRef* k,
                                 const TensorRef* v, const TensorRef* lse, const long long* axes, long long n_axes,
                                 const TensorRef* mask, double scale, const TensorRef* dq, const TensorRef* dk,
                                 const TensorRef* dv, char* err, long long err_len) {
  mdn::EntityAttentionBwdArgs a;
  const auto* ax = reinterpret_cast<const int64_t*>(axes);
  if (auto e = mdn::entity_attention_bwd_inputs(*grad_out, *q, *k, *v, *lse, ax, n_axes, *mask, scale, &a); !e.empty())
    return report(1, e, err, err_len);
  if (auto e = mdn::entity_attention_bwd_outputs(*q, *dq, *dk, *dv, &a); !e.empty()) return report(1, e, err, err_len);
  return finish(mdn::entity_attention_bwd_cuda(a, nullptr), "entity_attention_bwd", err, err_len);
}

int mdn_emu_routed_merge_fwd(const TensorRef* x_st, const TensorRef* x_ts, const TensorRef* weight,
                             const TensorRef* bias, double tau, const TensorRef* mask, const TensorRef* y,
                             const TensorRef* alpha, char* err, long long err_len) {
  mdn::RoutedMergeFwdArgs a;
  if (auto e = mdn::routed_merge_fwd_inputs(*x_st, *x_ts, *weight, *bias, tau, *mask, &a); !e.empty())
    return report(1, e, err, err_len);
  if (auto e = mdn::routed_merge_fwd_outputs(*x_st, *y, *alpha, &a); !e.empty()) return report(1, e, err, err_len);
  return finish(mdn::routed_merge_fwd_cuda(a, nullptr), "routed_merge_fwd", err, err_len);
}

int mdn_emu_routed_merge_bwd(const TensorRef* grad_y, const TensorRef* grad_alpha, const TensorRef* x_st,
                             const TensorRef* x_ts, const TensorRef* weight, const TensorRef* alpha, double tau,
                             const TensorRef* mask, const TensorRef* dx_st, const TensorRef* dx_ts,
                             const TensorRef* dweight, const TensorRef* dbias, const TensorRef* scratch_dlogits,
                             const TensorRef* scratch_pooled, char* err, long long err_len) {
  mdn::RoutedMergeBwdArgs a;
  if (auto e = mdn::routed_merge_bwd_inputs(*grad_y, *grad_alpha, *x_st, *x_ts, *weight, *alpha, tau, *mask, &a);
      !e.empty())
    return report(1, e, err, err_len);
  if (auto e = mdn::routed_merge_bwd_outputs(*x_st, *dx_st, *dx_ts, *dweight, *dbias, *scratch_dlogits,
                                             *scratch_pooled, &a);
      !e.empty())
    return report(1, e, err, err_len);
  return finish(mdn::routed_merge_bwd_cuda(a, nullptr), "routed_merge_bwd", err, err_len);
}

}  // extern "C"
