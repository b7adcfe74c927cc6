"""What each backend's kernels take, per op, as one table: devices, dtypes and size limits.

``CAPABILITIES[(backend, op)]`` is the static half of "can backend X run this?"; the other half is what
only the running process knows (the extension was not built, Triton has no GPU driver, the interpreter's
bf16 dot): each backend module's ``runtime_reasons``. ``ops._backends.unsupported_reasons`` asks both and
returns every reason, so a refusal names all that is wrong at once. The numbers come from
``mdn_fast._limits`` (which also generates the C++ kernels' csrc/common/limits.h): nothing is written twice.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import torch

from .._limits import MAX_DH, MAX_K, MAX_PATHS, MAX_T, OP_DTYPES

OPS = ("entity_attention", "routed_merge")


@dataclass(frozen=True)
class Capability:
    """What one backend's kernels of one op take. ``devices``: device types (None: any); ``dtypes``: the
    input dtypes; ``limits``: ``{size name: largest value}`` (sizes not named are unbounded); ``why``: what
    the limits come from, for the reader and for ``python -m mdn_fast.info``."""
    devices: tuple[str, ...] | None
    dtypes: tuple[torch.dtype, ...]
    limits: Mapping[str, int] = field(default_factory=dict)
    why: str = ""


#: Words naming the limited sizes in refusals ("K = 17 entities exceeds ...").
SIZE_WORDS = {"P": "paths", "T": "frames", "K": "entities"}

# One attention group lives in one program/thread block: its members (K or T) and a row of Dh features are
# held whole, and the paths' axes travel as a 64-bit mask.
_GROUP_LIMITS = MappingProxyType({"P": MAX_PATHS, "K": MAX_K, "T": MAX_T, "Dh": MAX_DH})
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)   # no fp64 tl.dot on the GPUs we target

CAPABILITIES: Mapping[tuple[str, str], Capability] = MappingProxyType({
    ("reference", "entity_attention"): Capability(None, OP_DTYPES, why="pure PyTorch: any device, size, dtype"),
    ("reference", "routed_merge"): Capability(None, OP_DTYPES, why="pure PyTorch: any device, size, dtype"),
    ("cpp", "entity_attention"): Capability(
        ("cpu", "cuda"), OP_DTYPES, _GROUP_LIMITS,
        why="a group's scores and one feature row per thread block are held whole (csrc/common/limits.h)"),
    ("cpp", "routed_merge"): Capability(
        ("cpu", "cuda"), OP_DTYPES,
        why="one thread block per (clip, entity) loops over any number of frames and features"),
    ("triton", "entity_attention"): Capability(
        ("cuda", "cpu"), _TRITON_DTYPES, _GROUP_LIMITS,
        why="a group is one [members, Dh] tile; CPU tensors through the Triton interpreter only"),
    ("triton", "routed_merge"): Capability(
        ("cuda", "cpu"), _TRITON_DTYPES, MappingProxyType({"T": MAX_T}),
        why="one program holds a clip's frames in one [T, D-chunk] tile (the resource gate covers T <= "
            f"{MAX_T}); the C++ kernel takes any T; CPU tensors through the Triton interpreter only"),
})


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def table_reasons(backend: str, op: str, device: torch.device, dtype: torch.dtype, sizes: dict) -> list[str]:
    """Every reason the table gives for ``backend`` refusing ``op`` on this device type, dtype and sizes
    (a size the table limits but ``sizes`` does not give is not checked)."""
    cap = CAPABILITIES.get((backend, op))
    if cap is None:
        return [f"unknown op {op!r} (expected one of {OPS})"]
    reasons = []
    if cap.devices is not None and device.type not in cap.devices:
        reasons.append(f"the {backend} kernels run {' or '.join(cap.devices)} tensors, got device {device}")
    if dtype not in cap.dtypes:
        reasons.append(f"dtype {dtype} is not supported by the {backend} kernels "
                       f"({', '.join(_dtype_name(d) for d in cap.dtypes)})")
    for name, limit in cap.limits.items():
        value = sizes.get(name)
        if value is not None and value > limit:
            word = f" {SIZE_WORDS[name]}" if name in SIZE_WORDS else ""
            reasons.append(f"{name} = {value}{word} exceeds the {backend} {op} kernels' limit {name} <= {limit}")
    return reasons


def describe() -> list[tuple[str, str, str, str, str, str]]:
    """The table as rows ``(backend, op, devices, dtypes, limits, why)`` of text (``python -m mdn_fast.info``)."""
    rows = []
    for (backend, op), cap in CAPABILITIES.items():
        limits = ", ".join(f"{k} <= {v}" for k, v in cap.limits.items()) or "none"
        rows.append((backend, op, ", ".join(cap.devices) if cap.devices else "any",
                     ", ".join(_dtype_name(d) for d in cap.dtypes), limits, cap.why))
    return rows
