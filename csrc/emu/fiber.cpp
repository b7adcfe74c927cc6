#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <new>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace mdn_emu {

struct Fiber {
  void* sp = nullptr;  // saved stack pointer (x86-64)
  char* map = nullptr;
  std::size_t map_bytes = 0;
  FiberEntry entry = nullptr;
  void* arg = nullptr;
#if !defined(__x86_64__)
  ucontext_t ctx;
#endif
};

namespace {

std::size_t page_size() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

[[noreturn]] void fiber_start(Fiber* f) {
  f->entry(f->arg);
  std::abort();  // an entry never returns: it switches back to the scheduler for good
}

}  // namespace

#if defined(__x86_64__)
// void mdn_emu_switch(void** save_sp, void* load_sp): push the callee-saved registers and the SSE /
// x87 control words, store rsp, load the other stack's rsp, pop the same. A new fiber's stack is laid
// out so that the pops fill r12 with the Fiber* and `ret` enters mdn_emu_trampoline.
extern "C" void mdn_emu_switch(void** save_sp, void* load_sp);
extern "C" void mdn_emu_trampoline();
asm(R"(
  .text
  .globl mdn_emu_switch
  .type mdn_emu_switch,@function
mdn_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size mdn_emu_switch,.-mdn_emu_switch

  .globl mdn_emu_trampoline
  .type mdn_emu_trampoline,@function
mdn_emu_trampoline:
  movq %r12, %rdi
  call mdn_emu_fiber_start
  ud2
  .size mdn_emu_trampoline,.-mdn_emu_trampoline
)");

extern "C" [[noreturn]] void mdn_emu_fiber_start(Fiber* f) { fiber_start(f); }

void fiber_reset(Fiber* f, FiberEntry entry, void* arg) {
  f->entry = entry;
  f->arg = arg;
  // Below the 16-byte aligned top of the stack, the frame mdn_emu_switch pops: control words, r15..rbp,
  // return address. After `ret` rsp is the aligned top, as the trampoline's `call` needs.
  auto top = reinterpret_cast<uintptr_t>(f->map + f->map_bytes) & ~uintptr_t(15);
  auto* s = reinterpret_cast<uint64_t*>(top);
  *--s = reinterpret_cast<uint64_t>(&mdn_emu_trampoline);          // ret
  *--s = 0;                                                        // rbp
  *--s = 0;                                                        // rbx
  *--s = reinterpret_cast<uint64_t>(f);                            // r12: the trampoline's argument
  *--s = 0;                                                        // r13
  *--s = 0;                                                        // r14
  *--s = 0;                                                        // r15
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  *--s = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fpucw) << 32);
  f->sp = s;
}

void fiber_switch(Fiber* from, Fiber* to) { mdn_emu_switch(&from->sp, to->sp); }

#else  // portable fallback

namespace {
void ucontext_start(unsigned hi, unsigned lo) {
  fiber_start(reinterpret_cast<Fiber*>((static_cast<uintptr_t>(hi) << 32) | lo));
}
}  // namespace

void fiber_reset(Fiber* f, FiberEntry entry, void* arg) {
  f->entry = entry;
  f->arg = arg;
  getcontext(&f->ctx);
  f->ctx.uc_stack.ss_sp = f->map + page_size();
  f->ctx.uc_stack.ss_size = f->map_bytes - page_size();
  f->ctx.uc_link = nullptr;
  const auto p = reinterpret_cast<uintptr_t>(f);
  makecontext(&f->ctx, reinterpret_cast<void (*)()>(&ucontext_start), 2, static_cast<unsigned>(p >> 32),
              static_cast<unsigned>(p & 0xffffffffu));
}

void fiber_switch(Fiber* from, Fiber* to) { swapcontext(&from->ctx, &to->ctx); }

#endif

Fiber* fiber_create(std::size_t bytes) {
  const std::size_t page = page_size();
  bytes = (bytes + page - 1) / page * page + page;  // + the guard page
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  mprotect(m, page, PROT_NONE);
  auto* f = new Fiber;
  f->map = static_cast<char*>(m);
  f->map_bytes = bytes;
  return f;
}

void fiber_destroy(Fiber* f) {
  if (f->map) munmap(f->map, f->map_bytes);
  delete f;
}

Fiber* fiber_host() { return new Fiber; }

}  // namespace mdn_emu
