"""What the model takes, written once for the model, the datasets and the CLI: its input modalities and
the per-channel statistics its ImageNet-pretrained ResNet backbone expects frames normalised with."""
from __future__ import annotations

#: Input modalities of ``MicroDualNet``: frames and keypoints, frames only (boxes from keypoints still
#: place the entity crops), keypoints only.
MODALITIES = ("rgb+pose", "rgb", "pose")

#: RGB mean and standard deviation (0..1 scale) of ImageNet, which torchvision's ResNets were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
