"""The ``triton`` backend: fused Triton kernels registered as PyTorch ops (design.md §2.4).

Ops (namespace ``mdn_fast_triton``), each a ``torch.library.triton_op`` whose Python body allocates its
outputs and launches through ``wrap_triton`` (so its fake impl is the same body, traced, and
``torch.compile`` sees the kernels), with autograd wired to a backward op by the helpers of
``ops._autograd`` that the C++ backend uses too. Names, schemas and return conventions are those of the
C++ ops (``torch.ops.mdn_fast``, csrc/torch/library.cpp; the strings are ``ops._schemas.SCHEMAS``, which
tests/ops/test_triton_kernels.py checks against the C++ ones), so code written against one namespace runs on
the other:
- ``entity_attention_fwd(q, k, v, int[] axes, Tensor? mask, float scale) -> (out, lse)``; axes: 0 spatial,
  1 temporal; ``out [P, B, T, K, H, Dh]`` contiguous in q's dtype; ``lse [P, B, T, K, H]`` float32, the
  natural-log log-sum-exp of each query's scaled scores, ``-inf`` for a query whose group has no present
  key (unspecified for a poisoned group, whose gradients the backward poisons from its inputs). Internal to the backward (non-differentiable, never returned by the
  public op).
- ``entity_attention_bwd(grad_out, q, k, v, lse, axes, mask, scale) -> (dq, dk, dv)``, contiguous.
- ``routed_merge_fwd(x_st, x_ts, weight, bias, float tau, Tensor? mask) -> (y, alpha)``.
- ``routed_merge_bwd(grad_y, Tensor? grad_alpha, x_st, x_ts, weight, alpha, float tau, mask) -> (dx_st,
  dx_ts, dweight, dbias)``; a missing ``grad_alpha`` counts as zeros.

Devices: CUDA tensors where Triton has a GPU driver; CPU tensors only through the Triton interpreter,
i.e. when ``TRITON_INTERPRET=1`` was set before ``triton`` was first imported (``import mdn_fast``
imports it; Triton fixes the flavour of its standard library then: see ``mdn_fast.kernels.triton``).
Nothing here touches a GPU at import; the driver is looked up on the first CUDA call. Under the
interpreter a kernel cannot be captured into a graph, so there the ops stay opaque to functionalization
(the kernels run when the graph runs) instead of being decomposed. Every result is deterministic (no
atomics anywhere).
"""
from __future__ import annotations

from typing import Optional

import torch

from .._debug import new_output
from .._limits import AXES
from ._autograd import register_entity_attention_autograd, register_routed_merge_autograd
from ._schemas import SCHEMAS

try:
    import triton  # noqa: F401
    from torch.library import triton_op, wrap_triton
    from ..kernels import triton as _kt
    from ..kernels.triton import entity_attention as _ea
    from ..kernels.triton import routed_merge as _rm
    _IMPORT_ERROR = None
except Exception as e:  # triton missing or torch < 2.6: the backend reports why and is never called
    _IMPORT_ERROR = f"{type(e).__name__}: {e}"

# The interpreter multiplies bf16 dot operands as their uint16 bit patterns (Triton 3.6 to 3.9; the fix was
# declined upstream). So under it bf16 entity_attention is refused unless
# ``kernels.triton.INTERPRETER_BF16_DOT_OK`` says the dot was made right (the test harness does that).
BF16_DOT_ISSUE = "https://github.com/triton-lang/triton/issues/11584"
_gpu_driver_reason_cache: list = []


def _gpu_driver_reason() -> str | None:
    """Why Triton cannot launch on CUDA here (None when it can). Queries the driver once, lazily."""
    if not _gpu_driver_reason_cache:
        try:
            from triton.runtime import driver
            driver.active.get_current_target()
            _gpu_driver_reason_cache.append(None)
        except Exception as e:
            _gpu_driver_reason_cache.append(f"Triton has no GPU driver here ({type(e).__name__}: {e})")
    return _gpu_driver_reason_cache[0]


def unavailable_reason() -> str | None:
    if _IMPORT_ERROR is not None:
        return f"triton backend not importable ({_IMPORT_ERROR})"
    if not _kt.interpreting() and not torch.cuda.is_available():
        return ("no CUDA device for Triton, and Triton was imported without TRITON_INTERPRET=1 (CPU runs need "
                "the interpreter: set it before importing mdn_fast)")
    return None


def runtime_reasons(op: str, device, dtype) -> list[str]:
    """Why this process cannot run the Triton kernels on these inputs (the devices, dtypes and sizes they
    take are the "triton" rows of ``ops._capabilities.CAPABILITIES``): CPU tensors without the
    interpreter, no GPU driver, or the interpreter's bf16 dot."""
    device = torch.device(device)
    if _kt.interpreting():
        if op == "entity_attention" and dtype == torch.bfloat16 and not _kt.INTERPRETER_BF16_DOT_OK:
            return [f"the Triton interpreter's bf16 tl.dot is wrong upstream ({BF16_DOT_ISSUE}): bf16 runs on a "
                    "GPU only; the test harness fixes it (tests/ops/_triton_interp_bf16.py)"]
        return []
    if device.type == "cpu":
        return ["CPU tensors run on the Triton backend only through the interpreter (TRITON_INTERPRET=1 set "
                "before triton is first imported, i.e. before importing mdn_fast)"]
    if device.type == "cuda":
        why = _gpu_driver_reason()
        return [why] if why else []
    return []


