// Fibers for the CUDA emulation: one per emulated CUDA thread, switched by hand on one OS thread.
// A switch saves and restores only the callee-saved registers and the FP control words (a few ns);
// ucontext's swapcontext makes a signal-mask system call per switch, which made the emulated kernels
// ~20x slower. x86-64 uses the hand-written switch; other machines fall back to ucontext.
#pragma once

#include <cstddef>

namespace mdn_emu {

struct Fiber;
using FiberEntry = void (*)(void* arg);

// A stack of `bytes` with a guard page below it (an overflow faults instead of corrupting a neighbour).
Fiber* fiber_create(std::size_t bytes);
void fiber_destroy(Fiber* f);
// Make `f` start at entry(arg) the next time it is switched to.
void fiber_reset(Fiber* f, FiberEntry entry, void* arg);
// Run `to` until it switches back; the caller's context is saved in `from`. A host fiber (the
// scheduler) is a Fiber made by fiber_host().
void fiber_switch(Fiber* from, Fiber* to);
Fiber* fiber_host();

}  // namespace mdn_emu
