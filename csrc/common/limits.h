// Generated from mdn_fast/_limits.py by setup.py (cpp_limits_header); do not edit: change the
// Python table and rebuild. tests/ops/test_cpp_ext.py checks that this file and the built extension
// agree with the table.
#pragma once

namespace mdn {

constexpr int kMaxK = 16;  // entities per frame K (spatial group size)
constexpr int kMaxT = 64;  // frames per clip T (temporal group size)
constexpr int kMaxDh = 128;  // head dimension Dh
constexpr int kMaxPaths = 64;  // paths P per entity_attention call (the axes travel as a uint64_t mask)
// Members of one attention group: a spatial group has K, a temporal one T.
constexpr int kMaxMembers = kMaxK > kMaxT ? kMaxK : kMaxT;

}  // namespace mdn
