// An 8-lane vector of the accumulation type for the host kernels (GCC / clang vector extensions):
// float lanes fill one AVX register (two SSE ones in the generic clone), double lanes one AVX-512
// register. Loads and stores are unaligned; `exp8` is the vectorised exp of the softmax.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu_math.h"

#if !defined(__GNUC__)
#error "csrc/cpu needs GCC or clang vector extensions (vector_size)"
#endif

// Vec8 values cross no ABI boundary (every function here is inlined into the kernels' entry points),
// so GCC's note that passing them by value depends on the ISA level does not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace mdn {

constexpr int kVec = 8;  // lanes of Vec8 (also the query block of the attention kernels)

template <typename A> struct Vec8Of;
template <> struct Vec8Of<float> {
  typedef float type __attribute__((vector_size(8 * sizeof(float))));
  typedef int32_t itype __attribute__((vector_size(8 * sizeof(int32_t))));
};
template <> struct Vec8Of<double> {
  typedef double type __attribute__((vector_size(8 * sizeof(double))));
};
template <typename A> using Vec8 = typename Vec8Of<A>::type;

template <typename A> inline Vec8<A> load8(const A* p) {
  Vec8<A> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename A> inline void store8(A* p, const Vec8<A>& v) { std::memcpy(p, &v, sizeof v); }
template <typename A> inline Vec8<A> splat8(A x) { return Vec8<A>{} + x; }
template <typename V> inline V max8(const V& a, const V& b) { return a > b ? a : b; }

// Transpose of the 8 x 8 tile r[0..8) (rows) into c[0..8) (columns), c[j][i] = r[i][j]: three rounds
// of two-source shuffles (unpack pairs, then pairs of pairs, then halves).
template <typename V> inline void transpose8x8(const V* r, V* c) {
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define MDN_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
  V t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = MDN_SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = MDN_SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = MDN_SHUF(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[i + 1] = MDN_SHUF(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[i + 2] = MDN_SHUF(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[i + 3] = MDN_SHUF(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int j = 0; j < 4; ++j) {
    c[j] = MDN_SHUF(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    c[j + 4] = MDN_SHUF(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
#undef MDN_SHUF
#else
  for (int j = 0; j < 8; ++j)
    for (int i = 0; i < 8; ++i) c[j][i] = r[i][j];
#endif
}

// exp of each lane, exp_poly (cpu_math.h) written on vectors: lanes below -87 (and -inf) give 0.
inline Vec8<float> exp8(Vec8<float> x) {
  using V = Vec8<float>;
  using I = Vec8Of<float>::itype;
  const V lo = splat8(-87.0f), hi = splat8(88.0f);
  const V xc = x < lo ? lo : (x > hi ? hi : x);
  const V n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const V r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  V y = splat8(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const I e = (__builtin_convertvector(n, I) + 127) << 23;
  V two_n;
  std::memcpy(&two_n, &e, sizeof two_n);
  const V res = y * two_n;
  return x < lo ? V{} : res;
}
// Natural log of each lane for finite x > 0 (the softmax sums, >= 1): x = m 2^e with m in
// [sqrt(1/2), sqrt(2)), log m = 2 atanh(t), t = (m - 1) / (m + 1), |t| <= 0.172, odd series to t^9
// (truncation < 1e-9 relative); max error ~2 ulp.
inline Vec8<float> log8(Vec8<float> x) {
  using V = Vec8<float>;
  using I = Vec8Of<float>::itype;
  I bits;
  std::memcpy(&bits, &x, sizeof bits);
  // Mantissa scaled into [sqrt(1/2), sqrt(2)): subtract the exponent of sqrt(1/2)'s bit pattern.
  const I off = bits - 0x3f3504f3;
  const I e = off >> 23;  // arithmetic shift: floor(log2(x / sqrt(1/2)))
  const I mb = bits - (e << 23);
  V m;
  std::memcpy(&m, &mb, sizeof m);
  const V t = (m - 1.0f) / (m + 1.0f);
  const V t2 = t * t;
  V poly = splat8(1.0f / 9.0f);
  poly = poly * t2 + 1.0f / 7.0f;
  poly = poly * t2 + 1.0f / 5.0f;
  poly = poly * t2 + 1.0f / 3.0f;
  poly = poly * t2 + 1.0f;
  const V ef = __builtin_convertvector(e, V);
  return ef * 0.693147180559945309f + 2.0f * t * poly;
}
inline Vec8<double> log8(Vec8<double> x) {
  for (int l = 0; l < kVec; ++l) x[l] = std::log(x[l]);
  return x;
}

inline Vec8<double> exp8(Vec8<double> x) {
  for (int l = 0; l < kVec; ++l) x[l] = std::exp(x[l]);  // fp64 is the correctness path, not the fast one
  return x;
}

}  // namespace mdn
