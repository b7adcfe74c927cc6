"""Per-frame entity boxes and presence masks from 2-D keypoints (facts.md box rules), vectorised in torch.

keypoints: ``[B, T, J, 3]`` (or ``[T, J, 3]``): x, y in frame pixels and a confidence; a missing joint is
``(0, 0, 0)`` as in OpenPose JSON, and so is a joint holding a NaN or Inf (no value check here: these
functions run inside the model's forward, which must not sync with the host; the readers reject bad
files through ``mdn_fast.skeleton.validate``). A joint is *confident* when its confidence is ``> conf_thr``
(strictly, as OpenPose does).

Box rules (chosen per entity by the layout, ``Layout.box_rule``):
- ``openpose_hand``: centre = wrist + 0.33 (wrist - elbow), side = 1.5 max(|wrist - elbow|,
  0.9 |elbow - shoulder|), a square; present when shoulder, elbow and wrist are all confident.
- ``openpose_face``: the mean (of centre and of side) of the valid estimates among
  (neck–nose midpoint, side 2 |neck - nose|), (eye midpoint, side 3 |LEye - REye|) and
  (ear midpoint, side 2 |LEar - REar|), each valid when both its joints are confident; a square;
  present when at least one estimate is valid.
- ``extent``: the bounding box of the entity's confident joints, widened by ``margin * max(w, h)`` on
  every side; present when at least ``min_joints`` (default 2) joints are confident.
Every box is then given a minimum side: each side is at least ``max(min_size, MIN_ASPECT * longest
side)`` pixels (centre kept), so a one-point or collinear extent, or a hand whose arm joints coincide,
never yields a degenerate box.

Absent entities still get a finite box: the nearest present box of the same entity in the same clip
(the previous frame's, else the next one's), or zeros when the entity is absent in every frame. Their
``present`` flag is False, and the model masks them out; the filled box only keeps ROI pooling sane.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .layouts import ENTITIES, Layout, get_layout

#: Smallest ratio of a box's short side to its long side (keeps e.g. a two-hip lower body a real box).
MIN_ASPECT = 0.25

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_keypoints(keypoints, layout: Layout, name: str = "keypoints") -> tuple[torch.Tensor, bool]:
    """Check keypoints' type, shape and dtype for ``layout`` (static facts only: no look at the values, so
    no host sync) and return ``(kp [B, T, J, 3] in float32 (float64 stays), was_unbatched)``.

    A joint holding a NaN or Inf (in x, y or confidence) comes back as a missing joint ``(0, 0, 0)``,
    computed with ``torch.where`` (no data-dependent branch): the model can run under
    ``torch.compile(fullgraph=True)`` and ``torch.export``. To *reject* such keypoints instead, naming
    where they are, call ``mdn_fast.skeleton.validate.check_keypoint_values`` (the readers do, where the bad
    file is known). Errors name the argument, the expectation, what was given, and the fix."""
    if isinstance(keypoints, np.ndarray):
        keypoints = torch.from_numpy(keypoints)
    if not isinstance(keypoints, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor [B, T, J, 3] (x, y pixels, confidence), "
                        f"got {type(keypoints).__name__}")
    J = layout.num_joints
    if keypoints.dim() not in (3, 4) or keypoints.shape[-1] != 3 or keypoints.shape[-2] != J:
        raise ValueError(f"{name}: expected shape [B, T, {J}, 3] or [T, {J}, 3] for layout {layout.name!r} "
                         f"({J} joints, each x, y, confidence), got {tuple(keypoints.shape)}")
    if keypoints.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{name}: expected a floating dtype (float32 preferred), got {keypoints.dtype}; "
                         f"convert with {name}.float()")
    unbatched = keypoints.dim() == 3
    kp = keypoints.unsqueeze(0) if unbatched else keypoints
    kp = kp if kp.dtype == torch.float64 else kp.float()
    return drop_nonfinite_joints(kp), unbatched


def drop_nonfinite_joints(kp: torch.Tensor) -> torch.Tensor:
    """``kp [..., J, 3]`` with every joint that holds a NaN or Inf set to ``(0, 0, 0)`` (missing, as in
    OpenPose JSON). Elementwise, so it costs no host sync and no branch."""
    ok = torch.isfinite(kp).all(-1, keepdim=True)
    return torch.where(ok, kp, torch.zeros_like(kp))


def take_joints(x: torch.Tensor, joints: Sequence[int], dim: int) -> torch.Tensor:
    """``x`` restricted to ``joints`` along ``dim`` (in that order): one stack of views. Unlike indexing
    with a list, this copies no index tensor from the host to the device (that copy syncs on CUDA)."""
    return torch.stack([x.select(dim, j) for j in joints], dim=dim)


def _square(cx, cy, side):
    h = side / 2
    return torch.stack([cx - h, cy - h, cx + h, cy + h], dim=-1)


def _hand_box(kp, layout, entity, conf_thr):
    s, e, w = (kp[..., layout.role(r), :] for r in layout.hand_arm_roles[entity])
    valid = (s[..., 2] > conf_thr) & (e[..., 2] > conf_thr) & (w[..., 2] > conf_thr)
    we = w[..., :2] - e[..., :2]
    es = e[..., :2] - s[..., :2]
    centre = w[..., :2] + 0.33 * we
    side = 1.5 * torch.maximum(we.norm(dim=-1), 0.9 * es.norm(dim=-1))
    return _square(centre[..., 0], centre[..., 1], side), valid


def _face_box(kp, layout, conf_thr):
    estimates = (("neck", "nose", 2.0), ("l_eye", "r_eye", 3.0), ("l_ear", "r_ear", 2.0))
    csum = torch.zeros_like(kp[..., 0, :2])
    ssum = torch.zeros_like(kp[..., 0, 0])
    n = torch.zeros_like(kp[..., 0, 0])
    for ra, rb, factor in estimates:
        a, b = kp[..., layout.role(ra), :], kp[..., layout.role(rb), :]
        ok = ((a[..., 2] > conf_thr) & (b[..., 2] > conf_thr)).to(kp.dtype)
        csum = csum + ok[..., None] * (a[..., :2] + b[..., :2]) / 2
        ssum = ssum + ok * factor * (a[..., :2] - b[..., :2]).norm(dim=-1)
        n = n + ok
    d = n.clamp(min=1)
    return _square(csum[..., 0] / d, csum[..., 1] / d, ssum / d), n > 0


def _extent_box(kp, joints, conf_thr, margin, min_joints):
    pts = take_joints(kp, joints, -2)                  # [B, T, n, 3]
    valid = pts[..., 2] > conf_thr
    big = torch.finfo(kp.dtype).max
    x, y = pts[..., 0], pts[..., 1]
    x0 = torch.where(valid, x, big).amin(-1)
    y0 = torch.where(valid, y, big).amin(-1)
    x1 = torch.where(valid, x, -big).amax(-1)
    y1 = torch.where(valid, y, -big).amax(-1)
    present = valid.sum(-1) >= min_joints
    any_valid = valid.any(-1)
    # Frames with no confident joint: park the box at 0 so nothing overflows (it is refilled later).
    x0, y0, x1, y1 = (torch.where(any_valid, v, torch.zeros_like(v)) for v in (x0, y0, x1, y1))
    m = margin * torch.maximum(x1 - x0, y1 - y0)
    return torch.stack([x0 - m, y0 - m, x1 + m, y1 + m], dim=-1), present


def _enforce_min_side(box, min_size):
    cx, cy = (box[..., 0] + box[..., 2]) / 2, (box[..., 1] + box[..., 3]) / 2
    w, h = box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]
    floor = torch.clamp(MIN_ASPECT * torch.maximum(w, h), min=min_size)
    w, h = torch.maximum(w, floor), torch.maximum(h, floor)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _fill_absent(boxes, present):
    """Absent frames take the previous present box of the same (clip, entity), else the next one, else 0."""
    B, T, K, _ = boxes.shape
    t = torch.arange(T, device=boxes.device).view(1, T, 1).expand(B, T, K)
    prev = torch.where(present, t, torch.full_like(t, -1)).cummax(dim=1).values
    nxt = torch.where(present, t, torch.full_like(t, T)).flip(1).cummin(dim=1).values.flip(1)
    src = torch.where(prev >= 0, prev, nxt)
    has = src < T
    src = src.clamp(max=T - 1)
    filled = boxes.gather(1, src[..., None].expand(B, T, K, 4))
    return torch.where(has[..., None], filled, torch.zeros_like(filled))


def _finite(x) -> bool:
    # math, not numpy: under torch.compile numpy calls become tensor ops, and branching on one breaks the graph.
    return math.isfinite(float(x))


def _check_params(conf_thr, margin, min_joints, min_size):
    if not _finite(conf_thr):
        raise ValueError(f"conf_thr: expected a finite confidence threshold (OpenPose uses 0.25), got {conf_thr}")
    if not (_finite(margin) and margin >= 0):
        raise ValueError(f"margin: expected a finite fraction >= 0 (default 0.1), got {margin}")
    if int(min_joints) != min_joints or min_joints < 1:
        raise ValueError(f"min_joints: expected an integer >= 1 (default 2), got {min_joints}")
    if not (_finite(min_size) and min_size >= 0):
        raise ValueError(f"min_size: expected a finite side length in pixels >= 0 (default 4), got {min_size}")


def entity_boxes(keypoints, layout: str | Layout, entities: Sequence[str] = ENTITIES, conf_thr: float = 0.25,
                 margin: float = 0.1, *, min_joints: int = 2, min_size: float = 4.0):
    """Entity boxes from keypoints.

    keypoints ``[B, T, J, 3]`` or ``[T, J, 3]`` -> ``(boxes [B, T, K, 4] xyxy pixels, present [B, T, K]
    bool)`` (no B in, no B out). Boxes are float32 (float64 for float64 input), on the keypoints' device.
    See the module docstring for the rules, ``min_joints`` (extent rule) and ``min_size`` (pixels).
    """
    layout = get_layout(layout)
    entities = layout.check_entities(entities)
    _check_params(conf_thr, margin, min_joints, min_size)
    kp, unbatched = check_keypoints(keypoints, layout)
    boxes, present = [], []
    for e in entities:
        rule = layout.box_rule(e)
        if rule == "openpose_hand":
            b, p = _hand_box(kp, layout, e, conf_thr)
        elif rule == "openpose_face":
            b, p = _face_box(kp, layout, conf_thr)
        else:
            b, p = _extent_box(kp, layout.entity_joints[e], conf_thr, margin, min_joints)
        boxes.append(b)
        present.append(p)
    boxes = _enforce_min_side(torch.stack(boxes, dim=2), min_size)
    present = torch.stack(present, dim=2)
    boxes = _fill_absent(boxes, present)
    if unbatched:
        return boxes[0], present[0]
    return boxes, present


def entity_mask(keypoints, layout: str | Layout, entities: Sequence[str] = ENTITIES, conf_thr: float = 0.25,
                *, min_joints: int = 2):
    """``[B, T, K]`` (or ``[T, K]``) bool: True where ``entity_boxes`` finds the entity present."""
    return entity_boxes(keypoints, layout, entities, conf_thr, min_joints=min_joints)[1]
