"""Backend registry and dispatch for the public ops.

A backend is a module exposing
- ``unavailable_reason() -> str | None``: why it cannot run at all here (not built, not installed);
- ``runtime_reasons(op, device, dtype) -> list[str]``: why it refuses these inputs for reasons only the
  running process knows (no CUDA kernels loaded, no Triton GPU driver, the interpreter's bf16 dot); what
  its kernels take in general (devices, dtypes, size limits) is its rows of ``_capabilities.CAPABILITIES``;
- one callable per op, taking arguments already validated by ``_checks``:
  ``entity_attention(q, k, v, axes, mask, scale)``, ``routed_merge(x_st, x_ts, weight, bias, tau, mask)``.
Backends add only their launch; checks, shapes and limits live in ``_checks``, ``_limits`` and
``_capabilities``.

"Can backend X run this?" has one answer, ``unsupported_reasons(backend, op, device, dtype, sizes)`` (every
reason; ``unsupported_reason`` joins them, ``supports`` is the boolean form): dispatch, the tests and the
benchmarks all ask it. ``"auto"`` logs why it passed over a backend on the ``mdn_fast.ops`` logger at
debug level (``logging.getLogger("mdn_fast.ops").setLevel(logging.DEBUG)`` to see it).
"""
from __future__ import annotations

import importlib
import logging
import os

import torch

from . import _auto_table
from ._capabilities import table_reasons

#: The backends, by the names the ops' ``backend=`` takes; ``BACKEND_CHOICES`` adds ``"auto"``.
BACKENDS = ("reference", "triton", "cpp")
BACKEND_CHOICES = BACKENDS + ("auto",)
_log = logging.getLogger("mdn_fast.ops")
_MODULES = {
    "reference": "mdn_fast.ops.reference_backend",
    "triton": "mdn_fast.ops.triton_backend",
    "cpp": "mdn_fast.ops.cpp_backend",
}
# Order "auto" tries per device type when ``_auto_table`` has no measurement for the op and dtype. CUDA's is
# an assumption until a GPU result generates the table (``python -m tools.auto_table``); on CPU only the
# C++ extension is a real fused backend (Triton runs there only under the interpreter). The reference closes
# every list so "auto" never fails where the reference would succeed.
_AUTO_ORDER = {"cuda": ("triton", "cpp", "reference"), "cpu": ("cpp", "reference")}
_loaded: dict = {}


def _module(name: str):
    """The backend module, or the reason it is missing (a string)."""
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(_MODULES[name])
        except Exception as e:  # a missing backend must never break the package
            _loaded[name] = f"{type(e).__name__}: {e}"
    return _loaded[name]


def load_backends() -> None:
    """Import every backend module once (a failure is recorded as that backend's reason)."""
    for name in BACKENDS:
        _module(name)


def unavailable_reason(name: str) -> str | None:
    mod = _module(name)
    if isinstance(mod, str):
        return mod
    return mod.unavailable_reason()


def available_backends() -> dict[str, str | None]:
    """``{backend: None if usable here, else why not}`` for every backend name."""
    return {name: unavailable_reason(name) for name in BACKENDS}


def check_backend_name(backend) -> None:
    """Raise ``ValueError`` naming the choices unless ``backend`` is one of ``BACKEND_CHOICES``."""
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"backend: expected one of {BACKEND_CHOICES}, got {backend!r}")


