"""The Triton interpreter's bf16 arithmetic, made right for the tests (the shipped package never patches Triton).

Why. Triton's CPU interpreter (``triton/runtime/interpreter.py``, the same code in Triton 3.6, 3.8 and
3.9) holds a bfloat16 tensor as its raw ``uint16`` bit patterns (``_get_np_dtype``: numpy has no
bfloat16), and ``InterpreterBuilder.create_dot`` converts only 8-bit float operands before
``np.matmul(a, b, dtype=float32)``: a bf16 ``tl.dot`` multiplies the bit patterns as integers (1.0 is
0x3F80 = 16256, so ``ones @ ones`` over K = 16 gives 4.2e9, not 16). Reported upstream as
https://github.com/triton-lang/triton/issues/11584; its fix (PR #11585) was closed unmerged: the
interpreter does not support bf16 arithmetic. Also, its fp32 -> bf16 cast (``cast_impl`` through
``_convert_float`` with no rounding mode) truncates, where the GPU's ``cvt.rn.bf16.f32`` rounds to
nearest even: a bias of up to 1 ulp (2**-8 relative) on every bf16 value a kernel stores or feeds a dot.

The fix, :func:`install`: a ``tl.dot`` with a bf16 or fp16 operand widens both operands to float32
(exact: bf16 is the top half of a float32, fp16 converts exactly), multiplies and accumulates in float32
and adds the accumulator, giving the result in the accumulator's dtype, as the GPU's tensor cores do
(exact products, fp32 accumulation); an fp32 -> bf16 cast rounds to nearest even. Everything else is
Triton's own code. Then it checks itself on a tiny kernel and, only if the dot is right, sets
``mdn_fast.kernels.triton.INTERPRETER_BF16_DOT_OK``, which makes the Triton backend take bf16
``entity_attention`` under the interpreter (without it the backend refuses, naming this module).

tests/conftest.py calls :func:`install` when ``TRITON_INTERPRET=1``. Where Triton is missing or its
interpreter's internals differ from what is patched here, it patches nothing, leaves the flag unset (the
bf16 Triton cases skip with the backend's reason) and says why in pytest's header (:data:`STATUS`).
"""
from __future__ import annotations

import inspect

import numpy as np

UPSTREAM_ISSUE = "https://github.com/triton-lang/triton/issues/11584"
_DOT_PARAMS = ["self", "a", "b", "d", "input_precision", "max_num_imprecise_acc"]

#: What :func:`install` did: ``None`` before it ran, else one line for pytest's header.
STATUS: str | None = None
#: Triton's own ``InterpreterBuilder.create_dot`` and ``cast_impl``, as found (for the tests that
#: show the bug); ``None`` until :func:`install` patched them.
ORIGINAL: dict | None = None


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) -> their float32 values, exactly."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), rounded to nearest even as the GPU does (NaN stays a NaN,
    of its sign; overflow rounds to inf)."""
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = ((u >> 16) & 0x8000 | 0x7FC0).astype(np.uint16)
    return np.where(np.isnan(x), nan, r)


def _widen(handle, tl) -> np.ndarray:
    """A dot operand or accumulator as float32 values (bf16 from its bits; fp16 and fp32 by value)."""
    if handle.dtype.scalar == tl.bfloat16:
        return bf16_bits_to_f32(handle.data)
    return np.asarray(handle.data).astype(np.float32)


def _patched(interp, tl, original_dot, original_cast):
    low = (tl.bfloat16, tl.float16)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if a.dtype.scalar not in low and b.dtype.scalar not in low:
            return original_dot(self, a, b, d, input_precision, max_num_imprecise_acc)
        acc = d.dtype.scalar
        out = np.matmul(_widen(a, tl), _widen(b, tl)) + _widen(d, tl)     # fp32 products, fp32 sums
        if acc == tl.bfloat16:
            out = f32_to_bf16_bits(out)
        elif acc != tl.float32:
            out = out.astype(interp._get_np_dtype(acc))
        return interp.TensorHandle(out, acc)

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            return interp.TensorHandle(f32_to_bf16_bits(src.data), dst_type.scalar)
        return original_cast(self, src, dst_type)

    return create_dot, cast_impl


def _internals_reason(interp, tl) -> str | None:
    """Why this Triton's interpreter is not the one patched here (None when it is)."""
    builder = getattr(interp, "InterpreterBuilder", None)
    if builder is None or not hasattr(interp, "TensorHandle") or not hasattr(interp, "_get_np_dtype"):
        return "triton.runtime.interpreter has no InterpreterBuilder / TensorHandle / _get_np_dtype"
    for name in ("create_dot", "cast_impl"):
        if not callable(getattr(builder, name, None)):
            return f"InterpreterBuilder has no {name}"
    params = list(inspect.signature(builder.create_dot).parameters)
    if params != _DOT_PARAMS:
        return f"InterpreterBuilder.create_dot takes {params}, not {_DOT_PARAMS}"
    if list(inspect.signature(builder.cast_impl).parameters) != ["self", "src", "dst_type"]:
        return "InterpreterBuilder.cast_impl takes other arguments than (self, src, dst_type)"
    try:
        if interp._get_np_dtype(tl.bfloat16) != np.dtype(np.uint16):
            return "the interpreter does not hold bfloat16 as uint16 bit patterns"
    except Exception as e:
        return f"_get_np_dtype(bfloat16) failed ({type(e).__name__}: {e})"
    return None


