// Unit tests of the torch-free shared math (csrc/common) and of the host kernels on a tiny case:
// plain asserts, run by ctest (CMakeLists.txt). Exit code 0 = all passed.
#include <cassert>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../common/dtype.h"
#include "../common/group_index.h"
#include "../common/router_math.h"
#include "../common/softmax_math.h"
#include "../cpu/cpu_math.h"
#include "../cpu/entity_attention_cpu.h"
#include "../cpu/routed_merge_cpu.h"

using namespace mdn;

static int failures = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                     \
    }                                                                 \
  } while (0)

static bool close(double a, double b, double rel) { return std::fabs(a - b) <= rel * std::fmax(1e-30, std::fabs(b)); }

static void test_half() {
  // Exact values and their bit patterns.
  CHECK(float_to_half(1.0f) == 0x3c00);
  CHECK(float_to_half(-2.0f) == 0xc000);
  CHECK(float_to_half(65504.0f) == 0x7bff);
  CHECK(float_to_half(65520.0f) == 0x7c00);           // rounds up to inf
  CHECK(float_to_half(1e-8f) == 0x0000);              // below half the smallest subnormal
  CHECK(float_to_half(5.9604644775390625e-08f) == 0x0001);  // smallest subnormal
  CHECK(float_to_half(6.103515625e-05f) == 0x0400);   // smallest normal
  CHECK(std::isnan(half_to_float(float_to_half(NAN))));
  CHECK(std::isinf(half_to_float(float_to_half(INFINITY))));
  // Ties round to even: 1 + 2^-11 is halfway between 1 and 1 + 2^-10 -> 1.
  CHECK(float_to_half(1.0f + 0.00048828125f) == 0x3c00);
  CHECK(float_to_half(1.0f + 3 * 0.00048828125f) == 0x3c02);
  // Every half round-trips through float.
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const uint16_t x = static_cast<uint16_t>(h);
    const float f = half_to_float(x);
    if (std::isnan(f)) continue;
    CHECK(float_to_half(f) == x);
  }
}

static void test_bf16() {
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  CHECK(bf16_to_float(0x3f80) == 1.0f);
  CHECK(float_to_bf16(1.0f + 1.0f / 256) == 0x3f80);        // tie -> even
  CHECK(float_to_bf16(1.0f + 3.0f / 256) == 0x3f82);
  CHECK(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = bf16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    CHECK(float_to_bf16(f) == h);
  }
}

static void test_softmax() {
  const double s[5] = {0.3, -1.2, 2.5, -INFINITY, 0.9};
  OnlineSoftmax<double> st = online_softmax_init<double>();
  double acc = 0, p;
  const double v[5] = {1, 2, 3, 4, 5};
  for (int j = 0; j < 5; ++j) {
    const double r = online_softmax_step(st, s[j], p);
    acc = acc * r + p * v[j];
  }
  double z = 0, ref = 0;
  for (int j = 0; j < 5; ++j)
    if (j != 3) z += std::exp(s[j]);
  for (int j = 0; j < 5; ++j)
    if (j != 3) ref += std::exp(s[j]) / z * v[j];
  CHECK(close(acc / st.l, ref, 1e-14));
  CHECK(close(online_softmax_lse(st), std::log(z), 1e-14));
  CHECK(prob_from_lse(-HUGE_VAL, 1.0) == 0.0);
  CHECK(close(prob_from_lse(s[2], std::log(z)), std::exp(s[2]) / z, 1e-14));
  // Every score -inf (an infinite q or k, not a masked key): NaN, as softmax gives.
  OnlineSoftmax<double> all_inf = online_softmax_init<double>();
  online_softmax_step(all_inf, -HUGE_VAL, p);
  CHECK(std::isnan(online_softmax_lse(all_inf)));
  // Empty stream: lse -inf, and merge of two partial states equals one pass.
  CHECK(online_softmax_lse(online_softmax_init<double>()) == -INFINITY);
  OnlineSoftmax<double> a = online_softmax_init<double>(), b = online_softmax_init<double>();
  online_softmax_step(a, s[0], p);
  online_softmax_step(a, s[1], p);
  online_softmax_step(b, s[2], p);
  online_softmax_step(b, s[4], p);
  double ra, rb;
  const OnlineSoftmax<double> m = online_softmax_merge(a, b, ra, rb);
  CHECK(close(online_softmax_lse(m), std::log(z), 1e-14));
  // exp_poly against libm over the range the kernels use (x <= 0), and exactly 0 for -inf.
  for (float x = -87.0f; x <= 0.0f; x += 0.01f) CHECK(close(exp_poly(x), std::exp(static_cast<double>(x)), 5e-7));
  CHECK(exp_poly(-INFINITY) == 0.0f);
}

