// The scheduler of the CUDA emulation (cuda_emu.h): blocks one after another, each thread a fiber,
// barriers and warp shuffles as checked rendezvous points, launch limits, shared-memory poisoning.
#include "emulator.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <vector>

#include "cuda_emu.h"
#include "fiber.h"

namespace mdn_emu {
namespace {

// Limits of every GPU the kernels target (sm_80, sm_90): CUDA Programming Guide, "Technical Specifications".
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr uint64_t kMaxGridDim[3] = {2147483647ull, 65535, 65535};
constexpr std::size_t kMaxSharedPerBlock = 48 * 1024;  // static + dynamic, without an opt-in attribute
constexpr std::size_t kStackBytes = 128 * 1024;        // per emulated thread

enum class St : uint8_t { Ready, Barrier, Shuffle, Done };

struct Thread {
  Fiber* fiber;
  Coords c;
  int linear;
  St st;
  const char* file;  // where it waits
  int line;
  unsigned mask;
  int lane_mask, width;
  std::size_t size;
  unsigned char in[8], out[8];
};

struct Options {
  int schedule = kLockstep;
  uint64_t seed = 0;
  int poison = 0xff;
} g_opt;

struct SharedVar {
  char* addr;
  std::size_t size;
  std::string function;  // unqualified name of the enclosing function, e.g. "ea_fwd_kernel<float>"
};

// Emulation state. One launch at a time on one OS thread: the Python side holds a lock.
struct Grid {
  const LaunchConfig* cfg = nullptr;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  std::vector<Thread> threads;
  int n = 0;
  Thread* cur = nullptr;
  bool failed = false;
  std::string error;
  uint3 block{0, 0, 0};
};

Grid g;
Fiber* g_host = nullptr;
std::vector<Fiber*> g_pool;
std::vector<SharedVar> g_shared;
bool g_shared_found = false;
cudaError_t g_last_error = cudaSuccess;
std::string g_message;
Stats g_stats{};

// ------------------------------------------------------------------------------------------ names
// The unqualified name of a (possibly templated) function: "a::{anonymous}::f<float>" -> "f<float>".
std::string unqualified(const std::string& s) {
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    if (ch == '<' || ch == '(') ++depth;
    if (ch == '>' || ch == ')') --depth;
    if (depth == 0 && ch == ':' && i + 1 < s.size() && s[i + 1] == ':') start = i + 2;
  }
  return s.substr(start);
}

std::string kernel_of(const char* pretty) {
  std::string s(pretty);
  const std::size_t eq = s.find("= ");
  if (eq != std::string::npos) s = s.substr(eq + 2);
  if (!s.empty() && s.back() == ']') s.pop_back();
  if (!s.empty() && s[0] == '&') s = s.substr(1);
  return unqualified(s);
}

// --------------------------------------------------------------------------- shared variables
void shared_marker() {}

// Every writable function-local static of namespace mdn in this library: the kernels' __shared__
// variables (cuda_emu.h makes them statics; host code in namespace mdn keeps none). Read from the
// library's own ELF symbol table, since a section attribute is ignored on statics of templates.
void find_shared() {
  g_shared_found = true;
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void*>(&shared_marker), &info) || !info.dli_fname) return;
  std::ifstream f(info.dli_fname, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (file.size() < sizeof(Elf64_Ehdr)) return;
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(file.data());
  if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) return;
  const auto* sh = reinterpret_cast<const Elf64_Shdr*>(file.data() + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; ++i) {
    if (sh[i].sh_type != SHT_SYMTAB) continue;
    const auto* syms = reinterpret_cast<const Elf64_Sym*>(file.data() + sh[i].sh_offset);
    const char* names = file.data() + sh[sh[i].sh_link].sh_offset;
    const std::size_t count = sh[i].sh_size / sizeof(Elf64_Sym);
    for (std::size_t j = 0; j < count; ++j) {
      const Elf64_Sym& s = syms[j];
      const char* name = names + s.st_name;
      if (ELF64_ST_TYPE(s.st_info) != STT_OBJECT || s.st_size == 0 || std::strncmp(name, "_ZZN3mdn", 8) != 0) continue;
      if (s.st_shndx == SHN_UNDEF || s.st_shndx >= eh->e_shnum || !(sh[s.st_shndx].sh_flags & SHF_WRITE)) continue;
      int status = 0;
      char* dem = abi::__cxa_demangle(name, nullptr, nullptr, &status);
      if (status != 0 || !dem) continue;
      std::string d(dem);
      std::free(dem);
      const std::size_t cut = d.rfind(")::");  // "<function>(<params>)::<variable>"
      if (cut == std::string::npos) continue;
      std::string fn = d.substr(0, cut + 1);
      int depth = 0;  // drop the parameter list: from the '(' matching the final ')'
      std::size_t k = fn.size();
      while (k-- > 0) {
        if (fn[k] == ')') ++depth;
        if (fn[k] == '(' && --depth == 0) break;
      }
      g_shared.push_back({static_cast<char*>(info.dli_fbase) + s.st_value, s.st_size, unqualified(fn.substr(0, k))});
    }
  }
}

