// Argument checks shared by the ops' plumbing (entity_attention_args.cpp, routed_merge_args.cpp): each
// returns "" when the argument is fine, else one sentence naming the argument, what was expected and
// what came. The torch layer raises it as a RuntimeError; the emulation returns it to Python.
#pragma once

#include <initializer_list>
#include <sstream>
#include <string>

#include "../common/op_args.h"
#include "tensor_ref.h"

namespace mdn {

using ArgError = std::string;  // "" = ok

template <typename... Parts> std::string cat(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return s.str();
}

const char* elem_name(ElemType e);
std::string sizes_str(const TensorRef& t);
std::string device_str(const TensorRef& t);

// The accumulation element type of a kernel element type (fp64 for fp64, else fp32).
inline ElemType acc_elem(ElemType e) { return e == ElemType::Float64 ? ElemType::Float64 : ElemType::Float32; }

// The kernel dtype of a floating tensor; an error naming `name` for any other element type.
ArgError kernel_dtype(const TensorRef& t, const char* name, DType* out);

bool is_contiguous(const TensorRef& t);
bool same_device(const TensorRef& a, const TensorRef& b);
bool has_sizes(const TensorRef& t, std::initializer_list<int64_t> sizes);
bool same_sizes(const TensorRef& a, const TensorRef& b);

// x has ref's shape (when `shape`), element type and device.
ArgError check_same(const TensorRef& x, const char* name, const TensorRef& ref, const char* ref_name,
                    bool shape = true);
// Every size >= 1 (the kernels launch nothing for an empty dimension; the public ops handle empty inputs).
ArgError check_nonempty(const TensorRef& t, const char* name);
// An output the caller allocated: contiguous, of these sizes, element type and the device of `like`.
ArgError check_output(const TensorRef& t, const char* name, std::initializer_list<int64_t> sizes, ElemType elem,
                      const TensorRef& like);
// Optional [B, T, K] bool key mask: pointer and strides (null and zeros when absent).
ArgError mask_arg(const TensorRef& mask, const TensorRef& like, int64_t B, int64_t T, int64_t K,
                  const uint8_t** ptr, Strides3* sm);

inline Strides6 strides6(const TensorRef& t) {
  return {t.strides[0], t.strides[1], t.strides[2], t.strides[3], t.strides[4], t.strides[5]};
}
inline Strides4 strides4(const TensorRef& t) { return {t.strides[0], t.strides[1], t.strides[2], t.strides[3]}; }

}  // namespace mdn
