"""``SpatialEntityModule`` (SEM): per-frame entity tokens from RGB frames and/or 2-D keypoints
(design.md §1.1).

Layouts: frames ``[B, T, 3, H, W]`` (normalised), keypoints ``[B, T, J, 3]`` (x, y in frame pixels,
confidence), tokens ``[B, T, K, D]``, ``f_cnn [B, D]``, ``entity_mask [B, T, K]`` bool.

RGB branch: a torchvision ResNet with TSM runs on the ``B·T`` frames; its last feature map (stride
``feature_stride``) gives
- ``f_cnn``: global average pool, a linear map to D, mean over the T frames;
- one ROI per (frame, entity) on the entity's box: ``torchvision.ops.roi_align`` with ``aligned=True``
  and ``spatial_scale = 1 / feature_stride`` (feature cell i covers the continuous pixel span
  ``[i·s, (i+1)·s)``; keypoint boxes, in pixel-index units, are shifted by +0.5 into that continuous
  frame), refined by a depthwise-separable conv (depthwise 3×3 on the C backbone channels, pointwise
  1×1 to D, GroupNorm, GELU) and averaged to a D-vector.
Boxes come from the keypoints (``mdn_fast.skeleton.boxes.entity_boxes``); where the keypoints give no box
(entity detected in no frame of the clip, or no keypoints at all) the entity's fixed default region
is used: ``DEFAULT_REGIONS`` below, fractions of the frame for a person centred and facing the camera.
Pose branch: ``pose_features`` (an entity's own joints, normalised to the body's centre and scale, with
confidence and frame-to-frame velocity, zero-padded to ``Jmax`` joints) flattened to ``Jmax·5`` and
embedded by a per-entity two-layer MLP (own weights per entity; Linear, GELU, Linear) to D.
Tokens = ROI feature (+ pose embedding for ``"rgb+pose"``; pose embedding alone for ``"pose"``) plus a
learned entity embedding ``[K, D]`` and a learned frame embedding ``[T, D]``.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import roi_align

from ..skeleton.boxes import entity_boxes
from ..skeleton.layouts import get_layout
from ..inputs import MODALITIES
from .tsm import insert_tsm

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
FEATURE_STRIDES = (8, 16, 32)

#: Default entity regions as (x1, y1, x2, y2) fractions of the frame, used where keypoints give no box.
#: A person centred and facing the camera: their left hand is on the image's right.
DEFAULT_REGIONS = {
    "head": (0.30, 0.00, 0.70, 0.30),
    "face": (0.35, 0.05, 0.65, 0.30),
    "left_hand": (0.55, 0.30, 1.00, 0.75),
    "right_hand": (0.00, 0.30, 0.45, 0.75),
    "torso": (0.25, 0.20, 0.75, 0.65),
    "lower_body": (0.20, 0.55, 0.80, 1.00),
}


def build_backbone(name: str, weights_path: str | os.PathLike | None = None) -> tuple[nn.Module, int]:
    """A torchvision ResNet trunk (no ``avgpool``/``fc``) with random init, or with the state dict of a
    local file (never downloaded). Returns ``(resnet, channels of layer4)``.

    The file holds a state dict (or a dict with a ``"state_dict"`` / ``"model"`` entry), e.g.
    ``torch.save(torchvision.models.resnet101(weights=...).state_dict(), path)``; ``fc.*`` entries are
    ignored, every other parameter and buffer must match.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone: expected one of {BACKBONES}, got {name!r}")
    net = getattr(torchvision.models, name)(weights=None)
    channels = net.fc.in_features
    net.avgpool, net.fc = nn.Identity(), nn.Identity()
    if weights_path is not None:
        path = os.fspath(weights_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"backbone_weights: no such file {path!r}; pass the path of a local "
                                    f"{name} state dict (torch.save(model.state_dict(), path)) or None "
                                    f"for random init (nothing is downloaded)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"backbone_weights: cannot read {path!r} as a torch state dict: {e}") from e
        if isinstance(state, dict):
            for key in ("state_dict", "model"):
                if isinstance(state.get(key), dict):
                    state = state[key]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"backbone_weights: {path!r} does not hold a state dict of tensors")
        state = {k.removeprefix("module."): v for k, v in state.items()}   # DataParallel prefixes
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = net.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            def few(keys):
                return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
            raise ValueError(
                f"backbone_weights: {path!r} does not match torchvision {name}: "
                + "; ".join(s for s in (f"missing {len(missing)} keys: {few(missing)}" if missing else "",
                                        f"unexpected {len(unexpected)} keys: {few(unexpected)}" if unexpected else "",
                                        f"shape mismatch: {few(wrong)}" if wrong else "") if s)
                + f". Is it a state dict of torchvision.models.{name}?")
        net.load_state_dict(state, strict=True)
    return net, channels


