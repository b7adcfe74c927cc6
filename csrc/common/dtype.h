// Scalar types the kernels take: the dtype tag of an argument block, 16-bit <-> float conversion on raw
// bits, the one scalar-trait family of the CPU and CUDA kernels (Scalar<Tag>) and the one dtype switch of
// their entry points (dispatch_dtype).
//
// The kernel sources hold no torch headers, so fp16 / bf16 tensors reach them as uint16_t storage.
// These bit-level conversions are exact for widening and round-to-nearest-even for narrowing
// (the same rounding torch and the hardware use); NaN stays NaN, overflow becomes inf.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "mdn_hd.h"

// Where the CUDA kernels are compiled (nvcc, or the host compiler building the CUDA emulation: csrc/emu),
// Scalar<Half16> / Scalar<BFloat16> convert with the toolkit's cuda_fp16 / cuda_bf16 functions instead (below).
#if defined(__CUDACC__) || defined(MDN_CUDA_EMULATE)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif
#if defined(__CUDA_ARCH__) || defined(MDN_CUDA_EMULATE)
#define MDN_TOOLKIT_CONVERSIONS 1
#else
#define MDN_TOOLKIT_CONVERSIONS 0
#endif

namespace mdn {

// Element type of the tensors given to a kernel (the accumulation type follows from it: fp32 for
// fp32/fp16/bf16, fp64 for fp64).
enum class DType : int { Float32 = 0, Float16 = 1, BFloat16 = 2, Float64 = 3 };

// Error codes the kernels return to the torch layer (0 = success).
enum Status : int {
  kOk = 0,
  kBadDType = 1,
  kBadSize = 2,        // a group size or head dim beyond the kernels' limits
  kLaunchFailed = 3,
  // CUDA: kCudaErrorBase + the cudaError_t that cudaGetLastError() gave after a launch.
  kCudaErrorBase = 1000,
};

MDN_HD float bits_to_float(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}

MDN_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}

// IEEE half (1-5-10) -> float.
MDN_HD float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
  if (exp == 0) {
    if (mant == 0) return bits_to_float(sign);                                 // +-0
    // Subnormal half: value = mant * 2^-24, exact in float.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

// float -> IEEE half, round to nearest even.
MDN_HD uint16_t float_to_half(float f) {
  const uint32_t x = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf or nan (keep nan quiet and non-zero)
    return static_cast<uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  }
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (ax < 0x38800000u) {
    // Result is subnormal (or zero): value / 2^-24 rounded to nearest even, done in float where the
    // addition of 0.5 * 2^-24 scaled magic performs the rounding exactly.
    const float a = bits_to_float(ax);
    // a * 2^24 is < 1024; adding 2^23 makes the float's ulp 1, so the FPU rounds to nearest even.
    const float r = a * 16777216.0f + 8388608.0f;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(float_to_bits(r) - 0x4b000000u));
  }
  // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even.
  const uint32_t odd = (ax >> 13) & 1u;
  const uint32_t r = ax + 0x0fffu + odd - (112u << 23);
  return static_cast<uint16_t>(sign | static_cast<uint16_t>(r >> 13));
}

// bfloat16 (the top 16 bits of a float) -> float: exact.
MDN_HD float bf16_to_float(uint16_t h) { return bits_to_float(static_cast<uint32_t>(h) << 16); }

// float -> bfloat16, round to nearest even; nan stays a quiet nan.
MDN_HD uint16_t float_to_bf16(float f) {
  const uint32_t x = float_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  const uint32_t odd = (x >> 16) & 1u;
  return static_cast<uint16_t>((x + 0x7fffu + odd) >> 16);
}

// The element types of the kernels, one tag each: float, double, and for the 16-bit types a storage tag
// (fp16 and bf16 are both uint16_t in memory, so the tag picks the conversion). Scalar<Tag>::storage is the
// type in memory, ::acc the accumulation type; load widens a stored value to acc, store narrows back with
// round-to-nearest-even. The CPU kernels (csrc/cpu) and the CUDA kernels (csrc/cuda) read them alike.
//
// One family for both sides, at no cost to the CUDA kernels: on the device (and in the emulation that runs
// the CUDA kernels on the CPU) the 16-bit conversions are the toolkit's __half2float / __float2half_rn /
// __bfloat162float / __float2bfloat16_rn, one cvt instruction each, on the same uint16_t bits through the
// toolkit's raw structs (a register move: when the two families merged, cuobjdump -sass of every kernel was
// the same as on __half / __nv_bfloat16 pointers, and so are the registers and spills that
// tools/kernel_resources.py reports). Host code everywhere else uses the bit-level functions above.
struct Half16 {};
struct BFloat16 {};

template <typename Tag> struct Scalar;
template <> struct Scalar<float> {
  using storage = float;
  using acc = float;
  static MDN_HD float load(float x) { return x; }
  static MDN_HD float store(float x) { return x; }
};
template <> struct Scalar<double> {
  using storage = double;
  using acc = double;
  static MDN_HD double load(double x) { return x; }
  static MDN_HD double store(double x) { return x; }
};
#if MDN_TOOLKIT_CONVERSIONS
template <> struct Scalar<Half16> {
  using storage = uint16_t;
  using acc = float;
  static MDN_HD float load(uint16_t x) { return __half2float(__half(__half_raw{x})); }
  static MDN_HD uint16_t store(float x) { return static_cast<__half_raw>(__float2half_rn(x)).x; }
};
template <> struct Scalar<BFloat16> {
  using storage = uint16_t;
  using acc = float;
  static MDN_HD float load(uint16_t x) { return __bfloat162float(__nv_bfloat16(__nv_bfloat16_raw{x})); }
  static MDN_HD uint16_t store(float x) { return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(x)).x; }
};
#else
template <> struct Scalar<Half16> {
  using storage = uint16_t;
  using acc = float;
  static MDN_HD float load(uint16_t x) { return half_to_float(x); }
  static MDN_HD uint16_t store(float x) { return float_to_half(x); }
};
template <> struct Scalar<BFloat16> {
  using storage = uint16_t;
  using acc = float;
  static MDN_HD float load(uint16_t x) { return bf16_to_float(x); }
  static MDN_HD uint16_t store(float x) { return float_to_bf16(x); }
};
#endif

// True for the types stored as their accumulation type (float, double): their rows can be used in place.
template <typename Tag>
constexpr bool kStoredAsAcc = std::is_same<typename Scalar<Tag>::storage, typename Scalar<Tag>::acc>::value;

// The dtype switch of every kernel entry point, CPU and CUDA (after flash-attention's FP16_SWITCH):
// runs body(DTypeTag<Tag>{}) for the tag of `dt`, where the body names the type as
// `using Tag = typename decltype(tag)::type;`, and returns kOk; kBadDType for a dtype no kernel takes.
template <typename Tag> struct DTypeTag { using type = Tag; };
template <typename Body> inline int dispatch_dtype(DType dt, Body&& body) {
  switch (dt) {
    case DType::Float32: body(DTypeTag<float>{}); return kOk;
    case DType::Float64: body(DTypeTag<double>{}); return kOk;
    case DType::Float16: body(DTypeTag<Half16>{}); return kOk;
    case DType::BFloat16: body(DTypeTag<BFloat16>{}); return kOk;
    default: return kBadDType;
  }
}

}  // namespace mdn
