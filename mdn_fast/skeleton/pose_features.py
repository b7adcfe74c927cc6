"""Per-entity pose features: each entity's own joints, normalised to the body's centre and scale, with
confidences and frame-to-frame velocity (design.md §1.1, the pose branch of the SEM).

``pose_features(keypoints [B, T, J, 3], layout, entities, conf_thr) -> [B, T, K, Jmax, 5]`` with, per
joint, ``(x, y, confidence, vx, vy)``:
- x, y: ``(p - centre) / scale``. Centre and scale are per clip (so whole-body motion such as a sway
  or a shrug stays visible), each the median over the clip's frames where it can be measured:
  centre = the mean of the first of ``layout.center_joints`` (body25: neck, else the shoulders'
  midpoint, else mid-hip) whose joints are all confident in some frame; scale = the first of
  ``layout.scale_pairs`` (body25: neck–mid-hip, else shoulder width / 0.7, else hip width / 0.4,
  i.e. "torso lengths") with both joints confident in some frame. When none can be measured, the
  centre is the mean of all confident joints and the scale a third of their extent's longer side
  (about a torso length on a standing body), at least 1 pixel; a clip with no confident joint
  gets centre 0 and scale 1 (its features are all zero anyway).
- confidence: as given for confident joints (``> conf_thr``).
- vx, vy: ``xy[t] - xy[t-1]`` of the normalised coordinates; 0 at t = 0 and wherever the joint is not
  confident in both frames (so a dropped joint never looks like a jump).
Joints that are not confident have all five features 0; a joint holding a NaN or Inf counts as missing
(``check_keypoints``), so the features are always finite and computed without a host sync. Entities own different numbers of joints;
each is padded with zero rows up to ``Jmax = max(entity_joint_counts(layout, entities))``.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .boxes import check_keypoints, take_joints
from .layouts import ENTITIES, Layout, get_layout

#: Features per joint: x, y, confidence, vx, vy.
POSE_FEATURE_DIM = 5


def entity_joint_counts(layout: str | Layout, entities: Sequence[str] = ENTITIES) -> tuple[int, ...]:
    """Number of real (unpadded) joint rows of each entity in ``pose_features``' output."""
    layout = get_layout(layout)
    return tuple(len(layout.entity_joints[e]) for e in layout.check_entities(entities))


def _per_clip_median(values: torch.Tensor, ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """values [B, T, C], ok [B, T] -> (median over ok frames [B, C], any ok [B])."""
    v = torch.where(ok[..., None], values, torch.full_like(values, float("nan")))
    med = v.nanmedian(dim=1).values
    any_ok = ok.any(dim=1)
    return torch.nan_to_num(med, nan=0.0), any_ok


def body_centre_scale(kp: torch.Tensor, layout: Layout, conf_thr: float = 0.25):
    """Per-clip body centre ``[B, 2]`` and scale ``[B]`` (pixels) of validated ``kp [B, T, J, 3]``."""
    B = kp.shape[0]
    xy, conf = kp[..., :2], kp[..., 2] > conf_thr
    centre = torch.zeros(B, 2, dtype=kp.dtype, device=kp.device)
    have_c = torch.zeros(B, dtype=torch.bool, device=kp.device)
    for joints in layout.center_joints:
        ok = take_joints(conf, joints, -1).all(-1)                   # [B, T]
        med, any_ok = _per_clip_median(take_joints(xy, joints, -2).mean(-2), ok)
        take = any_ok & ~have_c
        centre = torch.where(take[:, None], med, centre)
        have_c |= any_ok
    scale = torch.ones(B, dtype=kp.dtype, device=kp.device)
    have_s = torch.zeros(B, dtype=torch.bool, device=kp.device)
    for a, b, factor in layout.scale_pairs:
        ok = conf[..., a] & conf[..., b]
        dist = (xy[..., a, :] - xy[..., b, :]).norm(dim=-1, keepdim=True) * factor
        ok = ok & (dist[..., 0] > 0)
        med, any_ok = _per_clip_median(dist, ok)
        take = any_ok & ~have_s
        scale = torch.where(take, med[:, 0], scale)
        have_s |= any_ok
    # Fallbacks from all confident joints of the clip.
    w = conf.to(kp.dtype)
    n = w.sum(dim=(1, 2))
    mean_xy = (xy * w[..., None]).sum(dim=(1, 2)) / n.clamp(min=1)[:, None]
    big = torch.finfo(kp.dtype).max
    lo = torch.where(conf[..., None], xy, big).amin(dim=(1, 2))
    hi = torch.where(conf[..., None], xy, -big).amax(dim=(1, 2))
    extent = torch.where(n > 0, (hi - lo).amax(-1), torch.zeros_like(n))
    centre = torch.where(have_c[:, None], centre, torch.where((n > 0)[:, None], mean_xy, torch.zeros_like(mean_xy)))
    scale = torch.where(have_s, scale, (extent / 3).clamp(min=1.0))
    return centre, scale


def pose_features(keypoints, layout: str | Layout, entities: Sequence[str] = ENTITIES,
                  conf_thr: float = 0.25) -> torch.Tensor:
    """``[B, T, J, 3]`` (or ``[T, J, 3]``) keypoints -> ``[B, T, K, Jmax, 5]`` (or ``[T, K, Jmax, 5]``)
    features ``(x, y, confidence, vx, vy)``; see the module docstring. float32 (float64 stays)."""
    layout = get_layout(layout)
    entities = layout.check_entities(entities)
    kp, unbatched = check_keypoints(keypoints, layout)
    B, T = kp.shape[:2]
    centre, scale = body_centre_scale(kp, layout, conf_thr)
    conf_ok = kp[..., 2] > conf_thr                                   # [B, T, J]
    xy = (kp[..., :2] - centre[:, None, None, :]) / scale[:, None, None, None]
    xy = torch.where(conf_ok[..., None], xy, torch.zeros_like(xy))
    vel = torch.zeros_like(xy)
    both = conf_ok[:, 1:] & conf_ok[:, :-1]
    vel[:, 1:] = torch.where(both[..., None], xy[:, 1:] - xy[:, :-1], torch.zeros_like(xy[:, 1:]))
    c = torch.where(conf_ok, kp[..., 2], torch.zeros_like(kp[..., 2]))
    per_joint = torch.cat([xy, c[..., None], vel], dim=-1)            # [B, T, J, 5]
    counts = [len(layout.entity_joints[e]) for e in entities]
    jmax = max(counts)
    # One stack of views, each entity's joints padded with zero rows (no index tensor copied to the
    # device: that copy would sync the host on CUDA).
    zero = per_joint.new_zeros(B, T, POSE_FEATURE_DIM)
    rows = []
    for e, n in zip(entities, counts):
        rows += [per_joint[:, :, j] for j in layout.entity_joints[e]] + [zero] * (jmax - n)
    feats = torch.stack(rows, dim=2).unflatten(2, (len(entities), jmax))      # [B, T, K, Jmax, 5]
    return feats[0] if unbatched else feats
