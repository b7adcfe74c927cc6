// The host kernels parallelise through a callback given by the caller (the torch layer passes
// at::parallel_for), so the kernel sources need no torch and no threading library of their own.
#pragma once

#include <cstdint>
#include <functional>

namespace mdn {

// parallel_for(begin, end, grain, body): run body(b, e) over disjoint sub-ranges covering [begin, end).
using ParallelBody = std::function<void(int64_t, int64_t)>;
using ParallelFor = std::function<void(int64_t, int64_t, int64_t, const ParallelBody&)>;

// A serial ParallelFor (for tests and tools without a thread pool).
inline void serial_for(int64_t begin, int64_t end, int64_t /*grain*/, const ParallelBody& body) {
  if (begin < end) body(begin, end);
}

}  // namespace mdn