def unsupported_reasons(backend: str, op: str, device, dtype: torch.dtype, sizes: dict) -> list[str]:
    """Every reason ``backend`` cannot run ``op`` on these inputs here (empty when it can): it is not
    available at all (not built, not installed), its kernels do not take this device type, dtype or these
    sizes (``_capabilities.CAPABILITIES``), or this process cannot run them (the backend's
    ``runtime_reasons``, asked only when it is available).

    Args:
        backend: a name of ``BACKENDS``; op: ``"entity_attention"`` or ``"routed_merge"``;
        device: a ``torch.device`` or its string; dtype: the inputs' dtype;
        sizes: ``{"P", "B", "T", "K", "H", "Dh"}`` for entity_attention, ``{"B", "T", "K", "D"}`` for
            routed_merge (a size left out is not checked; extra keys are ignored).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    device = torch.device(device)
    why = unavailable_reason(backend)
    reasons = [why] if why else []
    reasons += table_reasons(backend, op, device, dtype, sizes)
    if not why:
        reasons += _module(backend).runtime_reasons(op, device, dtype)
    return reasons


def unsupported_reason(backend: str, op: str, device, dtype: torch.dtype, sizes: dict) -> str | None:
    """``unsupported_reasons`` as one string (``"; "`` between reasons), None when ``backend`` can run it."""
    return "; ".join(unsupported_reasons(backend, op, device, dtype, sizes)) or None


def supports(backend: str, op: str, device, dtype: torch.dtype, sizes: dict) -> bool:
    """Whether ``backend`` can run ``op`` on these inputs here (``unsupported_reason`` is None)."""
    return unsupported_reason(backend, op, device, dtype, sizes) is None


def auto_order(device_type: str, op: str, dtype, table: dict | None = None) -> tuple[tuple[str, ...], dict | None]:
    """The backends ``"auto"`` tries for ``op`` on this device type and dtype (a ``torch.dtype`` or its name,
    e.g. ``"bfloat16"``), in order, and the measurement the order comes from (an entry of ``table``, by
    default ``_auto_table.TABLE``; None: the assumed ``_AUTO_ORDER``).

    A table entry orders the fused backends it measured, fastest first; those of ``_AUTO_ORDER`` it did not
    measure follow in their assumed order (a backend absent from ``_AUTO_ORDER`` for this device type, e.g.
    Triton on CPU, is never added), and the reference closes the list."""
    default = _AUTO_ORDER.get(device_type, ("reference",))
    table = _auto_table.TABLE if table is None else table
    entry = table.get((device_type, op, str(dtype).removeprefix("torch.")))
    measured = tuple(b for b in entry["order"] if b in default and b != "reference") if entry else ()
    rest = tuple(b for b in default if b not in measured and b != "reference")
    return measured + rest + ("reference",), entry


_DIFF_TRANSFORMS = ("Grad", "Jvp")  # torch.func transform types that differentiate (grad, vjp, jacrev, jvp, ...)


def autodiff_reason(inputs=()) -> str | None:
    """Why no fused backend can run in the current autodiff context (None when they can). The fused ops'
    autograd is a backward formula registered with ``torch.library.register_autograd``: it serves
    reverse-mode autograd (any order: see ``ops._autograd``), but not
    - torch.func's differentiating transforms (``grad``, ``vjp``, ``jacrev``, ``jacfwd``, ``jvp``,
      ``hessian``), which need an ``autograd.Function`` with ``setup_context`` and fail with torch's
      generic message; ``vmap`` alone is fine (torch runs the op per sample);
    - forward-mode AD (``torch.autograd.forward_ad``) on ``inputs``, where the tangent would be dropped
      without a word.
    ``resolve`` consults it: a named fused backend raises with this reason, ``"auto"`` runs the reference."""
    try:
        if torch._C._are_functorch_transforms_active():
            stack = torch._C._functorch.get_interpreter_stack() or ()
            if any(i.key().name in _DIFF_TRANSFORMS for i in stack):
                return ("a differentiating torch.func transform (grad, vjp, jacrev, jacfwd, jvp, hessian) is "
                        "active, and the fused ops' autograd (torch.library.register_autograd) cannot run under "
                        "it")
    except AttributeError:  # torch moved its functorch internals: tests/ops/test_silent_ops.py fails loudly
        pass
    from torch.autograd import forward_ad
    if forward_ad._current_level >= 0 and any(
            isinstance(t, torch.Tensor) and forward_ad.unpack_dual(t).tangent is not None for t in inputs):
        return ("an input carries a forward-mode AD tangent (torch.autograd.forward_ad), and the fused ops "
                "have no forward-mode formula (the tangent would be lost)")
    return None


def resolve(op: str, backend: str, x: torch.Tensor, sizes: dict, inputs=()):
    """The backend module to run ``op`` on these inputs. A named backend that cannot run them raises
    with its reason; ``"auto"`` takes the first of ``auto_order`` that can (the measured order of
    ``_auto_table`` where it has an entry, else ``_AUTO_ORDER``: on CUDA an assumption until a GPU result
    generates the table). ``MDN_FAST_BACKEND`` forces "auto" to one backend (the reference still backs it).
    Besides the inputs' device, dtype and sizes (``unsupported_reason``), the autodiff context counts
    (``autodiff_reason``: torch.func's differentiating transforms, forward-mode AD on ``inputs``, the op's
    tensors): only the reference runs there."""
    check_backend_name(backend)
    context = autodiff_reason(inputs)
    if backend != "auto":
        why = unsupported_reason(backend, op, x.device, x.dtype, sizes)
        if not why and backend != "reference":
            why = context
        if why:
            raise NotImplementedError(f"backend={backend!r} cannot run {op} here: {why}. "
                                      f"Use backend='auto' or 'reference'.")
        return _module(backend)
    forced = os.environ.get("MDN_FAST_BACKEND")  # test/benchmark hook: force "auto" to one backend
    order = (forced, "reference") if forced in BACKENDS else auto_order(x.device.type, op, x.dtype)[0]
    for name in order:
        why = context if context and name != "reference" else unsupported_reason(name, op, x.device, x.dtype, sizes)
        if not why:
            return _module(name)
        if not torch.compiler.is_compiling() and _log.isEnabledFor(logging.DEBUG):  # dynamo cannot trace logging
            _log.debug("backend='auto' passed over %r for %s (%s, %s, %s): %s", name, op, x.device.type,
                       x.dtype, sizes, why)
    raise AssertionError("unreachable: the reference backend accepts every valid input")


def auto_sources() -> list[tuple[str, str, str, tuple[str, ...], str]]:
    """Where "auto"'s order comes from, for ``mdn_fast.info``: ``(device type, op, dtype, order, source)``,
    one row per device type for the assumed default (op and dtype ``"*"``) and one per table entry."""
    rows = [(dev, "*", "*", order, "assumed: every op/dtype without a measured entry in mdn_fast/ops/_auto_table.py")
            for dev, order in _AUTO_ORDER.items()]
    for (dev, op, dtype), e in sorted(_auto_table.TABLE.items()):
        medians = ", ".join(f"{b} {e['medians_s'][b] * 1e3:.3g} ms" for b in e["order"])
        rows.append((dev, op, dtype, auto_order(dev, op, dtype)[0],
                     f"measured on {e['device']} {e['date'][:10]} ({e['mode']}: {medians}; {e['source']})"))
    return rows