std::size_t static_shared_bytes(const std::string& kernel) {
  std::size_t n = 0;
  for (const auto& v : g_shared)
    if (v.function == kernel) n += v.size;
  return n;
}

// ------------------------------------------------------------------------------------------ errors
std::string dim_str(unsigned x, unsigned y, unsigned z) {
  return "(" + std::to_string(x) + ", " + std::to_string(y) + ", " + std::to_string(z) + ")";
}

std::string where(const char* file, int line) {
  std::string f(file ? file : "?");
  const std::size_t slash = f.rfind('/');
  if (slash != std::string::npos) f = f.substr(slash + 1);
  return f + ":" + std::to_string(line);
}

std::string who(const Thread& t) {
  return "thread " + dim_str(t.c.thread_idx.x, t.c.thread_idx.y, t.c.thread_idx.z) + " (warp " +
         std::to_string(t.linear / 32) + ", lane " + std::to_string(t.linear % 32) + ")";
}

std::string hex(unsigned m) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", m);
  return b;
}

void fail(const std::string& what) {
  if (g.failed) return;
  g.failed = true;
  g.error = "emulated CUDA: kernel " + kernel_of(g.cfg->kernel) + " (launched at " + where(g.cfg->file, g.cfg->line) +
            "), block " + dim_str(g.block.x, g.block.y, g.block.z) + ": " + what;
}

std::string state_str(const Thread& t) {
  switch (t.st) {
    case St::Barrier: return who(t) + " waits at __syncthreads() " + where(t.file, t.line);
    case St::Shuffle: return who(t) + " waits at a shuffle " + where(t.file, t.line) + " (mask " + hex(t.mask) + ")";
    case St::Done: return who(t) + " has exited";
    default: return who(t) + " can run";
  }
}

// ------------------------------------------------------------------------------------------ fibers
void thread_main(void* p) {
  auto* t = static_cast<Thread*>(p);
  g.body(g.ctx);
  t->st = St::Done;
  fiber_switch(t->fiber, g_host);
}

void yield() { fiber_switch(g.cur->fiber, g_host); }

void resume(Thread& t) {
  g.cur = &t;
  ++g_stats.switches;
  fiber_switch(g_host, t.fiber);
  g.cur = nullptr;
}

// --------------------------------------------------------------------------------- rendezvous
// Complete the shuffles of warp w whose lanes have all arrived; true when one completed.
bool resolve_shuffles(int w) {
  const int base = 32 * w, n = std::min(32, g.n - base);
  bool done_any = false;
  unsigned handled = 0;
  for (int l = 0; l < n; ++l) {
    Thread& t = g.threads[base + l];
    if (t.st != St::Shuffle || (handled >> l & 1u)) continue;
    const unsigned m = t.mask;
    if (!(m >> l & 1u)) {
      fail(who(t) + " calls a shuffle at " + where(t.file, t.line) + " with mask " + hex(m) +
           ", which leaves out its own lane");
      return false;
    }
    bool arrived = true;
    for (int j = 0; j < 32; ++j) {
      if (!(m >> j & 1u)) continue;
      if (j >= n) {
        fail(who(t) + ": the shuffle at " + where(t.file, t.line) + " names lane " + std::to_string(j) + " in mask " +
             hex(m) + ", but this warp has only " + std::to_string(n) + " threads (block of " + std::to_string(g.n) +
             ")");
        return false;
      }
      const Thread& u = g.threads[base + j];
      if (u.st == St::Done) {
        fail(who(t) + ": the shuffle at " + where(t.file, t.line) + " names lane " + std::to_string(j) + " in mask " +
             hex(m) + ", which has exited");
        return false;
      }
      if (u.st == St::Barrier) {
        fail("deadlock: " + state_str(t) + " for lane " + std::to_string(j) + ", but " + state_str(u));
        return false;
      }
      if (u.st == St::Ready) arrived = false;
      if (u.st == St::Shuffle && (u.mask != m || u.width != t.width)) {
        fail("the lanes of a shuffle disagree on its mask: " + state_str(t) + ", " + state_str(u));
        return false;
      }
    }
    if (!arrived) continue;
    for (int j = 0; j < 32; ++j) {
      if (!(m >> j & 1u)) continue;
      Thread& u = g.threads[base + j];
      const int seg = j / u.width * u.width;  // lanes exchange within segments of `width`
      const int src = ((j - seg) ^ u.lane_mask) + seg;
      if (src >= seg + u.width || src >= n) {
        std::memcpy(u.out, u.in, u.size);  // outside the segment: the lane keeps its own value
        continue;
      }
      if (!(m >> src & 1u)) {
        fail(who(u) + " reads lane " + std::to_string(src) + " in the shuffle at " + where(u.file, u.line) +
             ", which is not in its mask " + hex(m) + " (its value is undefined)");
        return false;
      }
      std::memcpy(u.out, g.threads[base + src].in, u.size);
    }
    for (int j = 0; j < 32; ++j)
      if (m >> j & 1u) g.threads[base + j].st = St::Ready;
    handled |= m;
    done_any = true;
  }
  return done_any;
}

