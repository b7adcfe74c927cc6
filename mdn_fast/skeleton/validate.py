"""Value checks on data: non-finite keypoints and frames, reported with where they are.

The model's forward never looks at values (design.md §4.1: no host sync, no data-dependent branch, so it
compiles with ``fullgraph=True`` and exports with ``torch.export``); inside it a non-finite joint is a
missing one. These checks are for the places that can say *which* input is bad: dataset readers (pass
``source=`` the file) and users debugging eagerly (``MicroDualNet(validate_values=True)`` or
``model.check_values(...)``). Each one reads the values, i.e. syncs with the device.
"""
from __future__ import annotations

import numpy as np
import torch

from .layouts import Layout, get_layout


def _where(index, batched: bool, source) -> str:
    """``"clip 1, frame 2"`` / ``"frame 2"``, plus ``" of <source>"``."""
    *lead, t = index
    at = (f"clip {lead[0]}, frame {t}" if batched else f"frame {t}")
    return at + (f" of {source}" if source is not None else "")


def check_keypoint_values(keypoints, layout: str | Layout, name: str = "keypoints", source=None) -> None:
    """Raise ``ValueError`` if any joint of ``keypoints [B, T, J, 3]`` or ``[T, J, 3]`` (tensor or array)
    holds a NaN or Inf, naming the first such joint (clip, frame, joint name), the count and the fix.
    ``source``: the file the keypoints came from, named in the message."""
    layout = get_layout(layout)
    kp = torch.as_tensor(keypoints) if isinstance(keypoints, np.ndarray) else keypoints
    if not isinstance(kp, torch.Tensor) or kp.dim() not in (3, 4) or kp.shape[-1] != 3:
        raise ValueError(f"{name}: expected keypoints [B, T, J, 3] or [T, J, 3], got "
                         f"{tuple(kp.shape) if isinstance(kp, torch.Tensor) else type(kp).__name__}")
    bad = ~torch.isfinite(kp).all(-1)                                    # [(B,) T, J]
    n = int(bad.sum())
    if n == 0:
        return
    *lead, j = (int(i) for i in bad.nonzero()[0])
    joint = layout.joint_names[j] if j < layout.num_joints else "?"
    raise ValueError(f"{name}: non-finite value {kp[(*lead, j)].tolist()} at {_where(lead, kp.dim() == 4, source)}, "
                     f"joint {j} ({joint}) ({n} such joints in all); mark a missing joint as (0, 0, 0) as "
                     f"OpenPose does, e.g. {name}[~torch.isfinite({name}).all(-1)] = 0 (the model itself "
                     f"treats a non-finite joint as missing)")


def check_frame_values(frames, name: str = "frames", source=None) -> None:
    """Raise ``ValueError`` if ``frames [B, T, 3, H, W]`` or ``[T, 3, H, W]`` (tensor or array) holds a
    NaN or Inf, naming the first such frame and the count. ``source``: the video file, named in the message."""
    fr = torch.as_tensor(frames) if isinstance(frames, np.ndarray) else frames
    if not isinstance(fr, torch.Tensor) or fr.dim() not in (4, 5):
        raise ValueError(f"{name}: expected frames [B, T, 3, H, W] or [T, 3, H, W], got "
                         f"{tuple(fr.shape) if isinstance(fr, torch.Tensor) else type(fr).__name__}")
    if not fr.is_floating_point():
        return                                                           # integer pixels are always finite
    bad = ~torch.isfinite(fr).flatten(fr.dim() - 3).all(-1)               # [(B,) T]
    n = int((~torch.isfinite(fr)).sum())
    if n == 0:
        return
    lead = [int(i) for i in bad.nonzero()[0]]
    raise ValueError(f"{name}: contains NaN or Inf ({n} values; first in {_where(lead, fr.dim() == 5, source)}); "
                     f"clean the decoded video before the model (the model does not check values: that "
                     f"would sync with the device on every step)")


def as_integer(v) -> int | None:
    """``v`` as an int when it is an integer (int, numpy integer, or a float with an integral value such as
    ``3.0``); None for anything else: bool, str, ``1.7``, NaN, None, a container. The readers' one rule for
    labels and integer fields of the release files."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        return int(v)
    return None
