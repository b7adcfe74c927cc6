// The emulator's controls, for the C entry points (emu_ops.cpp) and the self-test kernels.
#pragma once

#include <cstdint>
#include <string>

namespace mdn_emu {

// How the threads of a block take turns (see cuda_emu.h). Blocks follow: in order for kLockstep and
// kWarpSerial, reversed for the reversed ones, shuffled (seeded) for kLockstepShuffled.
enum Schedule : int {
  kLockstep = 0,
  kLockstepReversed = 1,
  kLockstepShuffled = 2,
  kWarpSerial = 3,
  kWarpSerialReversed = 4,
  kNumSchedules = 5,
};

// Schedule, seed of the shuffled order, and the byte __shared__ memory is filled with before each block.
void configure(int schedule, uint64_t seed, int poison_byte);
// The message of the last failed launch ("" when none), cleared by reading.
std::string take_error_message();

struct Stats {
  uint64_t launches, blocks, threads, switches;
};
Stats stats();

}  // namespace mdn_emu