_PROBES: dict = {}


def _probes():
    """Two tiny kernels (decorated on first use, in this process's flavour): ``c = tl.dot(a, b, c)`` on one
    tile, and ``y = x.to(tl.bfloat16)``."""
    if not _PROBES:
        import triton
        import triton.language as tl

        @triton.jit
        def dot(a_ptr, b_ptr, c_ptr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
            m, n, k = tl.arange(0, M), tl.arange(0, N), tl.arange(0, K)
            x = tl.load(a_ptr + m[:, None] * K + k[None, :])
            y = tl.load(b_ptr + k[:, None] * N + n[None, :])
            c = c_ptr + m[:, None] * N + n[None, :]
            tl.store(c, tl.dot(x, y, tl.load(c)))

        @triton.jit
        def to_bf16(x_ptr, y_ptr, N: tl.constexpr):
            i = tl.arange(0, N)
            tl.store(y_ptr + i, tl.load(x_ptr + i).to(tl.bfloat16))

        _PROBES.update(dot=dot, to_bf16=to_bf16)
    return _PROBES


def probe_dot(a, b, acc=None):
    """``tl.dot(a, b, acc)`` of 2-D torch tensors (16-bit; sizes powers of two >= 16) on one interpreted
    tile, in float32 (``acc``: float32 [M, N], default 0). Needs ``TRITON_INTERPRET=1`` in the process."""
    import torch
    (M, K), (_, N) = a.shape, b.shape
    c = torch.zeros(M, N) if acc is None else acc.float().clone()
    _probes()["dot"][(1,)](a.contiguous(), b.contiguous(), c, M, N, K)
    return c


def probe_to_bf16(x):
    """``x.to(tl.bfloat16)`` of a 1-D float32 torch tensor (power-of-two length) in one interpreted kernel."""
    import torch
    y = torch.empty(x.shape, dtype=torch.bfloat16)
    _probes()["to_bf16"][(1,)](x.contiguous(), y, x.numel())
    return y


def _dot_is_right() -> bool:
    import torch
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randint(-4, 5, (16, 32), generator=g), torch.randint(-4, 5, (32, 16), generator=g))
    a, b = a.to(torch.bfloat16), b.to(torch.bfloat16)
    x = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8 + 2 ** -20), 3.0] * 4)   # ties, above a tie
    return (torch.equal(probe_dot(a, b), a.float() @ b.float())     # small integers: exact in any order
            and torch.equal(probe_to_bf16(x), x.bfloat16()))         # torch rounds to nearest even


def install() -> str:
    """Patch the interpreter (see the module docstring) and set the backend's flag if the patched dot is
    right. Idempotent. Returns (and keeps in :data:`STATUS`) one line saying what it did."""
    global STATUS, ORIGINAL
    if STATUS is not None:
        return STATUS
    try:
        import triton.language as tl
        from triton.runtime import interpreter as interp
        from mdn_fast.kernels import triton as kt
    except Exception as e:
        STATUS = f"not patched: Triton or mdn_fast.kernels.triton not importable ({type(e).__name__}: {e})"
        return STATUS
    if not kt.interpreting():
        STATUS = "not patched: Triton runs compiled here (TRITON_INTERPRET was not 1 at import)"
        return STATUS
    why = _internals_reason(interp, tl)
    if why:
        STATUS = f"not patched ({why}): bf16 Triton entity_attention stays refused"
        return STATUS
    builder = interp.InterpreterBuilder
    ORIGINAL = {"create_dot": builder.create_dot, "cast_impl": builder.cast_impl}
    builder.create_dot, builder.cast_impl = _patched(interp, tl, ORIGINAL["create_dot"], ORIGINAL["cast_impl"])
    try:
        ok = _dot_is_right()
    except Exception as e:
        ok, why = False, f"{type(e).__name__}: {e}"
    else:
        why = "the patched dot or cast still differs from torch's fp32 matmul or bf16 rounding"
    if not ok:
        builder.create_dot, builder.cast_impl = ORIGINAL["create_dot"], ORIGINAL["cast_impl"]
        ORIGINAL = None
        STATUS = f"patch undone ({why}): bf16 Triton entity_attention stays refused"
        return STATUS
    kt.INTERPRETER_BF16_DOT_OK = True
    STATUS = (f"patched (tests/ops/_triton_interp_bf16.py): bf16/fp16 tl.dot in fp32, fp32 -> bf16 rounded to "
              f"nearest even ({UPSTREAM_ISSUE})")
    return STATUS
