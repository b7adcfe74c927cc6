"""``mdn-fast eval --dtype``: the precision inference runs in.

- ``fp32``: as trained.
- ``bf16`` on CUDA: autocast (the weights stay fp32; the tensor cores run bf16).
- ``bf16`` on CPU: the weights themselves in bf16 (``model.to(torch.bfloat16)``). Measured on this
  project's CPU: 2.06x faster than fp32, where autocast over fp32 weights was *slower* (0.73x: it
  re-casts every weight at every call). Keypoints stay fp32 (the model reads them as such and casts
  what it feeds its bf16 layers). The rgb modalities also run under autocast, for one op:
  torchvision's CPU ``roi_align`` has no bf16 kernel, and autocast runs it in fp32 (over bf16 weights
  autocast casts nothing else: they already are bf16).
Metrics are computed in fp32 from the logits (``evaluation.predict`` casts the outputs first).
"""
from __future__ import annotations

import dataclasses

import torch

DTYPES = ("fp32", "bf16")


def for_inference(model, device, dtype: str) -> bool:
    """Put ``model`` (in place) in the precision ``dtype`` for ``device``; returns whether the forward
    must run under bf16 autocast."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    if dtype == "fp32":
        return False
    if torch.device(device).type == "cuda":
        return True
    model.to(torch.bfloat16)
    return bool(model.sem.uses_rgb)


def float_output(out):
    """A ``MicroDualNetOutput`` whose floating tensors (logits, features) are fp32 (no copy when they are)."""
    changes = {f.name: getattr(out, f.name).float() for f in dataclasses.fields(out)
               if isinstance(getattr(out, f.name), torch.Tensor) and getattr(out, f.name).is_floating_point()}
    return dataclasses.replace(out, **changes)
