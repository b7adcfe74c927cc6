"""What the model takes, written once for the model, the datasets and the CLI: its input modalities and
the per-channel statistics its ImageNet-pretrained ResNet backbone expects frames normalised with."""
from __future__ import annotations

#: Input modalities of ``MicroDualNet``: frames and keypoints, frames only (boxes from keypoints still
#: place the entity crops), keypoints only.
MODALITIES = ("rgb+pose", "rgb", "pose")

#: RGB mean and standard deviation (0..1 scale) of ImageNet, which torchvision's ResNets were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def modality_needs(modality: str) -> tuple[bool, bool]:
    """``(needs videos, needs keypoints)`` of ``modality``; ValueError naming the choices otherwise. ("rgb"
    reads keypoints too when a pose source is found, for the entity boxes, but does not need one.)"""
    if modality not in MODALITIES:
        raise ValueError(f"modality: expected one of {MODALITIES}, got {modality!r}")
    return modality in ("rgb+pose", "rgb"), modality in ("rgb+pose", "pose")