def _set_output_stride(net: nn.Module, feature_stride: int) -> None:
    """Make the trunk's output stride 16 or 8 by giving the first block of layer4 (and layer3) stride 1.
    Kernel shapes do not change, so pretrained weights still apply (no dilation: torchvision's
    BasicBlock does not support it)."""
    stages = {32: (), 16: ("layer4",), 8: ("layer3", "layer4")}[feature_stride]
    for stage in stages:
        for m in getattr(net, stage)[0].modules():
            if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
                m.stride = (1, 1)


class PerEntityMLP(nn.Module):
    """``[B, T, K, F] -> [B, T, K, D]``: Linear(F, D), GELU, Linear(D, D), with its own weights per entity."""

    def __init__(self, num_entities: int, in_features: int, dim: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(num_entities, in_features, dim))
        self.b1 = nn.Parameter(torch.empty(num_entities, dim))
        self.w2 = nn.Parameter(torch.empty(num_entities, dim, dim))
        self.b2 = nn.Parameter(torch.empty(num_entities, dim))
        for w, b, fan_in in ((self.w1, self.b1, in_features), (self.w2, self.b2, dim)):
            bound = 1.0 / math.sqrt(fan_in)   # nn.Linear's default init, per entity
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(torch.einsum("btkf,kfd->btkd", x, self.w1) + self.b1)
        return torch.einsum("btkd,kde->btke", h, self.w2) + self.b2


