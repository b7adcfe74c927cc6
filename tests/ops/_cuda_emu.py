"""The CUDA emulation harness: runs the checkout's own CUDA kernels (csrc/cuda/*.cu) on the CPU.

- ``library()`` compiles csrc/cuda/*.cu as C++ against csrc/emu/cuda_emu.h (``-DMDN_CUDA_EMULATE``), with
  the emulator (csrc/emu/*.cpp) and the argument plumbing the torch layer uses (csrc/args/*.cpp), into one
  shared library, cached under ``$MDN_FAST_EMU_CACHE`` (default ``~/.cache/mdn_fast/cuda_emu``) by a hash of
  every source and header under csrc/ and of the compiler and flags: edit a kernel, rerun the tests, and the
  edit is what runs (no reinstall). ``None`` plus ``unavailable_reason()`` when no C++ compiler or no
  ``cuda_fp16.h`` (a CUDA toolkit, or the nvidia wheels' headers) is found.
- ``TensorRef``: the ctypes mirror of csrc/args/tensor_ref.h.
- torch ops ``mdn_fast_cuda_emu::{entity_attention,routed_merge}_{fwd,bwd}`` with the schemas of
  csrc/torch/library.cpp, registered with the fake impls and autograd of the ``cpp`` backend
  (``cpp_backend.register_fakes_and_autograd``). Every call poisons: outputs (scratch included) start as NaN
  between guard pads that must be intact after the launch, and with ``nan_gaps`` on (the default) every
  any-strides input is copied into a strided view of a NaN-filled buffer (a gap in every dimension, every
  other feature), so a kernel that reads outside its element reads NaN.
- ``BACKEND``: a backend module (the interface of ``mdn_fast.ops._backends``), and ``standing_in_for_cpp()``,
  a context manager under which ``backend="cpp"`` on CPU tensors runs the emulated CUDA kernels, so the
  checks of tests/_helpers.py run them unchanged.
- ``schedule(name, seed, poison_byte)``: how the emulated threads take turns (``SCHEDULES``).
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Tuple

import torch

# The repository (tests/ops/ is two levels down): this file also runs as a script, without the tests package.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRC = os.path.join(ROOT, "csrc")
NAMESPACE = "mdn_fast_cuda_emu"
SCHEDULES = ("lockstep", "lockstep-reversed", "lockstep-shuffled", "warp-serial", "warp-serial-reversed")
FLAGS = ["-std=c++17", "-O2", "-fPIC", "-DMDN_CUDA_EMULATE", "-Wall", "-Wno-unknown-pragmas"]
_GUARD_BYTES = 64
_GUARD_FILL = 0xA5

_lock = threading.RLock()
_lib = None
_reason: Optional[str] = None
_nan_gaps = [True]


# ------------------------------------------------------------------------------------------ build
def _cuda_include() -> Optional[str]:
    """A folder holding cuda_fp16.h / cuda_bf16.h: the toolkit's, else the nvidia wheels' (pip CUDA)."""
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        homes.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    cands = [os.path.join(h, "include") for h in homes if h]
    import site
    for sp in site.getsitepackages():
        cands += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "include")))
        cands += sorted(glob.glob(os.path.join(sp, "nvidia", "*", "*", "include")))
    for c in cands:
        if os.path.exists(os.path.join(c, "cuda_fp16.h")) and os.path.exists(os.path.join(c, "cuda_bf16.h")):
            return c
    return None


def sources() -> Tuple[List[str], List[str]]:
    """(kernel .cu files, host .cpp files) of the emulated library, from the checkout."""
    cu = sorted(glob.glob(os.path.join(CSRC, "cuda", "*.cu")) + glob.glob(os.path.join(CSRC, "emu", "*.cu")))
    cpp = sorted(glob.glob(os.path.join(CSRC, "emu", "*.cpp")) + glob.glob(os.path.join(CSRC, "args", "*.cpp")))
    return cu, cpp


def _digest(cxx: str, inc: str, extra: List[str]) -> str:
    h = hashlib.sha256()
    files = sorted(set(glob.glob(os.path.join(CSRC, "**", "*.*"), recursive=True)))
    for f in files:
        if f.endswith((".cu", ".cuh", ".h", ".cpp")):
            h.update(os.path.relpath(f, CSRC).encode())
            with open(f, "rb") as fh:
                h.update(fh.read())
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    h.update("\0".join([cxx, version, inc] + FLAGS + extra).encode())
    return h.hexdigest()[:20]


def build(extra_flags: Optional[List[str]] = None, out_dir: Optional[str] = None) -> str:
    """Compile the emulated library (cached by content hash); returns its path. Raises RuntimeError with the
    compiler's output on a compile error."""
    extra = list(extra_flags or [])
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise FileNotFoundError("no C++ compiler (g++ / c++ / $CXX) to build the CUDA emulation")
    inc = _cuda_include()
    if not inc:
        raise FileNotFoundError("cuda_fp16.h not found (set CUDA_HOME to a CUDA toolkit, or install torch's "
                                "nvidia CUDA wheels): the emulation uses the toolkit's half/bfloat16 types")
    cache = out_dir or os.environ.get("MDN_FAST_EMU_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                            "mdn_fast", "cuda_emu")
    key = _digest(cxx, inc, extra)
    target = os.path.join(cache, key, "libmdn_cuda_emu.so")
    if os.path.exists(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    cu, cpp = sources()
    base = [cxx] + FLAGS + extra + ["-I" + CSRC, "-I" + inc]
    with tempfile.TemporaryDirectory(dir=os.path.dirname(target)) as tmp:
        jobs = [(f, os.path.join(tmp, f"{i}.o"), ["-x", "c++"] if f.endswith(".cu") else [])
                for i, f in enumerate(cu + cpp)]

        def compile_one(job):
            src, obj, lang = job
            r = subprocess.run(base + lang + ["-c", src, "-o", obj], capture_output=True, text=True)
            return src, r

        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as ex:
            for src, r in ex.map(compile_one, jobs):
                if r.returncode != 0:
                    raise RuntimeError(f"CUDA emulation: compiling {os.path.relpath(src, ROOT)} failed:\n"
                                       f"{r.stdout}{r.stderr}")
        tmp_so = os.path.join(tmp, "lib.so")
        r = subprocess.run([cxx, "-shared", "-Wl,-Bsymbolic", "-o", tmp_so] + [j[1] for j in jobs] + ["-ldl"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError(f"CUDA emulation: linking failed:\n{r.stdout}{r.stderr}")
        os.replace(tmp_so, target)  # atomic: a concurrent build of the same sources is harmless
    return target


class TensorRef(ctypes.Structure):
    """Mirror of ``mdn::TensorRef`` (csrc/args/tensor_ref.h)."""
    _fields_ = [("data", ctypes.c_void_p), ("defined", ctypes.c_int32), ("dim", ctypes.c_int32),
                ("elem", ctypes.c_int32), ("device_type", ctypes.c_int32), ("device_index", ctypes.c_int32),
                ("reserved", ctypes.c_int32), ("sizes", ctypes.c_int64 * 8), ("strides", ctypes.c_int64 * 8)]


_ELEM = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3, torch.bool: 4}
_P = ctypes.POINTER(TensorRef)


def ref(t: Optional[torch.Tensor]) -> TensorRef:
    r = TensorRef()
    if t is None:
        return r
    assert t.dim() <= 8 and t.device.type == "cpu"
    r.data, r.defined, r.dim = t.data_ptr(), 1, t.dim()
    r.elem, r.device_type, r.device_index = _ELEM.get(t.dtype, 5), 0, -1
    for i in range(t.dim()):
        r.sizes[i], r.strides[i] = t.size(i), t.stride(i)
    return r


def _load():
    global _lib, _reason
    if _lib is not None or _reason is not None:
        return _lib
    try:
        lib = ctypes.CDLL(build())
    except (FileNotFoundError, RuntimeError, OSError) as e:
        _reason = f"{type(e).__name__}: {e}"
        return None
    err = (ctypes.c_char_p, ctypes.c_longlong)
    lib.mdn_emu_configure.argtypes = [ctypes.c_int, ctypes.c_ulonglong, ctypes.c_int]
    lib.mdn_emu_stats.argtypes = [ctypes.POINTER(ctypes.c_ulonglong)]
    lib.mdn_emu_selftest.argtypes = [ctypes.c_char_p, ctypes.c_void_p, *err]
    lib.mdn_emu_entity_attention_fwd.argtypes = [_P, _P, _P, ctypes.POINTER(ctypes.c_longlong), ctypes.c_longlong,
                                                 _P, ctypes.c_double, _P, _P, *err]
    lib.mdn_emu_entity_attention_bwd.argtypes = [_P, _P, _P, _P, _P, ctypes.POINTER(ctypes.c_longlong),
                                                 ctypes.c_longlong, _P, ctypes.c_double, _P, _P, _P, *err]
    lib.mdn_emu_routed_merge_fwd.argtypes = [_P, _P, _P, _P, ctypes.c_double, _P, _P, _P, *err]
    lib.mdn_emu_routed_merge_bwd.argtypes = [_P, _P, _P, _P, _P, _P, ctypes.c_double, _P, _P, _P, _P, _P, _P, _P,
                                             *err]
    _lib = lib
    return lib


def library():
    """The loaded emulation library, or None (then ``unavailable_reason()`` says why)."""
    with _lock:
        return _load()


def unavailable_reason() -> Optional[str]:
    library()
    return _reason


def stats() -> dict:
    out = (ctypes.c_ulonglong * 4)()
    library().mdn_emu_stats(out)
    return dict(zip(("launches", "blocks", "threads", "switches"), list(out)))


def selftest(name: str) -> torch.Tensor:
    """Run the emulator's self-test kernel ``name`` (csrc/emu/selftest_kernels.cu) into a NaN-filled buffer of
    1024 floats and return it; a failed launch raises RuntimeError with the emulator's message."""
    out = torch.full((1024,), float("nan"))
    err = ctypes.create_string_buffer(4096)
    with _lock:
        code = library().mdn_emu_selftest(name.encode(), out.data_ptr(), err, len(err))
    if code != 0:
        raise RuntimeError(err.value.decode(errors="replace"))
    return out


@contextlib.contextmanager
def schedule(name: str = "lockstep", seed: int = 0, poison_byte: int = 0xFF, nan_gaps: bool = True):
    """Run the emulated kernels under ``name`` (one of ``SCHEDULES``), shared memory filled with
    ``poison_byte`` before every block, inputs NaN-gapped or not."""
    lib = library()
    with _lock:
        lib.mdn_emu_configure(SCHEDULES.index(name), seed, poison_byte)
        old, _nan_gaps[0] = _nan_gaps[0], nan_gaps
        try:
            yield
        finally:
            lib.mdn_emu_configure(0, 0, 0xFF)
            _nan_gaps[0] = old


# ------------------------------------------------------------------------------- poisoned buffers
class _Guarded:
    """A contiguous output of ``shape`` / ``dtype`` NaN-filled between two guard pads of known bytes."""

    def __init__(self, shape, dtype):
        n = 1
        for s in shape:
            n *= s
        self.nbytes = n * torch.empty((), dtype=dtype).element_size()
        self.buf = torch.full((2 * _GUARD_BYTES + self.nbytes,), _GUARD_FILL, dtype=torch.uint8)
        self.t = self.buf[_GUARD_BYTES:_GUARD_BYTES + self.nbytes].view(dtype).view(shape)
        self.t.fill_(float("nan"))

    def checked(self, what: str) -> torch.Tensor:
        lo, hi = self.buf[:_GUARD_BYTES], self.buf[_GUARD_BYTES + self.nbytes:]
        for name, g in (("before", lo), ("after", hi)):
            bad = (g != _GUARD_FILL).nonzero()
            if len(bad):
                raise RuntimeError(f"emulated CUDA: {what}: a kernel wrote {len(bad)} byte(s) into the guard pad "
                                   f"{name} the output (first at {int(bad[0])} bytes {name} it): out of bounds")
        return self.t.clone()


def _gapped(x: Optional[torch.Tensor], fill=float("nan")) -> Optional[torch.Tensor]:
    """``x`` copied into a strided view of a ``fill``-filled buffer: one extra slice in every dimension and
    every other element along the last, so any read outside x's elements reads ``fill``."""
    if x is None or not _nan_gaps[0]:
        return x
    big = torch.full([s + 1 for s in x.shape[:-1]] + [2 * x.shape[-1] + 1], fill, dtype=x.dtype)
    view = big[tuple(slice(0, s) for s in x.shape[:-1]) + (slice(1, 2 * x.shape[-1] + 1, 2),)]
    view.copy_(x)
    return view


def _mask(m):
    return _gapped(m, True) if m is not None else None


def _call(fn, what, *args):
    """``fn(*args)`` with TensorRef arguments given as tensors (or None): the tensors stay referenced
    here for the whole call."""
    keep = [a for a in args if isinstance(a, torch.Tensor)]
    cargs = [ctypes.byref(ref(a)) if isinstance(a, torch.Tensor) or a is None else a for a in args]
    err = ctypes.create_string_buffer(4096)
    with _lock:
        code = fn(*cargs, err, len(err))
    del keep
    if code != 0:
        raise RuntimeError(err.value.decode(errors="replace"))


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------- the ops
def _define_ops():
    lib_def = torch.library.Library(NAMESPACE, "DEF")
    lib_def.define("entity_attention_fwd(Tensor q, Tensor k, Tensor v, int[] axes, Tensor? mask, float scale) -> "
                   "(Tensor, Tensor)")
    lib_def.define("entity_attention_bwd(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor lse, int[] axes, "
                   "Tensor? mask, float scale) -> (Tensor, Tensor, Tensor)")
    lib_def.define("routed_merge_fwd(Tensor x_st, Tensor x_ts, Tensor weight, Tensor bias, float tau, Tensor? mask)"
                   " -> (Tensor, Tensor)")
    lib_def.define("routed_merge_bwd(Tensor grad_y, Tensor? grad_alpha, Tensor x_st, Tensor x_ts, Tensor weight, "
                   "Tensor alpha, float tau, Tensor? mask) -> (Tensor, Tensor, Tensor, Tensor)")
    lib = library()

    def ea_fwd(q, k, v, axes, mask, scale):
        P, B, T, K, H, _ = q.shape
        out, lse = _Guarded(q.shape, q.dtype), _Guarded((P, B, T, K, H), _acc(q.dtype))
        ax = (ctypes.c_longlong * max(1, len(axes)))(*axes)
        _call(lib.mdn_emu_entity_attention_fwd, "entity_attention_fwd",
              _gapped(q), _gapped(k), _gapped(v), ax, len(axes), _mask(mask), scale, out.t, lse.t)
        return out.checked("entity_attention_fwd out"), lse.checked("entity_attention_fwd lse")

    def ea_bwd(grad_out, q, k, v, lse, axes, mask, scale):
        outs = [_Guarded(q.shape, q.dtype) for _ in range(3)]
        ax = (ctypes.c_longlong * max(1, len(axes)))(*axes)
        _call(lib.mdn_emu_entity_attention_bwd, "entity_attention_bwd",
              _gapped(grad_out), _gapped(q), _gapped(k), _gapped(v), lse, ax, len(axes), _mask(mask), scale,
              *(o.t for o in outs))
        return tuple(o.checked(f"entity_attention_bwd {n}") for o, n in zip(outs, ("dq", "dk", "dv")))

    def rm_fwd(x_st, x_ts, weight, bias, tau, mask):
        B, T, K, D = x_st.shape
        y, alpha = _Guarded(x_st.shape, x_st.dtype), _Guarded((B, K, 2), weight.dtype)
        _call(lib.mdn_emu_routed_merge_fwd, "routed_merge_fwd", _gapped(x_st), _gapped(x_ts), weight, bias,
              tau, _mask(mask), y.t, alpha.t)
        return y.checked("routed_merge_fwd y"), alpha.checked("routed_merge_fwd alpha")

    def rm_bwd(grad_y, grad_alpha, x_st, x_ts, weight, alpha, tau, mask):
        B, T, K, D = x_st.shape
        acc = weight.dtype
        if grad_alpha is not None:  # as csrc/torch/routed_merge_op.cpp passes it: contiguous, accumulation dtype
            grad_alpha = grad_alpha.to(acc).contiguous()
        outs = [_Guarded(x_st.shape, x_st.dtype), _Guarded(x_st.shape, x_st.dtype), _Guarded(weight.shape, acc),
                _Guarded((K, 2), acc), _Guarded((B, K, 2), acc), _Guarded((B, K, 2 * D), acc)]
        _call(lib.mdn_emu_routed_merge_bwd, "routed_merge_bwd",
              _gapped(grad_y), grad_alpha, _gapped(x_st), _gapped(x_ts), weight, alpha, tau, _mask(mask),
              *(o.t for o in outs))
        names = ("dx_st", "dx_ts", "dweight", "dbias", "scratch_dlogits", "scratch_pooled")
        res = [o.checked(f"routed_merge_bwd {n}") for o, n in zip(outs, names)]
        return tuple(res[:4])

    lib_impl = torch.library.Library(NAMESPACE, "IMPL", "CPU")
    lib_impl.impl("entity_attention_fwd", ea_fwd)
    lib_impl.impl("entity_attention_bwd", ea_bwd)
    lib_impl.impl("routed_merge_fwd", rm_fwd)
    lib_impl.impl("routed_merge_bwd", rm_bwd)
    from mdn_fast.ops import cpp_backend
    cpp_backend.register_fakes_and_autograd(NAMESPACE)
    return lib_def, lib_impl


_libs: list = []


def ops():
    """``torch.ops.mdn_fast_cuda_emu`` (defined on first use)."""
    with _lock:
        if library() is None:
            raise RuntimeError(f"the CUDA emulation is unavailable: {_reason}")
        if not _libs:
            _libs.extend(_define_ops())
    return getattr(torch.ops, NAMESPACE)


class _Backend:
    """The emulated CUDA kernels with the interface of an ``mdn_fast.ops`` backend module (CPU tensors)."""

    @staticmethod
    def unavailable_reason():
        return unavailable_reason()

    @staticmethod
    def runtime_reasons(op, device, dtype):
        # dtypes and sizes: the "cpp" rows of the capability table, the CUDA kernels' own rules
        if torch.device(device).type != "cpu":
            return ["the CUDA emulation runs on host memory (CPU tensors)"]
        return []

    @staticmethod
    def entity_attention(q, k, v, axes, mask, scale):
        from mdn_fast.ops import cpp_backend
        return cpp_backend.call_entity_attention(ops(), q, k, v, axes, mask, scale)

    @staticmethod
    def routed_merge(x_st, x_ts, weight, bias, tau, mask):
        from mdn_fast.ops import cpp_backend
        return cpp_backend.call_routed_merge(ops(), x_st, x_ts, weight, bias, tau, mask)


BACKEND = _Backend()


@contextlib.contextmanager
def standing_in_for_cpp():
    """Within, ``backend="cpp"`` runs the emulated CUDA kernels (what "cpp" runs on a GPU)."""
    from mdn_fast.ops import _backends
    ops()
    saved = _backends._loaded.get("cpp")
    _backends._loaded["cpp"] = BACKEND
    try:
        yield
    finally:
        _backends._loaded["cpp"] = saved


if __name__ == "__main__":  # python tests/ops/_cuda_emu.py: build (or find) the library and print its path
    print(build())
    sys.exit(0)
