"""Helpers shared by the op tests: fresh random inputs, masks with holes, error metric, backend params."""
from __future__ import annotations

import pytest
import torch

from mdn_fast._limits import REL_TOL
from mdn_fast.ops._backends import BACKENDS, _module, unavailable_reason

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖ / ‖ref‖ in float64; NaN anywhere gives inf (NaN never passes)."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(out).all():
        return float("inf")
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def assert_close(out, ref, dtype, what=""):
    err = rel_err(out, ref)
    tol = REL_TOL[dtype]
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.0e} ({dtype})"


def packed_qkv(P, B, T, K, H, Dh, dtype, device, generator=None):
    """Non-contiguous q, k, v ``[P, B, T, K, H, Dh]``: views of one packed ``[B, T, K, P, 3, H, Dh]``
    tensor, as a fused QKV projection produces them."""
    packed = torch.randn(B, T, K, P, 3, H, Dh, generator=generator).to(device=device, dtype=dtype)
    q, k, v = (packed[:, :, :, :, i].permute(3, 0, 1, 2, 4, 5) for i in range(3))
    assert not q.is_contiguous()
    return q, k, v


def holey_mask(B, T, K, device, generator=None):
    """Random key mask with an entity absent from every frame of clip 0 and an empty frame in the last
    clip (whole groups with no present key, for both axes)."""
    mask = torch.rand(B, T, K, generator=generator) > 0.3
    mask[0, :, K // 2] = False          # an absent entity track: temporal group with no key
    mask[-1, T // 2, :] = False          # an empty frame: spatial group with no key
    return mask.to(device)


def backend_reason(backend: str, op: str, device: str, dtype: torch.dtype, sizes: dict) -> str | None:
    why = unavailable_reason(backend)
    if why:
        return why
    return _module(backend).unsupported_reason(op, torch.device(device), dtype, sizes)


def device_params():
    return [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


__all__ = ["BACKENDS", "DTYPES", "rel_err", "assert_close", "packed_qkv", "holey_mask", "backend_reason",
           "device_params"]
