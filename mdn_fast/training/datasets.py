"""The built-in datasets of ``mdn-fast train`` (registered on import of ``mdn_fast.training``).

- ``synthetic`` (default): the seeded synthetic micro-action set (``mdn_fast.data.synthetic``), no
  downloads, CPU-friendly defaults (a ~2 min pose run on a laptop CPU).
- ``ma52``: MA-52 under ``root`` (``MA52Dataset``): 52 actions + 7 body classes, layout
  ``coco18_hands28``, K = 6 entities, T = 8 segments, rgb+pose by default.
- ``imigue``: the iMiGUE challenge release under ``root`` (``IMiGUEDataset``): 32 classes, no body
  head, layout ``miga22``, K = 5 (no lower body), pose only (the release carries no video).

Real-dataset presets use the paper's architecture (T = 8, D = 256, 8 heads, ResNet-101 for RGB); their
epochs, batch, lr, warm-up and lambda_mac are our starting points, not values from the paper. The
readers are imported when a split is opened, so importing this module reads no data.
"""
from __future__ import annotations

from pathlib import Path

from .registry import DatasetEntry, DatasetSpec, register_dataset


# ------------------------------------------------------------------------------------------ synthetic
def _synthetic_spec(class_names=None) -> DatasetSpec:
    from ..data.layouts import ENTITIES
    from ..data.synthetic import BODY_NAMES, BODY_OF_CLASS, CLASS_NAMES
    return DatasetSpec("synthetic", len(CLASS_NAMES), len(BODY_NAMES), "body25", tuple(ENTITIES),
                       tuple(BODY_OF_CLASS), tuple(CLASS_NAMES), tuple(BODY_NAMES))


def _synthetic_split(cfg, split: str, train: bool):
    """Generated, not read: ``num_clips`` training clips, ``resolved_val_clips()`` val clips (the split
    name is the role: ``val_split`` does not apply); frames rendered only when the modality needs them."""
    from ..data.synthetic import SyntheticMicroActions
    role, n = ("train", cfg.num_clips) if train else ("val", cfg.resolved_val_clips())
    return SyntheticMicroActions(n, num_frames=cfg.num_frames, seed=cfg.seed, split=role,
                                 render=cfg.modality != "pose", image_size=cfg.image_size)


SYNTHETIC = register_dataset(DatasetEntry(
    name="synthetic", spec=_synthetic_spec, open_split=_synthetic_split, labels=lambda ds: ds.labels.tolist(),
    preset={}, needs_root=False, first_clips=False))


# ------------------------------------------------------------------------------------------ MA-52
def _ma52_spec(class_names=None) -> DatasetSpec:
    from ..data.layouts import ENTITIES
    from ..data.ma52 import BODY_NAMES, BODY_OF_ACTION, NUM_BODY_CLASSES, NUM_CLASSES
    return DatasetSpec("ma52", NUM_CLASSES, NUM_BODY_CLASSES, "coco18_hands28", tuple(ENTITIES),
                       tuple(BODY_OF_ACTION), tuple(class_names) if class_names else None, tuple(BODY_NAMES))


def _ma52_split(cfg, split: str, train: bool):
    from ..data.ma52 import MA52Dataset
    return MA52Dataset(Path(cfg.root), split, cfg.modality, num_segments=cfg.num_frames, train=train,
                       short_side=round(cfg.image_size * 256 / 224), crop_size=cfg.image_size)


MA52 = register_dataset(DatasetEntry(
    name="ma52", spec=_ma52_spec, open_split=_ma52_split,
    labels=lambda ds: [-1 if ds.hide_labels else label for _, label in ds.items],
    preset=dict(modality="rgb+pose", epochs=40, batch_size=32, lr=5e-4, weight_decay=0.05, warmup_epochs=2.0,
                dim=256, heads=8, lambda_mac=1.0, backbone="resnet101", image_size=224, num_clips=0, workers=8,
                out="runs/ma52")))


# ------------------------------------------------------------------------------------------ iMiGUE
def _imigue_spec(class_names=None) -> DatasetSpec:
    from ..data.imigue import NUM_CLASSES
    from ..data.layouts import get_layout
    return DatasetSpec("imigue", NUM_CLASSES, None, "miga22", tuple(get_layout("miga22").entities), None, None, None)


def _imigue_split(cfg, split: str, train: bool):
    from ..data.imigue import IMiGUEDataset
    return IMiGUEDataset(Path(cfg.root), split, num_frames=cfg.num_frames, train=train)


IMIGUE = register_dataset(DatasetEntry(
    name="imigue", spec=_imigue_spec, open_split=_imigue_split, labels=lambda ds: list(ds.labels),
    preset=dict(modality="pose", epochs=60, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=2.0, dim=256,
                heads=8, lambda_mac=1.0, num_clips=0, workers=2, out="runs/imigue"),
    modalities=("pose",), modality_note="the iMiGUE skeleton release has no video"))
