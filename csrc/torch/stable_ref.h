// The torch side of the C++ ops on PyTorch's stable ABI (torch/csrc/stable, targeting torch 2.11): no
// translation unit of mdn_fast._C includes ATen or c10, so one build loads under every torch >= 2.11.
// This header turns stable tensors into the torch-free TensorRefs the argument plumbing (csrc/args)
// checks, allocates outputs, and raises the plumbing's and the kernels' errors as RuntimeErrors.
#pragma once

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/util/Exception.h>

#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "../args/tensor_ref.h"
#include "../common/dtype.h"

namespace mdn_torch {

using torch::stable::Tensor;
using torch::headeronly::ScalarType;

inline mdn::ElemType elem_of(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return mdn::ElemType::Float32;
    case ScalarType::Half: return mdn::ElemType::Float16;
    case ScalarType::BFloat16: return mdn::ElemType::BFloat16;
    case ScalarType::Double: return mdn::ElemType::Float64;
    case ScalarType::Bool: return mdn::ElemType::Bool;
    default: return mdn::ElemType::Other;
  }
}

inline ScalarType acc_type(ScalarType t) { return t == ScalarType::Double ? ScalarType::Double : ScalarType::Float; }

// The torch-free view of a tensor that the argument plumbing (csrc/args/) checks and reads.
inline mdn::TensorRef ref(const Tensor& t, const char* name) {
  mdn::TensorRef r{};
  if (!t.defined()) return r;
  const int64_t dim = t.dim();
  const ScalarType dtype = t.scalar_type();
  STD_TORCH_CHECK(dim <= mdn::kMaxRefDims, name, ": expected at most ", mdn::kMaxRefDims, " dims, got ", dim);
  STD_TORCH_CHECK(elem_of(dtype) != mdn::ElemType::Other, name, ": expected ",
                  std::string(name) == "mask" ? "dtype bool" : "float32, float16, bfloat16 or float64",
                  ", got another dtype (", static_cast<int>(dtype), ")");
  r.data = t.data_ptr();
  r.defined = 1;
  r.dim = static_cast<int32_t>(dim);
  r.elem = elem_of(dtype);
  const bool cpu = t.is_cpu();
  r.device_type = cpu ? mdn::DeviceType::CPU : t.is_cuda() ? mdn::DeviceType::CUDA : mdn::DeviceType::Other;
  r.device_index = cpu ? -1 : t.get_device_index();
  // Whole arrays (one shim call each), not size(i) / stride(i): two shim calls per dimension and tensor
  // added up to a microsecond per op call.
  const auto sizes = t.sizes(), strides = t.strides();
  for (int32_t i = 0; i < r.dim; ++i) {
    r.sizes[i] = sizes[i];
    r.strides[i] = strides[i];
  }
  return r;
}
inline mdn::TensorRef ref(const std::optional<Tensor>& t, const char* name) {
  return t.has_value() ? ref(*t, name) : mdn::TensorRef{};
}

inline void check(const std::string& e) { STD_TORCH_CHECK(e.empty(), e); }

// A contiguous uninitialised tensor on `like`'s device, through the C shim's aoti_torch_empty_strided:
// torch::stable::empty goes through torch_call_dispatcher("aten::empty"), which looks the op up by name
// and boxes its arguments on every call (~1 us each; an op allocating six outputs paid it six times).
inline Tensor empty_contiguous(const std::vector<int64_t>& sizes, ScalarType dtype, const Tensor& like) {
  std::vector<int64_t> strides(sizes.size());
  int64_t step = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = step;
    step *= sizes[i] > 1 ? sizes[i] : 1;
  }
  int32_t device_type = 0;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(like.get(), &device_type));
  // The stable ABI's own ScalarType -> shim dtype code (they may differ: see stableivalue_conversions.h).
  const int32_t shim_dtype = torch::stable::detail::to<int32_t>(torch::stable::detail::from(dtype));
  AtenTensorHandle out = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_empty_strided(static_cast<int64_t>(sizes.size()), sizes.data(), strides.data(),
                                                  shim_dtype, device_type, like.get_device_index(), &out));
  return Tensor(out);
}

// An op output, contiguous: NaN-filled under MDN_FAST_POISON=1 (as mdn_fast._debug.new_output), so
// tests see any element a kernel forgot to write; uninitialised otherwise.
inline Tensor new_output(const std::vector<int64_t>& sizes, ScalarType dtype, const Tensor& like) {
  const char* p = std::getenv("MDN_FAST_POISON");
  if (p && std::string(p) == "1")
    return torch::stable::full(sizes, std::numeric_limits<double>::quiet_NaN(), dtype, std::nullopt, like.device());
  return empty_contiguous(sizes, dtype, like);
}
inline std::vector<int64_t> sizes_of(const Tensor& t) {
  std::vector<int64_t> s(t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) s[i] = t.size(i);
  return s;
}

inline const char* status_text(int code) {
  switch (code) {
    case mdn::kOk: return "ok";
    case mdn::kBadDType: return "unsupported dtype";
    case mdn::kBadSize: return "sizes beyond the kernel's limits";
    case mdn::kLaunchFailed: return "CUDA kernel launch failed";
    default: return code >= mdn::kCudaErrorBase ? "CUDA error" : "unknown error";
  }
}

// A kernel's status as an error (CUDA errors carry the runtime's text when the caller gives it).
inline void check_status(int code, const char* op, const char* cuda_text = nullptr) {
  if (code >= mdn::kCudaErrorBase)
    STD_TORCH_CHECK(false, op, ": CUDA error ", code - mdn::kCudaErrorBase, ": ", cuda_text ? cuda_text : "");
  STD_TORCH_CHECK(code == mdn::kOk, op, " failed: ", status_text(code), " (code ", code, ")");
}

}  // namespace mdn_torch
