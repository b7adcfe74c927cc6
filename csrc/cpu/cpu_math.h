// Host-only helpers of the CPU kernels: the vector lane count the tiles are padded to, and an exp
// over a short array written so the compiler vectorises it (libm's scalar expf would dominate the
// attention of such small groups).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common/softmax_math.h"

// Hot host functions are compiled once per x86-64 ISA level and picked at load time by the CPU's
// features (GCC function multi-versioning, an ifunc): the extension is built for generic x86-64 yet
// uses AVX2+FMA / AVX-512 where present. `flatten` inlines every helper into each clone, so all the
// inner loops get the clone's ISA. Elsewhere (clang, non-x86, non-Linux) one generic version is built.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) && !defined(MDN_NO_CLONES)
#define MDN_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define MDN_CPU_CLONES
#endif

namespace mdn {

// Tiles are padded to a multiple of this many elements (8 floats = one AVX register, two SSE ones).
constexpr int kLanes = 8;

// exp(x) for float in plain arithmetic (Cephes-style: x = n ln2 + r, |r| <= ln2 / 2, a degree-6
// polynomial for e^r, 2^n built in the exponent bits); max relative error ~2 ulp.
// Inputs below -87 (including -inf) give exactly 0, so masked keys get weight 0.
inline float exp_poly(float x) {
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float t = xc * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest: 1.5 * 2^23 magic
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &e, sizeof two_n);
  return x < -87.0f ? 0.0f : y * two_n;
}

// p[j] = exp(s[j] - shift) for j < n; s[j] = -inf gives 0.
inline void exp_shifted(const float* s, float shift, int64_t n, float* p) {
  for (int64_t j = 0; j < n; ++j) p[j] = exp_poly(s[j] - shift);
}
inline void exp_shifted(const double* s, double shift, int64_t n, double* p) {
  for (int64_t j = 0; j < n; ++j) p[j] = s[j] == neg_inf<double>() ? 0.0 : std::exp(s[j] - shift);
}

}  // namespace mdn