// Release the block barrier when every thread waits at it; true when released.
bool resolve_barrier() {
  int at = 0, done = 0;
  const Thread* first_at = nullptr;
  const Thread* first_done = nullptr;
  for (const Thread& t : g.threads) {
    if (t.st == St::Ready || t.st == St::Shuffle) return false;
    if (t.st == St::Barrier) {
      ++at;
      if (!first_at) first_at = &t;
      else if (t.line != first_at->line || std::strcmp(t.file, first_at->file) != 0) {
        fail("the threads wait at different barriers: " + state_str(*first_at) + ", " + state_str(t));
        return false;
      }
    } else {
      ++done;
      if (!first_done) first_done = &t;
    }
  }
  if (at == 0) return false;
  if (done > 0) {
    fail("__syncthreads() at " + where(first_at->file, first_at->line) + " reached by " + std::to_string(at) + " of " +
         std::to_string(g.n) + " threads: " + who(*first_done) +
         " exited without reaching it (every thread of a block must reach each barrier)");
    return false;
  }
  for (Thread& t : g.threads) t.st = St::Ready;
  return true;
}

void deadlock() {
  std::string s = "deadlock: no thread can go on:";
  int shown = 0;
  for (const Thread& t : g.threads) {
    if (t.st == St::Done) continue;
    if (shown++ == 6) {
      s += " ...";
      break;
    }
    s += " " + state_str(t) + ";";
  }
  fail(s);
}

// --------------------------------------------------------------------------------------- blocks
void run_block(std::mt19937_64& rng) {
  const dim3 bd = g.cfg->block;
  for (int i = 0; i < g.n; ++i) {
    Thread& t = g.threads[i];
    t.c.thread_idx = {static_cast<unsigned>(i) % bd.x, static_cast<unsigned>(i) / bd.x % bd.y,
                      static_cast<unsigned>(i) / (bd.x * bd.y)};
    t.c.block_idx = g.block;
    t.c.block_dim = bd;
    t.c.grid_dim = g.cfg->grid;
    t.linear = i;
    t.st = St::Ready;
    t.file = nullptr;
    t.line = 0;
    fiber_reset(t.fiber, &thread_main, &t);
  }
  for (const auto& v : g_shared) std::memset(v.addr, g_opt.poison, v.size);
  ++g_stats.blocks;
  g_stats.threads += g.n;

  const int warps = (g.n + 31) / 32;
  const bool serial = g_opt.schedule == kWarpSerial || g_opt.schedule == kWarpSerialReversed;
  std::vector<int> order(serial ? warps : g.n);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  if (g_opt.schedule == kLockstepReversed || g_opt.schedule == kWarpSerialReversed)
    std::reverse(order.begin(), order.end());
  for (;;) {
    bool progress = false;
    if (g_opt.schedule == kLockstepShuffled) std::shuffle(order.begin(), order.end(), rng);
    if (serial) {
      for (int w : order) {  // warp w alone until each of its threads waits at the barrier or has exited
        for (bool moved = true; moved;) {
          moved = false;
          for (int i = 32 * w; i < std::min(g.n, 32 * w + 32); ++i)
            if (g.threads[i].st == St::Ready) {
              resume(g.threads[i]);
              moved = true;
              if (g.failed) return;
            }
          moved |= resolve_shuffles(w);
          if (g.failed) return;
          progress |= moved;
        }
      }
    } else {
      for (int i : order)
        if (g.threads[i].st == St::Ready) {
          resume(g.threads[i]);
          progress = true;
          if (g.failed) return;
        }
      for (int w = 0; w < warps; ++w) progress |= resolve_shuffles(w);
      if (g.failed) return;
    }
    if (std::all_of(g.threads.begin(), g.threads.end(), [](const Thread& t) { return t.st == St::Done; })) return;
    progress |= resolve_barrier();
    if (g.failed) return;
    if (!progress) return deadlock();
  }
}

void set_error(cudaError_t e, const std::string& msg) {
  g_last_error = e;
  g_message = msg;
}

}  // namespace

// ------------------------------------------------------------------------------- the device side
const Coords& coords() { return g.cur->c; }