def _is_fake(x: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import is_fake
    return is_fake(x)


def _launch(kernel, grid, *args, **kwargs):
    """Launch ``kernel`` (``@triton.jit``) through ``wrap_triton``. Interpreted kernels cannot be traced: they
    launch directly, and not at all on fake tensors (the fake impl only needs the outputs' metadata)."""
    if not _kt.interpreting():
        wrap_triton(kernel)[grid](*args, **kwargs)
    elif not any(isinstance(a, torch.Tensor) and _is_fake(a) for a in args):
        kernel[grid](*args, **kwargs)  # interpreted: launched directly (older torch's wrap_triton refuses it)


def _keep_opaque_under_interpreter(op) -> None:
    """Under the interpreter, keep ``op`` whole in traced graphs. ``triton_op`` makes functionalization
    (AOTAutograd, torch.compile) decompose the op into its body so compilers see the kernel; an
    interpreted kernel cannot be traced (``_launch`` skips it on fake tensors), so the graph would keep the
    outputs' allocation and lose the kernel. Compiled kernels keep the decomposition. The flavour is
    fixed for the process (see ``mdn_fast.kernels.triton``), so this is decided once, at registration.

    ``FunctionalTensorMode`` is private torch, but it is the mode ``register_torch_dispatch`` (public)
    needs here, and ``mode.__torch_dispatch__`` is the handling any opaque custom op gets from it.
    tests/ops/test_triton_kernels.py::test_ops_stay_whole_in_compiled_graphs fails loudly if torch moves or
    changes either."""
    if not _kt.interpreting():
        return
    from torch._subclasses.functional_tensor import FunctionalTensorMode

    def opaque(mode, func, types, args, kwargs):
        return mode.__torch_dispatch__(func, types, args, kwargs)

    op.register_torch_dispatch(FunctionalTensorMode, opaque)


def _strides(x: torch.Tensor):
    return tuple(x.stride())


def _vectorised(*tensors: torch.Tensor) -> bool:
    """Whether Triton's launch will see every row of these ``[..., Dh]`` tensors 16-element aligned: unit
    column stride, Dh, every other stride and the storage offset divisible by 16 (what it specialises
    on; the allocator aligns storages). Then it vectorises the row loads; otherwise each element is a
    separate load, which costs registers (``entity_attention.launch_config`` chunks those tiles)."""
    return all(x.stride(-1) == 1 and x.shape[-1] % 16 == 0 and x.storage_offset() % 16 == 0
               and all(s % 16 == 0 for s in x.stride()[:-1]) for x in tensors)


def _mask_arg(mask: Optional[torch.Tensor], like: torch.Tensor):
    """(pointer tensor, strides [3]) for an optional bool mask [B, T, K]; uint8 view, no copy."""
    if mask is None:
        return like, (0, 0, 0)
    return mask.view(torch.uint8), _strides(mask)


if _IMPORT_ERROR is None:

    # ---------------------------------------------------------------- entity_attention
    @triton_op("mdn_fast_triton::entity_attention_fwd", mutates_args=(), schema=SCHEMAS["entity_attention_fwd"])
    def _entity_attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, axes: list[int],
                             mask: Optional[torch.Tensor], scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        P, B, T, K, H, Dh = q.shape
        o = new_output((P, B, T, K, H, Dh), q.dtype, q.device)
        lse = new_output((P, B, T, K, H), torch.float32, q.device)
        cfg = _ea.launch_config(T, K, Dh, axes, q.dtype == torch.float32, _vectorised(q, k, v))
        m_arg, m_str = _mask_arg(mask, q)
        grid = (B * H * cfg["NGB"], P)
        _launch(_ea.ea_fwd_kernel, grid, q, k, v, o, lse, m_arg,
                *_strides(q), *_strides(k), *_strides(v), *_strides(o), *_strides(lse), *m_str,
                T, K, H, Dh, cfg["NGB"], cfg["axes_bits"], scale,
                HAS_MASK=mask is not None, **cfg["fwd"])
        return o, lse

    @triton_op("mdn_fast_triton::entity_attention_bwd", mutates_args=(), schema=SCHEMAS["entity_attention_bwd"])
    def _entity_attention_bwd(grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              lse: torch.Tensor, axes: list[int], mask: Optional[torch.Tensor], scale: float
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        P, B, T, K, H, Dh = q.shape
        dq, dk, dv = (new_output((P, B, T, K, H, Dh), q.dtype, q.device) for _ in range(3))
        cfg = _ea.launch_config(T, K, Dh, axes, q.dtype == torch.float32, _vectorised(q, k, v, grad_out))
        m_arg, m_str = _mask_arg(mask, q)
        grid = (B * H * cfg["NGB"], P)
        _launch(_ea.ea_bwd_kernel, grid, q, k, v, grad_out, lse, m_arg, dq, dk, dv,
                *_strides(q), *_strides(k), *_strides(v), *_strides(grad_out), *_strides(dq),
                *_strides(lse), *m_str,
                T, K, H, Dh, cfg["NGB"], cfg["axes_bits"], scale,
                HAS_MASK=mask is not None, **cfg["bwd"])
        return dq, dk, dv

    register_entity_attention_autograd(_entity_attention_fwd, _entity_attention_bwd)
    _keep_opaque_under_interpreter(_entity_attention_fwd)
    _keep_opaque_under_interpreter(_entity_attention_bwd)

    # ---------------------------------------------------------------- routed_merge
    @triton_op("mdn_fast_triton::routed_merge_fwd", mutates_args=(), schema=SCHEMAS["routed_merge_fwd"])
    def _routed_merge_fwd(x_st: torch.Tensor, x_ts: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         tau: float, mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, K, D = x_st.shape
        y = new_output((B, T, K, D), x_st.dtype, x_st.device)
        alpha = new_output((B, K, 2), torch.float32, x_st.device)
        cfg = _rm.launch_config(T, D)
        m_arg, m_str = _mask_arg(mask, x_st)
        _launch(_rm.rm_fwd_kernel, (B * K,), x_st, x_ts, weight, bias, m_arg, y, alpha,
                *_strides(x_st), *_strides(x_ts), *_strides(y), *_strides(weight), *_strides(bias),
                *m_str, *_strides(alpha), T, K, D, 1.0 / tau,
                HAS_MASK=mask is not None, SINGLE=cfg["SINGLE"], BLOCK_T=cfg["BLOCK_T"],
                BLOCK_D=cfg["BLOCK_D"], NCHUNK=cfg["NCHUNK"], num_warps=cfg["num_warps"])
        return y, alpha

    @triton_op("mdn_fast_triton::routed_merge_bwd", mutates_args=(), schema=SCHEMAS["routed_merge_bwd"])
    def _routed_merge_bwd(grad_y: torch.Tensor, grad_alpha: Optional[torch.Tensor], x_st: torch.Tensor,
                          x_ts: torch.Tensor, weight: torch.Tensor, alpha: torch.Tensor, tau: float,
                          mask: Optional[torch.Tensor]
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, K, D = x_st.shape
        if grad_alpha is None:  # the C++ schema's convention: no gradient for alpha means zeros
            grad_alpha = torch.zeros_like(alpha)
        dx_st, dx_ts = (new_output((B, T, K, D), x_st.dtype, x_st.device) for _ in range(2))
        dlogits = new_output((B, K, 2), torch.float32, x_st.device)
        pooled = new_output((B, K, 2 * D), torch.float32, x_st.device)
        cfg = _rm.launch_config(T, D)
        m_arg, m_str = _mask_arg(mask, x_st)
        _launch(_rm.rm_bwd_kernel, (B * K,), grad_y, grad_alpha, x_st, x_ts, weight, alpha, m_arg,
                dx_st, dx_ts, dlogits, pooled,
                *_strides(grad_y), *_strides(x_st), *_strides(x_ts), *_strides(dx_st), *_strides(weight),
                *m_str, *_strides(alpha), *_strides(grad_alpha), T, K, D, 1.0 / tau,
                HAS_MASK=mask is not None, SINGLE=cfg["SINGLE"], BLOCK_T=cfg["BLOCK_T"],
                BLOCK_D=cfg["BLOCK_D"], NCHUNK=cfg["NCHUNK"], num_warps=cfg["num_warps"])
        # Router grads reduced over clips by torch (deterministic): dW[k] = dlogits[:, k]^T @ pooled[:, k].
        dweight = torch.bmm(dlogits.permute(1, 2, 0), pooled.permute(1, 0, 2)).to(weight.dtype)
        dbias = dlogits.sum(dim=0).to(weight.dtype)
        return dx_st, dx_ts, dweight, dbias

    register_routed_merge_autograd(_routed_merge_fwd, _routed_merge_bwd)
    _keep_opaque_under_interpreter(_routed_merge_fwd)
    _keep_opaque_under_interpreter(_routed_merge_bwd)


def entity_attention(q, k, v, axes, mask, scale):
    """Backend entry (arguments validated by ``ops._checks``): ``[P, B, T, K, H, Dh]`` -> o, contiguous."""
    codes = [AXES.index(a) for a in axes]
    return torch.ops.mdn_fast_triton.entity_attention_fwd(q, k, v, codes, mask, float(scale))[0]


def routed_merge(x_st, x_ts, weight, bias, tau, mask):
    """Backend entry (arguments validated by ``ops._checks``): returns ``(y, alpha float32)``."""
    return torch.ops.mdn_fast_triton.routed_merge_fwd(x_st, x_ts, weight, bias, float(tau), mask)
