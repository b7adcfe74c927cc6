// A tensor as the argument plumbing sees it, without torch: data pointer, sizes and strides (in
// elements), element type and device. Two callers describe their tensors this way: the torch layer
// (torch/stable_ref.h, from torch::stable::Tensor) and the CUDA emulation's C entry points (emu/emu_ops.cpp, from Python's
// ctypes), so one piece of code (entity_attention_args.cpp, routed_merge_args.cpp) checks every op's
// arguments and fills every kernel's argument block (common/op_args.h) for both.
// Plain C layout: mdn_fast's CUDA emulation test harness mirrors it with ctypes (tests/ops/_cuda_emu.py).
#pragma once

#include <cstdint>

namespace mdn {

enum class ElemType : int32_t { Float32 = 0, Float16 = 1, BFloat16 = 2, Float64 = 3, Bool = 4, Other = 5 };
enum class DeviceType : int32_t { CPU = 0, CUDA = 1, Other = 2 };

constexpr int kMaxRefDims = 8;

struct TensorRef {
  void* data;
  int32_t defined;  // 0: an absent optional tensor (every other field is ignored)
  int32_t dim;      // <= kMaxRefDims
  ElemType elem;
  DeviceType device_type;
  int32_t device_index;
  int32_t reserved;
  int64_t sizes[kMaxRefDims];
  int64_t strides[kMaxRefDims];
};

}  // namespace mdn