void syncthreads(const char* file, int line) {
  Thread& t = *g.cur;
  t.st = St::Barrier;
  t.file = file;
  t.line = line;
  yield();
}

void shuffle_xor(const char* file, int line, unsigned mask, int lane_mask, int width, const void* in, void* out,
                 std::size_t size) {
  Thread& t = *g.cur;
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    fail(who(t) + ": shuffle at " + where(file, line) + " with width " + std::to_string(width) +
         " (a power of two up to 32)");
    yield();
  }
  t.st = St::Shuffle;
  t.file = file;
  t.line = line;
  t.mask = mask;
  t.lane_mask = lane_mask;
  t.width = width;
  t.size = size;
  std::memcpy(t.in, in, size);
  yield();
  std::memcpy(out, t.out, size);
}

// --------------------------------------------------------------------------------------- launches
void run_grid(const LaunchConfig& cfg, void (*body)(void*), void* ctx) {
  ++g_stats.launches;
  if (!g_shared_found) find_shared();
  const std::string name = kernel_of(cfg.kernel);
  const std::string at = "emulated CUDA: launch of " + name + " at " + where(cfg.file, cfg.line) + ": ";
  const unsigned bdim[3] = {cfg.block.x, cfg.block.y, cfg.block.z};
  const uint64_t gdim[3] = {cfg.grid.x, cfg.grid.y, cfg.grid.z};
  const uint64_t threads = uint64_t(bdim[0]) * bdim[1] * bdim[2];
  for (int d = 0; d < 3; ++d) {
    if (bdim[d] == 0 || gdim[d] == 0)
      return set_error(cudaErrorInvalidConfiguration, at + "a zero grid or block dimension: grid " +
                                                          dim_str(cfg.grid.x, cfg.grid.y, cfg.grid.z) + ", block " +
                                                          dim_str(bdim[0], bdim[1], bdim[2]));
    if (bdim[d] > kMaxBlockDim[d] || gdim[d] > kMaxGridDim[d])
      return set_error(cudaErrorInvalidConfiguration,
                       at + "grid " + dim_str(cfg.grid.x, cfg.grid.y, cfg.grid.z) + " / block " +
                           dim_str(bdim[0], bdim[1], bdim[2]) +
                           " beyond the limits (block <= (1024, 1024, 64), grid <= (2^31 - 1, 65535, 65535))");
  }
  if (threads > kMaxThreadsPerBlock)
    return set_error(cudaErrorInvalidConfiguration,
                     at + std::to_string(threads) + " threads per block (at most " +
                         std::to_string(kMaxThreadsPerBlock) + ")");
  const std::size_t smem = static_shared_bytes(name) + cfg.shared_bytes;
  if (smem > kMaxSharedPerBlock)
    return set_error(cudaErrorInvalidValue, at + std::to_string(smem) + " bytes of shared memory per block (" +
                                                std::to_string(static_shared_bytes(name)) + " static + " +
                                                std::to_string(cfg.shared_bytes) + " dynamic; at most 48 KiB)");
  if (!g_host) g_host = fiber_host();
  while (g_pool.size() < threads) g_pool.push_back(fiber_create(kStackBytes));
  g = Grid{};
  g.cfg = &cfg;
  g.body = body;
  g.ctx = ctx;
  g.n = static_cast<int>(threads);
  g.threads.resize(threads);
  for (uint64_t i = 0; i < threads; ++i) g.threads[i].fiber = g_pool[i];

  const uint64_t blocks = gdim[0] * gdim[1] * gdim[2];
  std::vector<uint64_t> order(blocks);
  for (uint64_t i = 0; i < blocks; ++i) order[i] = i;
  std::mt19937_64 rng(g_opt.seed);
  if (g_opt.schedule == kLockstepReversed || g_opt.schedule == kWarpSerialReversed)
    std::reverse(order.begin(), order.end());
  if (g_opt.schedule == kLockstepShuffled) std::shuffle(order.begin(), order.end(), rng);
  for (uint64_t b : order) {
    g.block = {static_cast<unsigned>(b % gdim[0]), static_cast<unsigned>(b / gdim[0] % gdim[1]),
               static_cast<unsigned>(b / (gdim[0] * gdim[1]))};
    run_block(rng);
    if (g.failed) return set_error(cudaErrorLaunchFailure, g.error);
  }
}

void configure(int schedule, uint64_t seed, int poison_byte) {
  g_opt.schedule = schedule;
  g_opt.seed = seed;
  g_opt.poison = poison_byte & 0xff;
}

std::string take_error_message() {
  std::string m;
  m.swap(g_message);
  return m;
}

Stats stats() { return g_stats; }

cudaError_t get_last_error() {
  const cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}

const char* get_error_string(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "emulated CUDA error";
  }
}

}  // namespace mdn_emu
