// Index math for entity attention on strided [P, B, T, K, H, Dh] tensors.
//
// Path p attends along axes[p]:
//   spatial  (axis 0): group = (b, t), members = the K entities of frame t   -> N = K, G = T
//   temporal (axis 1): group = (b, k), members = the T frames of entity k    -> N = T, G = K
// A token (p, b, t, k, h) is then (group g, member n) with (t, k) = (g, n) or (n, g).
// The axes of all paths are passed as a bit mask (bit p set = path p is temporal), which lets every
// path run in one launch with no per-path array on the device.
#pragma once

#include <cstdint>

#include "limits.h"
#include "mdn_hd.h"

namespace mdn {

enum Axis : int { kSpatial = 0, kTemporal = 1 };

static_assert(kMaxPaths <= 64, "the axis bit mask is a uint64_t");

MDN_HD int path_axis(uint64_t temporal_bits, int p) { return static_cast<int>((temporal_bits >> p) & 1u); }

// Group count and member count of one path.
MDN_HD int64_t groups_of(int axis, int64_t T, int64_t K) { return axis == kTemporal ? K : T; }
MDN_HD int64_t members_of(int axis, int64_t T, int64_t K) { return axis == kTemporal ? T : K; }

// Strides of a [P, B, T, K, H, Dh] tensor (in elements).
struct Strides6 {
  int64_t p, b, t, k, h, d;
};

// Offset of token (p, b, group g, member n, head h, d = 0) and the stride between members.
struct GroupView {
  int64_t base;    // element offset of member 0 of the group at head 0, d = 0
  int64_t member;  // element stride from member n to n + 1
};

MDN_HD GroupView group_view(const Strides6& s, int axis, int64_t p, int64_t b, int64_t g) {
  if (axis == kTemporal) return {p * s.p + b * s.b + g * s.k, s.t};  // group = entity g, members = frames
  return {p * s.p + b * s.b + g * s.t, s.k};                          // group = frame g, members = entities
}

// Strides of the [B, T, K] mask and the view of one group's members in it.
struct Strides3 {
  int64_t b, t, k;
};

MDN_HD GroupView mask_group_view(const Strides3& s, int axis, int64_t b, int64_t g) {
  if (axis == kTemporal) return {b * s.b + g * s.k, s.t};
  return {b * s.b + g * s.t, s.k};
}

// Contiguous strides of [P, B, T, K, H, Dh] (outputs and gradients are always contiguous).
MDN_HD Strides6 contiguous_strides6(int64_t B, int64_t T, int64_t K, int64_t H, int64_t Dh) {
  Strides6 s;
  s.d = 1;
  s.h = Dh;
  s.k = H * Dh;
  s.t = K * s.k;
  s.b = T * s.t;
  s.p = B * s.b;
  (void)B;
  return s;
}

// Linear task index over (p, b, g) for all paths, where paths have different group counts:
// tasks [0, B*G_0) belong to path 0, then B*G_1 to path 1, and so on.
struct PathTask {
  int p;
  int axis;
  int64_t b;
  int64_t g;
};

MDN_HD int64_t total_tasks(int P, uint64_t temporal_bits, int64_t B, int64_t T, int64_t K) {
  int64_t n = 0;
  for (int p = 0; p < P; ++p) n += B * groups_of(path_axis(temporal_bits, p), T, K);
  return n;
}

MDN_HD PathTask task_of(int64_t i, int P, uint64_t temporal_bits, int64_t B, int64_t T, int64_t K) {
  int p = 0;
  for (; p < P - 1; ++p) {
    const int64_t n = B * groups_of(path_axis(temporal_bits, p), T, K);
    if (i < n) break;
    i -= n;
  }
  const int axis = path_axis(temporal_bits, p);
  const int64_t G = groups_of(axis, T, K);
  return {p, axis, i / G, i % G};
}

}  // namespace mdn
