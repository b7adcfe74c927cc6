#include "arg_checks.h"

namespace mdn {

const char* elem_name(ElemType e) {
  switch (e) {
    case ElemType::Float32: return "float32";
    case ElemType::Float16: return "float16";
    case ElemType::BFloat16: return "bfloat16";
    case ElemType::Float64: return "float64";
    case ElemType::Bool: return "bool";
    default: return "a dtype no kernel takes";
  }
}

std::string sizes_str(const TensorRef& t) {
  std::string s = "[";
  for (int i = 0; i < t.dim; ++i) s += (i ? ", " : "") + std::to_string(t.sizes[i]);
  return s + "]";
}

std::string device_str(const TensorRef& t) {
  switch (t.device_type) {
    case DeviceType::CPU: return "cpu";
    case DeviceType::CUDA: return "cuda:" + std::to_string(t.device_index);
    default: return "another device";
  }
}

ArgError kernel_dtype(const TensorRef& t, const char* name, DType* out) {
  switch (t.elem) {
    case ElemType::Float32: *out = DType::Float32; return {};
    case ElemType::Float16: *out = DType::Float16; return {};
    case ElemType::BFloat16: *out = DType::BFloat16; return {};
    case ElemType::Float64: *out = DType::Float64; return {};
    default: return cat(name, ": expected float32, float16, bfloat16 or float64, got ", elem_name(t.elem));
  }
}

bool is_contiguous(const TensorRef& t) {
  int64_t expected = 1;
  for (int i = t.dim - 1; i >= 0; --i) {
    if (t.sizes[i] != 1 && t.strides[i] != expected) return false;
    expected *= t.sizes[i];
  }
  return true;
}

bool same_device(const TensorRef& a, const TensorRef& b) {
  return a.device_type == b.device_type && a.device_index == b.device_index;
}

bool has_sizes(const TensorRef& t, std::initializer_list<int64_t> sizes) {
  if (t.dim != static_cast<int>(sizes.size())) return false;
  int i = 0;
  for (int64_t s : sizes)
    if (t.sizes[i++] != s) return false;
  return true;
}

bool same_sizes(const TensorRef& a, const TensorRef& b) {
  if (a.dim != b.dim) return false;
  for (int i = 0; i < a.dim; ++i)
    if (a.sizes[i] != b.sizes[i]) return false;
  return true;
}

ArgError check_same(const TensorRef& x, const char* name, const TensorRef& ref, const char* ref_name, bool shape) {
  if (shape && !same_sizes(x, ref))
    return cat(name, ": expected the shape of ", ref_name, " ", sizes_str(ref), ", got ", sizes_str(x));
  if (x.elem != ref.elem)
    return cat(name, ": expected dtype ", elem_name(ref.elem), " (that of ", ref_name, "), got ", elem_name(x.elem));
  if (!same_device(x, ref))
    return cat(name, ": expected device ", device_str(ref), " (that of ", ref_name, "), got ", device_str(x));
  return {};
}

ArgError check_nonempty(const TensorRef& t, const char* name) {
  for (int i = 0; i < t.dim; ++i)
    if (t.sizes[i] < 1)
      return cat(name, ": every dimension must be >= 1 for the kernels, got ", sizes_str(t),
                 " (mdn_fast.ops handles empty inputs before calling them)");
  return {};
}

ArgError check_output(const TensorRef& t, const char* name, std::initializer_list<int64_t> sizes, ElemType elem,
                      const TensorRef& like) {
  std::string want = "[";
  for (int64_t s : sizes) want += (want.size() > 1 ? ", " : "") + std::to_string(s);
  want += "]";
  if (!t.defined || !has_sizes(t, sizes) || !is_contiguous(t) || t.elem != elem || !same_device(t, like))
    return cat(name, ": expected a contiguous ", want, " ", elem_name(elem), " output on ", device_str(like),
               ", got ", t.defined ? sizes_str(t) : "none", t.defined && !is_contiguous(t) ? " (not contiguous)" : "",
               " ", t.defined ? elem_name(t.elem) : "", " on ", t.defined ? device_str(t) : "-");
  return {};
}

ArgError mask_arg(const TensorRef& mask, const TensorRef& like, int64_t B, int64_t T, int64_t K,
                  const uint8_t** ptr, Strides3* sm) {
  *ptr = nullptr;
  *sm = {0, 0, 0};
  if (!mask.defined) return {};
  if (mask.elem != ElemType::Bool) return cat("mask: expected dtype bool, got ", elem_name(mask.elem));
  if (!has_sizes(mask, {B, T, K}))
    return cat("mask: expected shape [B, T, K] = [", B, ", ", T, ", ", K, "], got ", sizes_str(mask));
  if (!same_device(mask, like)) return cat("mask: expected device ", device_str(like), ", got ", device_str(mask));
  *sm = {mask.strides[0], mask.strides[1], mask.strides[2]};
  *ptr = static_cast<const uint8_t*>(mask.data);
  return {};
}

}  // namespace mdn
