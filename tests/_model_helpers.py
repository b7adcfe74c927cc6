"""Helpers for the model tests: plausible BODY_25 keypoints (a standing person with jitter) and frames."""
from __future__ import annotations

import torch

# A standing person in a unit square (x right, y down), BODY_25 order.
_BODY25_UNIT = torch.tensor([
    [.50, .12], [.50, .25], [.40, .25], [.36, .40], [.34, .52], [.60, .25], [.64, .40], [.66, .52],
    [.50, .55], [.44, .55], [.43, .72], [.43, .90], [.56, .55], [.57, .72], [.57, .90], [.48, .10],
    [.52, .10], [.46, .11], [.54, .11], [.59, .93], [.60, .92], [.56, .91], [.41, .93], [.40, .92],
    [.44, .91]])


def body25_keypoints(B, T, size=64, generator=None, drop=0.1):
    """``[B, T, 25, 3]`` float32 keypoints in a ``size``-pixel frame: jittered standing pose, confidences
    in (0.5, 1), a fraction ``drop`` of joints missing (0, 0, 0)."""
    g = generator
    xy = _BODY25_UNIT * (size - 1) + torch.randn(B, T, 25, 2, generator=g) * (0.02 * size)
    conf = 0.5 + 0.5 * torch.rand(B, T, 25, 1, generator=g)
    kp = torch.cat([xy, conf], dim=-1)
    missing = torch.rand(B, T, 25, generator=g) < drop
    return kp.masked_fill(missing[..., None], 0.0)


def frames(B, T, size=64, generator=None):
    return torch.randn(B, T, 3, size, size, generator=generator)