static void test_router() {
  double a0, a1, dl0, dl1;
  router_softmax(1.0, 3.0, 2.0, a0, a1);
  CHECK(close(a0, 1 / (1 + std::exp(1.0)), 1e-14));
  CHECK(close(a0 + a1, 1.0, 1e-15));
  router_softmax(1000.0, -1000.0, 1.0, a0, a1);  // no overflow
  CHECK(a0 == 1.0 && a1 == 0.0);
  // Finite-difference check of the softmax backward.
  const double l0 = 0.4, l1 = -0.7, tau = 0.8, g0 = 1.3, g1 = -0.2, eps = 1e-6;
  router_softmax(l0, l1, tau, a0, a1);
  router_softmax_bwd(a0, a1, g0, g1, tau, dl0, dl1);
  double p0, p1, m0, m1;
  router_softmax(l0 + eps, l1, tau, p0, p1);
  router_softmax(l0 - eps, l1, tau, m0, m1);
  CHECK(close(dl0, (g0 * (p0 - m0) + g1 * (p1 - m1)) / (2 * eps), 1e-6));
  CHECK(inv_count<double>(0) == 1.0 && inv_count<double>(4) == 0.25);
}

static void test_group_index() {
  // [P=2, B=3, T=4, K=5, H=2, Dh=3] contiguous.
  const Strides6 s = contiguous_strides6(3, 4, 5, 2, 3);
  CHECK(s.d == 1 && s.h == 3 && s.k == 6 && s.t == 30 && s.b == 120 && s.p == 360);
  const uint64_t bits = 0b10;  // path 0 spatial, path 1 temporal
  CHECK(path_axis(bits, 0) == kSpatial && path_axis(bits, 1) == kTemporal);
  CHECK(total_tasks(2, bits, 3, 4, 5) == 3 * 4 + 3 * 5);
  const PathTask t0 = task_of(5, 2, bits, 3, 4, 5);  // path 0: b = 1, frame 1
  CHECK(t0.p == 0 && t0.axis == kSpatial && t0.b == 1 && t0.g == 1);
  const PathTask t1 = task_of(12 + 7, 2, bits, 3, 4, 5);  // path 1: b = 1, entity 2
  CHECK(t1.p == 1 && t1.axis == kTemporal && t1.b == 1 && t1.g == 2);
  const GroupView gs = group_view(s, kSpatial, 0, 1, 2);   // frame 2 of clip 1: members are entities
  CHECK(gs.base == 120 + 2 * 30 && gs.member == 6);
  const GroupView gt = group_view(s, kTemporal, 1, 1, 2);  // entity 2 of clip 1: members are frames
  CHECK(gt.base == 360 + 120 + 2 * 6 && gt.member == 30);
  CHECK(groups_of(kSpatial, 4, 5) == 4 && members_of(kSpatial, 4, 5) == 5);
  CHECK(groups_of(kTemporal, 4, 5) == 5 && members_of(kTemporal, 4, 5) == 4);
}

// The one dtype switch: each DType reaches the body once with its own tag (fp16 and bf16 share their
// uint16_t storage, so the bits of a stored 1.0 tell them apart: 0x3c00 vs 0x3f80); any other value
// reaches it never and gives kBadDType.
static void test_dtype_switch() {
  struct Seen {
    int calls = 0;
    size_t storage_bytes = 0, acc_bytes = 0;
    uint64_t one_bits = 0;  // the stored bits of 1.0
  };
  auto run = [](DType dt, Seen* s) {
    return dispatch_dtype(dt, [&](auto tag) {
      using S = Scalar<typename decltype(tag)::type>;
      const typename S::storage one = S::store(typename S::acc(1));
      ++s->calls;
      s->storage_bytes = sizeof(typename S::storage);
      s->acc_bytes = sizeof(typename S::acc);
      std::memcpy(&s->one_bits, &one, sizeof one);
    });
  };
  Seen f32, f64, f16, bf16, bad;
  CHECK(run(DType::Float32, &f32) == kOk && f32.calls == 1 && f32.storage_bytes == 4 && f32.acc_bytes == 4);
  CHECK(run(DType::Float64, &f64) == kOk && f64.calls == 1 && f64.storage_bytes == 8 && f64.acc_bytes == 8);
  CHECK(run(DType::Float16, &f16) == kOk && f16.calls == 1 && f16.storage_bytes == 2 && f16.acc_bytes == 4);
  CHECK(run(DType::BFloat16, &bf16) == kOk && bf16.calls == 1 && bf16.storage_bytes == 2 && bf16.acc_bytes == 4);
  CHECK(f32.one_bits == 0x3f800000u && f64.one_bits == 0x3ff0000000000000ull && f16.one_bits == 0x3c00u &&
        bf16.one_bits == 0x3f80u);
  CHECK(run(static_cast<DType>(7), &bad) == kBadDType && bad.calls == 0);
}

