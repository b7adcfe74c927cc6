"""FlexAttention baseline of ``entity_attention`` (design.md §2.1): what a PyTorch user would write with
``torch.nn.attention.flex_attention`` instead of the fused op.

Each path attends over the ``L = T·K`` tokens of its clip, flattened t-major (token ``i = t·K + e``),
restricted by a block mask: ``spatial`` keeps the keys of the same frame (``i // K == j // K``),
``temporal`` the keys of the same entity (``i % K == j % K``), and both only keys present in the entity
mask. The block masks depend on the mask and the sizes, not on q/k/v, so a user builds them once and
reuses them every step: ``FlexEntityAttention`` creates them at construction (outside the timed calls)
and its call is what is timed.

Layout copies are part of the baseline, as in the SDPA one: the op's q/k/v are strided views
``[P, B, T, K, H, Dh]`` and flex wants ``[B, H, L, Dh]``, so each path's q, k, v are permuted and
reshaped (a copy) on the way in and the output is permuted back and stacked to the op's contiguous
``[P, B, T, K, H, Dh]`` on the way out. Only ``flex_attention`` itself is ``torch.compile``d (as its
documentation shows; eager flex materialises the scores and is not a fast path); the copies run eager.

Empty groups: a query whose group has no present key is not fixed up here. flex_attention returns 0 for
a row with no key kept, which is what the op specifies, but the benchmark's mask
(``_inputs.entity_mask``) keeps every group non-empty anyway, so no configuration depends
on it.
"""
from __future__ import annotations

import functools
import warnings

import torch

def flex_module():
    """``torch.nn.attention.flex_attention`` or the reason it is missing (a string)."""
    try:
        from torch.nn.attention import flex_attention as fa
        fa.flex_attention, fa.create_block_mask   # noqa: B018 - both needed
        return fa
    except Exception as e:  # torch < 2.5 has no flex_attention
        return (f"torch {torch.__version__} has no torch.nn.attention.flex_attention "
                f"({type(e).__name__}: {e}); it ships with torch >= 2.5")


def _mask_mod(axis: str, K: int, present: torch.Tensor | None):
    """``mask_mod(b, h, q_idx, kv_idx)`` for one path: same frame (spatial) or same entity (temporal),
    and the key present (``present [B, L]`` bool, None = all present)."""
    if axis == "spatial":
        def same(q_idx, kv_idx):
            return q_idx // K == kv_idx // K
    elif axis == "temporal":
        def same(q_idx, kv_idx):
            return q_idx % K == kv_idx % K
    else:
        raise ValueError(f"axes: expected entries 'spatial' or 'temporal', got {axis!r}")
    if present is None:
        def mask_mod(b, h, q_idx, kv_idx):
            return same(q_idx, kv_idx)
    else:
        def mask_mod(b, h, q_idx, kv_idx):
            return same(q_idx, kv_idx) & present[b, kv_idx]
    return mask_mod


class FlexEntityAttention:
    """``entity_attention`` through flex_attention for fixed ``axes``, ``mask`` and sizes.

    ``FlexEntityAttention(axes, mask, B, T, K, device, compile_fn)`` builds one block mask per path
    (untimed); calling it with ``q, k, v [P, B, T, K, H, Dh]`` and ``scale`` returns the op's output.
    ``compile_fn`` compiles ``flex_attention`` (default ``torch.compile``; the benchmark passes its own
    so quick mode can use ``aot_eager``)."""

    def __init__(self, axes, mask: torch.Tensor | None, B: int, T: int, K: int, device, compile_fn=None):
        fa = flex_module()
        if isinstance(fa, str):
            raise RuntimeError(fa)
        self.T, self.K, self.L = T, K, T * K
        present = None if mask is None else mask.reshape(B, self.L).to(device=device, dtype=torch.bool)
        self.block_masks = [fa.create_block_mask(_mask_mod(a, K, present), B, None, self.L, self.L, device=device)
                            for a in axes]
        self.flex = (compile_fn or torch.compile)(fa.flex_attention)

    def __call__(self, q, k, v, scale: float | None = None) -> torch.Tensor:
        P, B, T, K, H, Dh = q.shape
        outs = []
        for p, bm in enumerate(self.block_masks):
            # [B, T, K, H, Dh] -> [B, H, T, K, Dh] -> [B, H, L, Dh]: a copy (the views are strided)
            qp, kp, vp = (x[p].permute(0, 3, 1, 2, 4).reshape(B, H, self.L, Dh) for x in (q, k, v))
            o = self.flex(qp, kp, vp, block_mask=bm, scale=scale)            # [B, H, L, Dh]
            outs.append(o.reshape(B, H, T, K, Dh).permute(0, 2, 3, 1, 4))
        return torch.stack(outs)                                            # [P, B, T, K, H, Dh] contiguous


def flex_entity_attention(q, k, v, axes, mask, scale, compile_fn=None) -> torch.Tensor:
    """One-shot form (builds the block masks on every call; for tests, not for timing)."""
    P, B, T, K, H, Dh = q.shape
    return FlexEntityAttention(axes, mask, B, T, K, q.device, compile_fn)(q, k, v, scale)


def _torch_version() -> tuple:
    return tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])


@functools.lru_cache(maxsize=None)
def skip_reason(device_type: str, dtype: torch.dtype, needs_grad: bool) -> str | None:
    """Why the flex baseline cannot run on ``device_type`` in ``dtype`` (with gradients or not), None when
    it can. Asked of this torch at run time rather than from a version table: flex_attention's own input
    checks run on a tiny eager call (e.g. torch 2.14 refuses gradients on CPU: "FlexAttention does not
    support backward on CPU"). Compiler failures past those checks are the case's error, with its trace."""
    fa = flex_module()
    if isinstance(fa, str):
        return fa
    if device_type == "cpu" and _torch_version() < (2, 6):
        return (f"flex_attention on CPU compiles through inductor's CPU flex template, added in torch 2.6; "
                f"this is torch {torch.__version__}")
    if device_type == "cuda":
        try:
            import triton  # noqa: F401 - inductor's flex kernels are Triton templates
        except Exception as e:
            return f"flex_attention on CUDA compiles to Triton, which is not importable ({type(e).__name__}: {e})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # eager flex warns that it is the slow path; this is a probe
            x = torch.randn(1, 1, 4, 16, device=device_type).to(dtype).requires_grad_(needs_grad)
            out = fa.flex_attention(x, x, x)
            if needs_grad:
                out.sum().backward()
    except Exception as e:
        grad = "with gradients" if needs_grad else "forward only"
        dt = str(dtype).removeprefix("torch.")
        return (f"flex_attention does not run on {device_type} in {dt} {grad} with torch {torch.__version__}: "
                f"{type(e).__name__}: {e}")
    return None
