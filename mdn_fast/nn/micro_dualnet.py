"""``MicroDualNet``: the full model as users call it (design.md §1.4).

``SpatialEntityModule`` -> ``depth`` × ``DualPathBlock`` -> clip feature -> action head (+ body head).
Clip feature = mean of the last block's ``Y [B, T, K, D]`` over the present (t, k) tokens (0 for a clip
with no present token), concatenated with ``f_cnn [B, D]`` when a CNN runs.
Loss = CE(action) + CE(body, when labels and head exist) + ``lambda_mac`` · MAC(last block's paths).

Every input check lives in ``MicroDualNet.check_inputs``: errors name the argument, what was expected,
what was given and how to fix it. Those checks are static (type, shape, dtype, device): the forward does
no host synchronisation and no data-dependent Python branching (design.md §4.1), so the model compiles
with ``torch.compile(fullgraph=True)`` and exports with ``torch.export``. Values are not checked: a joint
holding a NaN or Inf is a missing joint (confidence 0), and non-finite frames give non-finite outputs.
The value checks, which name where the bad value is, are opt-in: ``check_values`` (or
``validate_values=True``, eager debugging) and ``mdn_fast.skeleton.validate`` in the readers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..skeleton.boxes import check_keypoints
from ..skeleton.validate import check_frame_values, check_keypoint_values
from ..skeleton.layouts import ENTITIES, get_layout, layout_names
from ..ops import check_backend_name
from ..ops._checks import check_tau
from .dual_path_block import DualPathBlock
from .mac_loss import MACLoss
from .spatial_entity import BACKBONES, MODALITIES, SpatialEntityModule

_FRAME_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass
class MicroDualNetOutput:
    logits: torch.Tensor                # [B, num_classes]
    body_logits: torch.Tensor | None    # [B, num_body_classes] or None
    alpha: torch.Tensor                 # [B, depth, K, 2] routing weights (ST, TS), float32
    x_st: torch.Tensor                  # [B, T, K, D] last block's ST path output (before routing)
    x_ts: torch.Tensor                  # [B, T, K, D] last block's TS path output (before routing)
    entity_mask: torch.Tensor           # [B, T, K] bool, the mask used
    f_cnn: torch.Tensor | None = None   # [B, D] global CNN feature, None for "pose"


# A pytree node, so that torch.export (and anything else that flattens outputs) sees its tensors.
torch.utils._pytree.register_dataclass(MicroDualNetOutput, serialized_type_name="mdn_fast.MicroDualNetOutput")


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


class MicroDualNet(nn.Module):
    """Micro-DualNet (design.md §1.4).

    Args:
        num_classes: action classes (>= 2). num_body_classes: coarse body classes (>= 2) or None (no head).
        modality: ``"rgb+pose"``, ``"rgb"`` or ``"pose"``. layout: keypoint layout name.
        entities: any non-empty subset of the layout's entities, in token order.
        num_frames: T. dim: D. heads: H (D % H == 0). depth: dual-path blocks. tau: routing temperature.
        lambda_mac: weight of the MAC loss. backbone: torchvision ResNet name; backbone_weights: None
            or a local state-dict file. backend: op backend (``"auto"``, ``"reference"``, ``"triton"``, ``"cpp"``).
        feature_stride, roi_size (keyword-only extras): see ``SpatialEntityModule``; ``feature_stride=8``
            or 16 suits small frames such as the 64-px synthetic set.
        validate_values (keyword-only, default False): also run ``check_values`` in every forward, i.e.
            raise on NaN/Inf frames or keypoints, naming where. It reads the values (a host sync per
            step, a graph break under ``torch.compile``); for eager debugging. Not saved in ``config``.
    """

    def __init__(self, num_classes: int = 52, num_body_classes: int | None = 7, modality: str = "rgb+pose",
                 layout: str = "body25", entities=ENTITIES, num_frames: int = 8, dim: int = 256,
                 heads: int = 8, depth: int = 1, tau: float = 1.0, lambda_mac: float = 1.0,
                 backbone: str = "resnet101", backbone_weights=None, backend: str = "auto", *,
                 feature_stride: int = 32, roi_size: int = 7, validate_values: bool = False):
        super().__init__()
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes: expected an integer >= 2 (a classifier needs two classes), "
                             f"got {num_classes!r}")
        if num_body_classes is not None and (isinstance(num_body_classes, bool)
                                             or int(num_body_classes) != num_body_classes or num_body_classes < 2):
            raise ValueError(f"num_body_classes: expected None (no body head) or an integer >= 2, "
                             f"got {num_body_classes!r}")
        if modality not in MODALITIES:
            raise ValueError(f"modality: expected one of {MODALITIES}, got {modality!r}")
        if not isinstance(layout, str) or layout not in layout_names():
            raise ValueError(f"layout: expected one of the registered keypoint layouts {layout_names()}, "
                             f"got {layout!r}")
        if modality != "pose" and backbone not in BACKBONES:
            raise ValueError(f"backbone: expected one of {BACKBONES}, got {backbone!r}")
        check_backend_name(backend)
        num_frames = _positive_int("num_frames", num_frames)
        dim = _positive_int("dim", dim)
        heads = _positive_int("heads", heads)
        depth = _positive_int("depth", depth)
        if dim % heads:
            raise ValueError(f"dim: expected a multiple of heads={heads}, got dim={dim}; "
                             f"e.g. dim={heads * max(1, round(dim / heads))}")
        tau = check_tau(tau)  # routed_merge's rule (finite, >= mdn_fast._limits.MIN_TAU)
        if not (isinstance(lambda_mac, (int, float)) and lambda_mac >= 0 and math.isfinite(lambda_mac)):
            raise ValueError(f"lambda_mac: expected a finite weight >= 0, got {lambda_mac!r}")
        self.layout = get_layout(layout)
        self.entities = self.layout.check_entities(entities)
        self.config = dict(num_classes=int(num_classes), num_body_classes=num_body_classes, modality=modality,
                           layout=layout, entities=self.entities, num_frames=num_frames, dim=dim, heads=heads,
                           depth=depth, tau=float(tau), lambda_mac=float(lambda_mac), backbone=backbone,
                           backbone_weights=None if backbone_weights is None else str(backbone_weights),
                           backend=backend, feature_stride=feature_stride, roi_size=roi_size)
        self.modality, self.num_frames, self.dim, self.lambda_mac = modality, num_frames, dim, float(lambda_mac)
        K = len(self.entities)
        self.sem = SpatialEntityModule(dim, num_frames, self.entities, self.layout, modality, backbone=backbone,
                                       backbone_weights=backbone_weights, roi_size=roi_size,
                                       feature_stride=feature_stride)
        self.blocks = nn.ModuleList(DualPathBlock(dim, heads, tau=tau, backend=backend, num_entities=K)
                                    for _ in range(depth))
        feat = dim * (2 if self.sem.uses_rgb else 1)
        self.head = nn.Linear(feat, num_classes)
        self.body_head = nn.Linear(feat, num_body_classes) if num_body_classes is not None else None
        self.mac = MACLoss()
        self.validate_values = bool(validate_values)

    # -- sharing ----------------------------------------------------------------------------------
    def save_pretrained(self, save_directory) -> str:
        """Write ``save_directory/config.json`` (the architecture, the backend, ``"format":
        "mdn_fast.MicroDualNet"``, ``"format_version"``, the mdn_fast version; not ``backbone_weights``)
        and ``model.safetensors`` (every parameter and buffer, in its dtype): no pickle. Also a
        ``README.md`` model card when the folder has none. ``from_pretrained`` reads it back; details in
        ``mdn_fast.pretrained``."""
        from ..pretrained import save_pretrained
        return save_pretrained(self, save_directory)

    @classmethod
    def from_pretrained(cls, name_or_path, *, device=None, revision=None, cache_dir=None, local_files_only=False,
                        token=None, **overrides) -> "MicroDualNet":
        """The model saved by ``save_pretrained`` in a local folder, or in a Hugging Face hub repo
        (``"owner/name"``, fetched with ``huggingface_hub.snapshot_download``: needs ``pip install
        huggingface_hub``; ``revision``, ``cache_dir``, ``local_files_only``, ``token`` go to it). The same
        weights, buffers and dtypes bit for bit, loaded without pickle. ``overrides`` may set the runtime
        options ``backend``, ``validate_values`` and ``lambda_mac``; architecture keys are refused.
        ``device``: move the model there (default: CPU). Returned in eval mode. A config of a newer
        format, with unknown or missing keys, is refused naming the file and the fix (upgrade mdn_fast)."""
        from ..pretrained import from_pretrained
        return from_pretrained(cls, name_or_path, device=device, revision=revision, cache_dir=cache_dir,
                               local_files_only=local_files_only, token=token, **overrides)

    # -- validation -------------------------------------------------------------------------------
    def check_inputs(self, frames, keypoints, entity_mask):
        """Validate the forward arguments' types, shapes, dtypes and devices (static facts: no host sync);
        returns ``(frames, keypoints, entity_mask)`` (keypoints as float32 or float64, non-finite joints
        as missing ones). Raises TypeError/ValueError naming the argument and the fix."""
        T, K, J = self.num_frames, len(self.entities), self.layout.num_joints
        B = None
        if self.sem.uses_rgb:
            if frames is None:
                raise ValueError(f"frames: required for modality={self.modality!r}; pass frames [B, {T}, 3, H, W] "
                                 f"(normalised float), or build the model with modality='pose'")
            if not isinstance(frames, torch.Tensor):
                raise TypeError(f"frames: expected a torch.Tensor [B, {T}, 3, H, W], got {type(frames).__name__}")
            if frames.dtype not in _FRAME_DTYPES:
                raise ValueError(f"frames: expected a floating dtype (float32), got {frames.dtype}; convert "
                                 f"uint8 video with frames.float() / 255 and normalise (ImageNet mean/std)")
            if frames.dim() != 5 or frames.shape[2] != 3:
                raise ValueError(f"frames: expected shape [B, T, 3, H, W], got {tuple(frames.shape)}"
                                 + ("; add the batch dim with frames[None]" if frames.dim() == 4 else ""))
            if frames.shape[1] != T:
                raise ValueError(f"frames: expected T = num_frames = {T} frames, got {frames.shape[1]} "
                                 f"(shape {tuple(frames.shape)}); sample {T} frames per clip or build the "
                                 f"model with num_frames={frames.shape[1]}")
            if min(frames.shape[-2:]) < 32:
                raise ValueError(f"frames: expected H, W >= 32 pixels for the ResNet, got {tuple(frames.shape[-2:])}")
            B = frames.shape[0]
        if self.sem.uses_pose and keypoints is None:
            raise ValueError(f"keypoints: required for modality={self.modality!r}; pass keypoints [B, {T}, {J}, 3] "
                             f"(x, y pixels, confidence) in layout {self.layout.name!r}, or build the model "
                             f"with modality='rgb'")
        if keypoints is not None:
            if isinstance(keypoints, torch.Tensor) and keypoints.dim() != 4:
                raise ValueError(f"keypoints: expected shape [B, {T}, {J}, 3] (layout {self.layout.name!r}), "
                                 f"got {tuple(keypoints.shape)}"
                                 + ("; add the batch dim with keypoints[None]" if keypoints.dim() == 3 else ""))
            keypoints, _ = check_keypoints(keypoints, self.layout)   # type, J, dtype; NaN/Inf joints -> missing
            if keypoints.shape[1] != T:
                raise ValueError(f"keypoints: expected T = num_frames = {T} frames, got {keypoints.shape[1]} "
                                 f"(shape {tuple(keypoints.shape)})")
            if B is not None and keypoints.shape[0] != B:
                raise ValueError(f"keypoints: batch size {keypoints.shape[0]} differs from frames' {B}")
            if frames is not None and keypoints.device != frames.device:
                raise ValueError(f"keypoints: on {keypoints.device} but frames on {frames.device}; move both "
                                 f"to the model's device")
            B = keypoints.shape[0]
        if entity_mask is not None:
            if not isinstance(entity_mask, torch.Tensor) or entity_mask.dtype != torch.bool:
                got = entity_mask.dtype if isinstance(entity_mask, torch.Tensor) else type(entity_mask).__name__
                raise ValueError(f"entity_mask: expected a bool tensor [B, T, K] (True = present), got {got}; "
                                 f"convert with entity_mask.bool()")
            if tuple(entity_mask.shape) != (B, T, K):
                raise ValueError(f"entity_mask: expected shape [B, T, K] = {[B, T, K]} (K = {K} entities "
                                 f"{self.entities}), got {tuple(entity_mask.shape)}")
        return frames, keypoints, entity_mask

    def check_values(self, frames=None, keypoints=None) -> None:
        """Opt-in value check (reads the values: a host sync): raise ValueError if ``frames`` or
        ``keypoints`` hold a NaN or Inf, naming the clip, frame (and joint). The forward does not call it
        unless the model was built with ``validate_values=True``."""
        if frames is not None:
            check_frame_values(frames)
        if keypoints is not None:
            check_keypoint_values(keypoints, self.layout)

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, frames=None, keypoints=None, entity_mask=None) -> MicroDualNetOutput:
        """``frames [B, T, 3, H, W]`` (ignored by ``"pose"``), ``keypoints [B, T, J, 3]`` (for ``"rgb"``
        optional: it then gives the boxes and the mask), ``entity_mask [B, T, K]`` bool or None (derived
        from the keypoints' confidences; all True for ``"rgb"`` without keypoints)."""
        checked = self.check_inputs(frames, keypoints, entity_mask)
        if self.validate_values:   # on the inputs as given (check_inputs turns bad joints into missing ones)
            self.check_values(frames if self.sem.uses_rgb else None, keypoints)
        frames, keypoints, entity_mask = checked
        if not self.sem.uses_rgb:
            frames = None
        x, f_cnn, mask = self.sem(frames, keypoints, entity_mask)
        alphas = []
        for block in self.blocks:
            o = block(x, mask)
            x = o.y
            alphas.append(o.alpha)
        w = mask.to(x.dtype)[..., None]                                             # [B, T, K, 1]
        clip = (x * w).sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp_min(1.0)           # [B, D], 0 if none present
        if f_cnn is not None:
            clip = torch.cat([clip, f_cnn.to(clip.dtype)], dim=-1)
        return MicroDualNetOutput(
            logits=self.head(clip),
            body_logits=self.body_head(clip) if self.body_head is not None else None,
            alpha=torch.stack(alphas, dim=1), x_st=o.x_st, x_ts=o.x_ts, entity_mask=mask, f_cnn=f_cnn)

    def loss(self, out: MicroDualNetOutput, labels: torch.Tensor, body_labels: torch.Tensor | None = None):
        """``CE(out.logits, labels) + CE(out.body_logits, body_labels) + lambda_mac · MAC`` (the body term
        only when ``body_labels`` is given)."""
        B = out.logits.shape[0]
        for name, t in (("labels", labels), ("body_labels", body_labels)):
            if t is not None and (not isinstance(t, torch.Tensor) or t.dtype != torch.long or tuple(t.shape) != (B,)):
                got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name}: expected a torch.long tensor [B] = [{B}] of class ids, got {got}")
        loss = F.cross_entropy(out.logits, labels)
        if body_labels is not None:
            if out.body_logits is None:
                raise ValueError("body_labels: given, but the model has no body head; build it with "
                                 "num_body_classes=... or pass body_labels=None")
            loss = loss + F.cross_entropy(out.body_logits, body_labels)
        if self.lambda_mac:
            loss = loss + self.lambda_mac * self.mac(out.x_st, out.x_ts, out.entity_mask)
        return loss