// A direct double-precision attention of one (path, b, group, head) vs the host kernel.
static void test_entity_attention_kernel() {
  const int P = 2;
  const int64_t B = 2, T = 3, K = 4, H = 2, Dh = 5;
  const Strides6 s = contiguous_strides6(B, T, K, H, Dh);
  const int64_t n = P * B * T * K * H * Dh;
  std::vector<double> q(n), k(n), v(n), out(n), lse(n / Dh);
  std::srand(7);
  for (int64_t i = 0; i < n; ++i) {
    q[i] = std::rand() / double(RAND_MAX) - 0.5;
    k[i] = std::rand() / double(RAND_MAX) - 0.5;
    v[i] = std::rand() / double(RAND_MAX) - 0.5;
  }
  std::vector<uint8_t> mask(B * T * K, 1);
  mask[1 * T * K + 2 * K + 3] = 0;  // clip 1, frame 2, entity 3 absent
  for (int64_t t = 0; t < T; ++t) mask[0 * T * K + t * K + 1] = 0;  // entity 1 of clip 0 never present
  EntityAttentionFwdArgs a{};
  a.shape = {P, B, T, K, H, Dh, 0b10};
  a.dtype = DType::Float64;
  a.q = q.data(); a.k = k.data(); a.v = v.data();
  a.sq = a.sk = a.sv = s;
  a.mask = mask.data();
  a.sm = {T * K, K, 1};
  a.scale = 0.7;
  a.out = out.data();
  a.lse = lse.data();
  CHECK(entity_attention_fwd_cpu(a, serial_for) == kOk);
  for (int p = 0; p < P; ++p)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t kk = 0; kk < K; ++kk)
          for (int64_t h = 0; h < H; ++h) {
            const bool temporal = p == 1;
            const int64_t N = temporal ? T : K;
            std::vector<double> sc(N);
            double mx = -INFINITY;
            for (int64_t j = 0; j < N; ++j) {
              const int64_t tj = temporal ? j : t, kj = temporal ? kk : j;
              if (!mask[b * T * K + tj * K + kj]) { sc[j] = -INFINITY; continue; }
              double d = 0;
              for (int64_t e = 0; e < Dh; ++e)
                d += q[p * s.p + b * s.b + t * s.t + kk * s.k + h * s.h + e] *
                     k[p * s.p + b * s.b + tj * s.t + kj * s.k + h * s.h + e];
              sc[j] = d * 0.7;
              mx = std::fmax(mx, sc[j]);
            }
            for (int64_t e = 0; e < Dh; ++e) {
              double num = 0, den = 0;
              for (int64_t j = 0; j < N; ++j) {
                if (sc[j] == -INFINITY) continue;
                const int64_t tj = temporal ? j : t, kj = temporal ? kk : j;
                const double w = std::exp(sc[j] - mx);
                den += w;
                num += w * v[p * s.p + b * s.b + tj * s.t + kj * s.k + h * s.h + e];
              }
              const double ref = den > 0 ? num / den : 0.0;
              CHECK(std::fabs(out[p * s.p + b * s.b + t * s.t + kk * s.k + h * s.h + e] - ref) < 1e-12);
            }
          }
}

int main() {
  test_half();
  test_bf16();
  test_softmax();
  test_router();
  test_group_index();
  test_dtype_switch();
  test_entity_attention_kernel();
  if (failures) {
    std::fprintf(stderr, "test_common_math: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("test_common_math: all checks passed\n");
  return 0;
}
