"""The ``cpp`` backend: the compiled extensions ``mdn_fast._C`` (csrc/: the op schemas and the CPU kernels)
and, when built with CUDA and torch is a CUDA build, ``mdn_fast._C_cuda`` (the CUDA kernels), registered as
the torch ops ``torch.ops.mdn_fast.*``. Both are built on PyTorch's stable ABI (torch >= 2.11) and
Python's limited API, so one build serves every supported torch and Python.

Ops (schemas in csrc/torch/library.cpp, implementations in csrc/torch/*_op.cpp):
- ``entity_attention_fwd(q, k, v, axes: int[], mask, scale) -> (out, lse)``: q, k, v ``[P, B, T, K, H, Dh]``
  any strides; axes 0 = spatial, 1 = temporal; out contiguous in q's dtype; lse ``[P, B, T, K, H]`` in the
  accumulation dtype: the natural-log log-sum-exp of each query's scaled scores, ``-inf`` for a query
  whose group has no present key (the backward's saved softmax statistics; the Triton backend's
  ``mdn_fast_triton`` ops have these names, schemas and conventions too).
- ``entity_attention_bwd(grad_out, q, k, v, lse, axes, mask, scale) -> (dq, dk, dv)``.
- ``routed_merge_fwd(x_st, x_ts, weight, bias, tau, mask) -> (y, alpha)``: weight ``[K, 2, 2D]`` and bias
  ``[K, 2]`` in the accumulation dtype (this wrapper casts them; autograd casts the gradients back).
- ``routed_merge_bwd(grad_y, grad_alpha, x_st, x_ts, weight, alpha, tau, mask) -> (dx_st, dx_ts, dweight, dbias)``.
``build_info()`` (Python): what was built (``mdn_fast._C.BUILD_INFO`` and ``_C_cuda``'s): ``cpu=1``,
``abi=stable``, ``cuda=0|1``, ``cuda_archs``, and the limits compiled in (``max_k``, ``max_t``, ``max_dh``,
``max_paths``: those of ``mdn_fast._limits``). Sizes beyond them are refused by the ops themselves (a direct
``torch.ops`` call included).

The forward ops carry fake (meta) implementations and the shared autograd wiring (``ops._autograd``), so
they work under
autograd, ``torch.compile`` and ``torch.library.opcheck``. Outputs are NaN-filled under
``MDN_FAST_POISON=1`` (the C++ side follows ``mdn_fast._debug.new_output``).

Importing this module never fails: when ``_C`` is missing or cannot load, ``unavailable_reason()`` says
why and the package runs on its other backends. ``MDN_FAST_DISABLE_C=1`` skips loading it (tests).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os

import torch

from .._limits import AXES, acc_dtype
from ._autograd import register_entity_attention_autograd, register_routed_merge_autograd



def _find(name: str):
    """``(spec or None, None)``, or ``(None, reason)`` when looking the module up itself failed."""
    try:
        return importlib.util.find_spec(name), None
    except (ImportError, ValueError) as e:
        return None, f"{name} cannot be found: {type(e).__name__}: {e}"


def _load() -> str | None:
    """Load ``mdn_fast._C`` (its static initialisers register the ops and the CPU kernels); the reason on
    failure."""
    if os.environ.get("MDN_FAST_DISABLE_C", "0") == "1":
        return "disabled by MDN_FAST_DISABLE_C=1"
    spec, why = _find("mdn_fast._C")
    if why:
        return why
    if spec is None:
        return ("mdn_fast._C is not built (a pure-Python install): install a binary wheel of mdn-fast, or build "
                "from a source checkout with `pip install --no-build-isolation -e .` (torch importable at build "
                "time, MDN_FAST_BUILD_EXT not 0)")
    try:
        importlib.import_module("mdn_fast._C")
    except Exception as e:  # e.g. a torch older than the stable ABI it targets (2.11)
        return f"mdn_fast._C failed to load: {type(e).__name__}: {e}"
    if not hasattr(torch.ops.mdn_fast, "entity_attention_fwd"):
        return "mdn_fast._C loaded but registered no mdn_fast ops"
    return None


def _load_cuda() -> str | None:
    """Load ``mdn_fast._C_cuda`` (the CUDA kernels) when torch is a CUDA build; the reason it is not there."""
    if _LOAD_ERROR is not None:
        return _LOAD_ERROR
    spec, why = _find("mdn_fast._C_cuda")
    if why:
        return why
    if spec is None:
        return ("mdn_fast._C was built without CUDA kernels (CPU only); rebuild with a CUDA toolkit and "
                "MDN_FAST_CUDA=1, or install the CUDA wheel of mdn-fast")
    if not torch.version.cuda:
        return f"torch {torch.__version__} is a CPU build: the CUDA kernels (mdn_fast._C_cuda) are not loaded"
    built = _C_INFO().get("cuda_major")  # before _C_cuda loads, so not build_info()
    if built and built != torch.version.cuda.split(".")[0]:
        return (f"mdn_fast's CUDA kernels were built for CUDA {built}, this torch for CUDA {torch.version.cuda}: "
                f"install the mdn-fast wheel built for CUDA {torch.version.cuda.split('.')[0]}, or rebuild from "
                f"source (pip install --no-build-isolation .)")
    try:
        importlib.import_module("mdn_fast._C_cuda")
    except Exception as e:
        return f"mdn_fast._C_cuda failed to load: {type(e).__name__}: {e}"
    return None


def _C_INFO() -> dict[str, str]:
    import mdn_fast._C as c
    return dict(line.split("=", 1) for line in c.BUILD_INFO.splitlines() if "=" in line)


_LOAD_ERROR = _load()
_CUDA_ERROR = _load_cuda()


def unavailable_reason() -> str | None:
    return _LOAD_ERROR


@functools.cache
def _build_info() -> dict[str, str]:
    if _LOAD_ERROR is not None:
        return {}
    info = _C_INFO()
    if _CUDA_ERROR is None:
        import mdn_fast._C_cuda as cc
        info.update(line.split("=", 1) for line in cc.BUILD_INFO.splitlines() if "=" in line)
    else:
        info["cuda"] = "0"
        info["cuda_reason"] = _CUDA_ERROR
    return info


def build_info() -> dict[str, str]:
    """What the extension was built with, e.g. ``{"cpu": "1", "abi": "stable", "cuda": "1", "cuda_archs":
    "8.0;9.0+PTX", "max_k": "16", ...}`` (``cuda`` is "1" when the CUDA kernels are loaded; empty when
    ``_C`` is unavailable). Read from the libraries once; each call returns a fresh copy."""
    return dict(_build_info())


def runtime_reasons(op, device, dtype) -> list[str]:
    """Why this process cannot run the C++ kernels on ``device`` (the devices, dtypes and sizes they take
    are the "cpp" rows of ``ops._capabilities.CAPABILITIES``): the CUDA kernels are not loaded."""
    if torch.device(device).type == "cuda" and _CUDA_ERROR is not None:
        return [_CUDA_ERROR]
    return []


def call_entity_attention(ns, q, k, v, axes, mask, scale):
    """Run the ``entity_attention_fwd`` op of torch op namespace ``ns`` (``torch.ops.mdn_fast``, or the CUDA
    emulation's in the tests: the same wrapper for both); returns the output."""
    codes = [AXES.index(a) for a in axes]
    return ns.entity_attention_fwd(q, k, v, codes, mask, float(scale))[0]


def call_routed_merge(ns, x_st, x_ts, weight, bias, tau, mask):
    """Run ``ns.routed_merge_fwd``: the router parameters go to the kernel in the accumulation dtype; the cast
    is differentiable, so their gradients come back in their own dtype."""
    acc = acc_dtype(x_st.dtype)
    w = weight.to(acc).contiguous()
    b = bias.to(acc).contiguous()
    return tuple(ns.routed_merge_fwd(x_st, x_ts, w, b, float(tau), mask))


def entity_attention(q, k, v, axes, mask, scale):
    """``[P, B, T, K, H, Dh]`` -> ``[P, B, T, K, H, Dh]`` (contiguous, q's dtype); arguments already checked."""
    return call_entity_attention(torch.ops.mdn_fast, q, k, v, axes, mask, scale)


def routed_merge(x_st, x_ts, weight, bias, tau, mask):
    """``(y [B, T, K, D], alpha [B, K, 2] acc dtype)``; arguments already checked."""
    return call_routed_merge(torch.ops.mdn_fast, x_st, x_ts, weight, bias, tau, mask)


# --------------------------------------------------------------------------- fake impls and autograd
def register_fakes_and_autograd(namespace: str) -> None:
    """Fake impls and autograd of the four ops of ``namespace`` (their schemas are those of csrc/torch/library.cpp):
    ``mdn_fast`` here, the CUDA emulation's namespace in the tests."""
    lib = namespace + "::"
    ns = getattr(torch.ops, namespace)

    @torch.library.register_fake(lib + "entity_attention_fwd")
    def _ea_fwd_fake(q, k, v, axes, mask, scale):
        P, B, T, K, H, _ = q.shape
        return q.new_empty(q.shape), q.new_empty((P, B, T, K, H), dtype=acc_dtype(q.dtype))

    @torch.library.register_fake(lib + "entity_attention_bwd")
    def _ea_bwd_fake(grad_out, q, k, v, lse, axes, mask, scale):
        return q.new_empty(q.shape), q.new_empty(q.shape), q.new_empty(q.shape)

    @torch.library.register_fake(lib + "routed_merge_fwd")
    def _rm_fwd_fake(x_st, x_ts, weight, bias, tau, mask):
        B, _, K, _ = x_st.shape
        return x_st.new_empty(x_st.shape), weight.new_empty((B, K, 2))

    @torch.library.register_fake(lib + "routed_merge_bwd")
    def _rm_bwd_fake(grad_y, grad_alpha, x_st, x_ts, weight, alpha, tau, mask):
        K = x_st.shape[2]
        return (x_st.new_empty(x_st.shape), x_st.new_empty(x_st.shape), weight.new_empty(weight.shape),
                weight.new_empty((K, 2)))

    register_entity_attention_autograd(lib + "entity_attention_fwd", ns.entity_attention_bwd)
    register_routed_merge_autograd(lib + "routed_merge_fwd", ns.routed_merge_bwd)


if _LOAD_ERROR is None:
    register_fakes_and_autograd("mdn_fast")
