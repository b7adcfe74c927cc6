// Host-only helpers of the CPU kernels: the ISA clones, a polynomial exp in plain arithmetic (the
// reference for vec8.h's exp8; libm's scalar expf would dominate the attention of such small groups)
// and cache-line prefetches.
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

// An entry point over a range of tasks [b, e), cloned per ISA level: `name(DTypeTag<Tag>, args, b, e)` calls
// the kernel body `impl...` (a template instance: the trailing argument takes its commas). Overloads on
// the dtype tag, plain functions since the clones cannot be templates; dispatch_dtype picks one.
#define MDN_RANGE_FN(name, Args, Tag, ...) \
  MDN_CPU_CLONES void name(DTypeTag<Tag>, const Args& a, int64_t b, int64_t e) { __VA_ARGS__(a, b, e); }

namespace mdn {

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

// Prefetch the cache line holding p into all cache levels. Inline asm on x86: GCC 12 at -O2/-O3 drops
// __builtin_prefetch from some loop nests that have no other effect (seen in the attention kernel).
inline void prefetch_line(const void* p) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 0, 3);
#endif
}

// The same for a line about to be written (prefetchw: fetched in exclusive state, so the store needs
// no second bus transaction; CPUs without PRFCHW execute it as a no-op).
inline void prefetch_line_for_write(const void* p) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

}  // namespace mdn
