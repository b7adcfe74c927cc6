// In-process A/B timing of two builds of the host routed_merge kernel (csrc/cpu/routed_merge_cpu.cpp),
// driven by tools/cpu_kernel_ab.py, which compiles each source tree's kernel under its own namespace
// (slot0_ / slot1_ entry points) and links both into this program. Both builds run on the same buffers,
// on one thread, alternating every round, so machine load and memory placement are shared; only the
// code differs (its instructions, and where its loops land). Not part of the build or of the tests.
//
//   ./ab fwd|bwd ROUNDS CALLS  ->  per-call min / p10 / median ms of each slot and slot1 / slot0
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/routed_merge_cpu.h"

extern "C" int slot0_fwd(const void*);
extern "C" int slot0_bwd(const void*);
extern "C" int slot1_fwd(const void*);
extern "C" int slot1_bwd(const void*);

namespace {

float* alloc_floats(size_t n) { return static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64)); }

double max_abs_diff(const float* x, const float* y, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::fabs(x[i] - y[i])));
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 8) {
    std::fprintf(stderr, "usage: %s fwd|bwd ROUNDS CALLS B T K D\n", argv[0]);
    return 2;
  }
  const bool fwd = std::strcmp(argv[1], "fwd") == 0;
  const int rounds = std::atoi(argv[2]), calls = std::atoi(argv[3]);
  const int64_t B = std::atoll(argv[4]), T = std::atoll(argv[5]), K = std::atoll(argv[6]), D = std::atoll(argv[7]);
  const size_t N = static_cast<size_t>(B * T * K * D);

  // Fresh random inputs (the benchmarks' sizes and ~90 % present mask), fp32, contiguous.
  std::mt19937 gen(10);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> unif(0.f, 1.f);
  float *xs = alloc_floats(N), *xt = alloc_floats(N), *dy = alloc_floats(N);
  float *w = alloc_floats(K * 4 * D), *bias = alloc_floats(K * 2), *alpha = alloc_floats(B * K * 2);
  for (size_t i = 0; i < N; ++i) xs[i] = normal(gen), xt[i] = normal(gen), dy[i] = normal(gen);
  for (int64_t i = 0; i < K * 4 * D; ++i) w[i] = 0.05f * normal(gen);
  for (int64_t i = 0; i < K * 2; ++i) bias[i] = normal(gen);
  for (int64_t i = 0; i < B * K; ++i) alpha[2 * i] = unif(gen), alpha[2 * i + 1] = 1.f - alpha[2 * i];
  std::vector<uint8_t> mask(B * T * K);
  for (auto& m : mask) m = unif(gen) < 0.9f;
  float *out0 = alloc_floats(N), *out1 = alloc_floats(N), *dw = alloc_floats(K * 4 * D), *db = alloc_floats(K * 2);
  float *dl = alloc_floats(B * K * 2), *pooled = alloc_floats(B * K * 2 * D), *alpha_out = alloc_floats(B * K * 2);
  const mdn::Strides4 sx{T * K * D, K * D, D, 1};
  const mdn::Strides3 sm{T * K, K, 1};

  mdn::RoutedMergeFwdArgs fa{};
  fa.B = B, fa.T = T, fa.K = K, fa.D = D, fa.dtype = mdn::DType::Float32;
  fa.x_st = xs, fa.x_ts = xt, fa.s_st = sx, fa.s_ts = sx, fa.weight = w, fa.bias = bias;
  fa.mask = mask.data(), fa.sm = sm, fa.tau = 1.0, fa.y = out0, fa.alpha = alpha_out;
  mdn::RoutedMergeBwdArgs ba{};
  ba.B = B, ba.T = T, ba.K = K, ba.D = D, ba.dtype = mdn::DType::Float32;
  ba.x_st = xs, ba.x_ts = xt, ba.dy = dy, ba.s_st = sx, ba.s_ts = sx, ba.s_dy = sx;
  ba.weight = w, ba.alpha = alpha, ba.dalpha = nullptr, ba.mask = mask.data(), ba.sm = sm, ba.tau = 1.0;
  ba.dx_st = out0, ba.dx_ts = out1, ba.dweight = dw, ba.dbias = db, ba.scratch_dlogits = dl, ba.scratch_pooled = pooled;

  using Fn = int (*)(const void*);
  const Fn fns[2] = {fwd ? slot0_fwd : slot0_bwd, fwd ? slot1_fwd : slot1_bwd};
  const void* args = fwd ? static_cast<const void*>(&fa) : static_cast<const void*>(&ba);

  // The two builds must agree (the same algorithm, so bit for bit unless the change meant otherwise).
  std::vector<float> ref;
  for (int s = 0; s < 2; ++s) {
    if (fns[s](args) != 0) {
      std::fprintf(stderr, "slot %d returned an error status\n", s);
      return 1;
    }
    if (s == 0) ref.assign(out0, out0 + N);
  }
  std::printf("max |slot1 - slot0| of the first output: %g\n", max_abs_diff(ref.data(), out0, N));

  std::vector<double> per_call[2];
  for (int r = 0; r < rounds; ++r)
    for (int i = 0; i < 2; ++i) {
      const int s = (r + i) % 2;  // alternate which slot runs first
      for (int c = 0; c < calls; ++c) {
        const auto t0 = std::chrono::steady_clock::now();
        fns[s](args);
        per_call[s].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    }
  double p10[2], med[2];
  for (int s = 0; s < 2; ++s) {
    auto v = per_call[s];
    std::sort(v.begin(), v.end());
    p10[s] = v[v.size() / 10];
    med[s] = v[v.size() / 2];
    std::printf("slot%d ms/call: min %.4f  p10 %.4f  median %.4f  (%zu calls)\n", s, v.front(), p10[s], med[s],
                v.size());
  }
  std::printf("slot1/slot0: p10 %.4f  median %.4f\n", p10[1] / p10[0], med[1] / med[0]);
  return 0;
}
