"""The previous RGB input pipeline, kept as the baseline of ``test_input_pipeline.py`` and the
reference of ``tests/data/test_video_fast.py`` (the library no longer uses it):

- decoding: ``count_frames`` + ``decode_frames(..., sequential=True)``, every frame in order up to the
  last sampled one (that loop stays in the library: it is the fallback for streams the selective decoder
  cannot handle, so only the flag is needed here);
- transform: whole frames to float, antialiased resize to ``plan.resized``, crop ``plan.box``,
  antialiased resize to ``out`` -- ``apply_to_frames_float``, whose geometry is ``nominal_affine(plan)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mdn_fast.data.video_transforms import CropPlan, normalize_imagenet_


def nominal_affine(plan: CropPlan) -> tuple[float, float, float, float]:
    """``(ax, bx, ay, by)``: the two-resize geometry (resize to ``resized``, crop ``box``, resize to
    ``out``) of ``apply_to_frames_float``, in ``plan.src`` pixels (``CropPlan.keypoint_affine`` is the
    library's, with the crop box rounded to whole source pixels)."""
    (h0, w0), (h1, w1) = plan.src, plan.resized
    x0, y0, cw, ch = plan.box
    sx1, sy1 = w1 / w0, h1 / h0
    sx2, sy2 = plan.out / cw, plan.out / ch
    ax, ay = sx1 * sx2, sy1 * sy2
    bx = (0.5 * sx1 - x0) * sx2 - 0.5
    by = (0.5 * sy1 - y0) * sy2 - 0.5
    return ax, bx, ay, by


def apply_to_frames_float(frames: np.ndarray, plan: CropPlan, *, normalize: bool = True) -> torch.Tensor:
    """The previous transform: whole frames to float, antialiased resize to ``plan.resized``, crop
    ``plan.box``, antialiased resize to ``out``. Geometry: ``nominal_affine(plan)``. Only for frames of the
    plan's source size."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {tuple(frames.shape)}")
    if tuple(frames.shape[1:3]) != plan.src:
        raise ValueError(f"frames are {frames.shape[1]}x{frames.shape[2]} but the crop plan was made for "
                         f"{plan.src[0]}x{plan.src[1]}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    if tuple(x.shape[-2:]) != plan.resized:
        x = F.interpolate(x, size=plan.resized, mode="bilinear", align_corners=False, antialias=True)
    x0, y0, cw, ch = plan.box
    x = x[:, :, y0:y0 + ch, x0:x0 + cw]
    if (ch, cw) != (plan.out, plan.out):
        x = F.interpolate(x, size=(plan.out, plan.out), mode="bilinear", align_corners=False,
                          antialias=True)
    x = x.clamp_(0.0, 1.0)
    if normalize:
        x = normalize_imagenet_(x)
    return x.contiguous()