class SpatialEntityModule(nn.Module):
    """Entity tokens from frames and/or keypoints.

    Args:
        dim: D. num_frames: T. entities: entity names (subset of the layout's, in token order).
        layout: keypoint layout name or ``Layout``. modality: ``"rgb+pose"``, ``"rgb"`` or ``"pose"``.
        backbone: torchvision ResNet name. backbone_weights: None or a local state-dict file.
        roi_size: ROIAlign output side. feature_stride: 32 (layer4 as is; the paper's setting) or 16 / 8
            (for small frames, e.g. the 64-px synthetic set, where a stride-32 map is only 2×2).
        conf_thr: keypoint confidence above which a joint counts as detected.

    ``forward(frames [B,T,3,H,W] | None, keypoints [B,T,J,3] | None, entity_mask [B,T,K] | None)
    -> (tokens [B,T,K,D], f_cnn [B,D] or None, entity_mask [B,T,K] bool)``. Arguments are validated by
    ``MicroDualNet``; here they are assumed well-formed.
    """

    def __init__(self, dim: int, num_frames: int, entities, layout, modality: str,
                 backbone: str = "resnet101", backbone_weights=None, roi_size: int = 7,
                 feature_stride: int = 32, conf_thr: float = 0.25):
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality: expected one of {MODALITIES}, got {modality!r}")
        if feature_stride not in FEATURE_STRIDES:
            raise ValueError(f"feature_stride: expected one of {FEATURE_STRIDES}, got {feature_stride!r}")
        if int(roi_size) < 1:
            raise ValueError(f"roi_size: expected >= 1, got {roi_size}")
        self.layout = get_layout(layout)
        self.entities = self.layout.check_entities(entities)
        self.dim, self.num_frames, self.modality = dim, num_frames, modality
        self.roi_size, self.feature_stride, self.conf_thr = int(roi_size), int(feature_stride), float(conf_thr)
        K = len(self.entities)
        self.uses_rgb = modality in ("rgb+pose", "rgb")
        self.uses_pose = modality in ("rgb+pose", "pose")
        if self.uses_rgb:
            self.backbone, channels = build_backbone(backbone, backbone_weights)
            insert_tsm(self.backbone, num_frames)
            _set_output_stride(self.backbone, self.feature_stride)
            self.cnn_proj = nn.Linear(channels, dim)
            self.roi_refine = nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),   # depthwise
                nn.Conv2d(channels, dim, 1, bias=False),                                     # pointwise
                nn.GroupNorm(1, dim), nn.GELU())
            self.register_buffer("default_regions", torch.tensor([DEFAULT_REGIONS[e] for e in self.entities]),
                                 persistent=False)
        if self.uses_pose:
            self.jmax = max(len(self.layout.entity_joints[e]) for e in self.entities)
            self.pose_mlp = PerEntityMLP(K, self.jmax * 5, dim)
        self.entity_embed = nn.Parameter(torch.randn(K, dim) * 0.02)
        self.frame_embed = nn.Parameter(torch.randn(num_frames, dim) * 0.02)

    # -- RGB --------------------------------------------------------------------------------------
    def trunk(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B·T, 3, H, W] -> [B·T, C, H/s, W/s]`` feature map of the TSM ResNet."""
        n = self.backbone
        x = n.maxpool(n.relu(n.bn1(n.conv1(frames))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def boxes(self, keypoints: torch.Tensor | None, B: int, H: int, W: int, device) -> torch.Tensor:
        """``[B, T, K, 4]`` xyxy frame pixels: the keypoint boxes of every entity seen in at least one frame
        of the clip (``entity_boxes`` fills its absent frames from the nearest present one), the default
        region of entities never seen in the clip or when there are no keypoints."""
        found = None if keypoints is None else self.keypoint_boxes(keypoints)
        return self._roi_boxes(found, B, H, W, device)

    def keypoint_boxes(self, keypoints: torch.Tensor):
        """``(boxes [B, T, K, 4], present [B, T, K])`` of ``entity_boxes`` for this module's entities."""
        return entity_boxes(keypoints, self.layout, self.entities, conf_thr=self.conf_thr)

    def _roi_boxes(self, found, B: int, H: int, W: int, device) -> torch.Tensor:
        """``boxes`` from ``found = keypoint_boxes(...)`` or None. Branch-free in the values: a per-element
        ``torch.where`` picks keypoint box or default region."""
        r = self.default_regions.to(device)
        # Scale by Python numbers (not a tensor built from [W, H, W, H]: that host-to-device copy syncs).
        default = torch.stack([r[:, 0] * W, r[:, 1] * H, r[:, 2] * W, r[:, 3] * H], dim=-1)
        default = default.expand(B, self.num_frames, -1, -1)
        if found is None:
            return default
        boxes, present = found
        # Keypoints use pixel-index units (pixel i covers [i - .5, i + .5), mdn_fast.data.video);
        # roi_align(aligned=True) takes continuous coordinates (pixel i covers [i, i + 1)): shift by .5.
        boxes = boxes.to(device=device, dtype=torch.float32) + 0.5
        seen = present.any(dim=1, keepdim=True)[..., None]                          # [B, 1, K, 1]
        return torch.where(seen, boxes, default)

    def roi_features(self, fmap: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """``fmap [B·T, C, h, w]``, ``boxes [B, T, K, 4]`` -> ``[B, T, K, D]``."""
        B, T, K, _ = boxes.shape
        idx = torch.arange(B * T, device=fmap.device, dtype=fmap.dtype).repeat_interleave(K)
        rois = torch.cat([idx[:, None], boxes.reshape(-1, 4).to(fmap.dtype)], dim=1)   # [B·T·K, 5]
        r = roi_align(fmap, rois, output_size=self.roi_size, spatial_scale=1.0 / self.feature_stride,
                      sampling_ratio=-1, aligned=True)                                  # [B·T·K, C, r, r]
        return self.roi_refine(r).mean(dim=(2, 3)).view(B, T, K, self.dim)

    # -- pose -------------------------------------------------------------------------------------
    def pose_tokens(self, keypoints: torch.Tensor) -> torch.Tensor:
        from ..skeleton.pose_features import pose_features
        f = pose_features(keypoints, self.layout, self.entities, self.conf_thr)     # [B, T, K, Jmax, 5]
        return self.pose_mlp(f.flatten(-2).to(self.entity_embed.dtype))

    def forward(self, frames=None, keypoints=None, entity_mask=None):
        B = (frames if frames is not None else keypoints).shape[0]
        T, K = self.num_frames, len(self.entities)
        tokens, f_cnn = 0, None
        # Boxes and presence come from one entity_boxes call, shared by the ROIs and the mask.
        found = None
        if keypoints is not None and (self.uses_rgb or entity_mask is None):
            found = self.keypoint_boxes(keypoints)
        if self.uses_rgb:
            H, W = frames.shape[-2:]
            fmap = self.trunk(frames.reshape(B * T, *frames.shape[2:]))
            f_cnn = self.cnn_proj(fmap.mean(dim=(2, 3))).view(B, T, self.dim).mean(dim=1)
            tokens = tokens + self.roi_features(fmap, self._roi_boxes(found, B, H, W, frames.device))
        if self.uses_pose:
            tokens = tokens + self.pose_tokens(keypoints)
        tokens = tokens + self.entity_embed + self.frame_embed[:, None, :]
        if entity_mask is None:
            if found is not None:
                entity_mask = found[1]
            else:
                entity_mask = torch.ones(B, T, K, dtype=torch.bool, device=tokens.device)
        return tokens, f_cnn, entity_mask.to(tokens.device)
