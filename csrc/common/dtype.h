// Scalar types the kernels take, and 16-bit <-> float conversion on raw bits.
//
// The kernel sources hold no torch headers, so fp16 / bf16 tensors reach them as uint16_t storage.
// These bit-level conversions are exact for widening and round-to-nearest-even for narrowing
// (the same rounding torch and the hardware use); NaN stays NaN, overflow becomes inf.
#pragma once

#include <cstdint>
#include <cstring>

#include "mdn_hd.h"

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

// Storage tags for the host kernels: fp16 and bf16 are both uint16_t in memory, so the tag picks
// the conversion. `Load<T>::acc` widens to the accumulation type, `store` narrows back.
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

}  // namespace mdn
