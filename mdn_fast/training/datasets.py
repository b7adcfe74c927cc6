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

import logging
from pathlib import Path

from .registry import DatasetEntry, DatasetSpec, register_dataset, unwrap_subset

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ synthetic
def _synthetic_spec(class_names=None) -> DatasetSpec:
    from ..skeleton.layouts import ENTITIES
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
    preset={}, needs_root=False, first_clips=False, val_splits=("val",)))


# ------------------------------------------------------------------------------------------ MA-52
def _ma52_spec(class_names=None) -> DatasetSpec:
    from ..skeleton.layouts import ENTITIES
    from ..data.ma52 import BODY_NAMES, BODY_OF_ACTION, LAYOUT, NUM_BODY_CLASSES, NUM_CLASSES
    return DatasetSpec("ma52", NUM_CLASSES, NUM_BODY_CLASSES, LAYOUT, tuple(ENTITIES),
                       tuple(BODY_OF_ACTION), tuple(class_names) if class_names else None, tuple(BODY_NAMES))


def _ma52_parts(cfg) -> dict:
    """``lists`` / ``videos`` / ``pose`` / ``prepared`` of ``MA52Dataset`` and ``check_dataset``: the
    options, else found under ``root`` (``prepared``: None, original videos unless the video folder is a
    prepared one)."""
    parts = {k: getattr(cfg, k) or None for k in ("lists", "videos", "pose")}
    return {**parts, "prepared": cfg.prepared_videos or None}


def _ma52_split(cfg, split: str, train: bool):
    from ..data.ma52 import BadClipsError, MA52Dataset, MA52Release
    if train and cfg.lists and Path(cfg.lists).is_file():
        raise ValueError(f"--lists {cfg.lists!r}: a list file serves every split, so train and --val-split "
                         f"{cfg.val_split!r} would be the same clips; give the folder holding "
                         f"{{split}}_list_videos.txt")
    # found once: the screen and the dataset share the parts, the opened pose source included; the
    # dataset leaves the screen's bad clips out (or refuses a split with none left), this logs them
    release = MA52Release(Path(cfg.root), **_ma52_parts(cfg))
    screen = _ma52_screen(cfg, release, split) if cfg.skip_bad_clips else None
    try:
        ds = MA52Dataset(release.root, split, cfg.modality, num_segments=cfg.num_frames, train=train,
                         short_side=round(cfg.image_size * 256 / 224), crop_size=cfg.image_size,
                         skip_bad_clips=cfg.skip_bad_clips, release=release, screen=screen)
    except BadClipsError as e:
        if not e.skippable:
            raise
        # the reader's advice names its Python arguments: name the command and the option instead
        raise BadClipsError(e.list_file, e.problems, e.listed,
                            f". `mdn-fast check-data --dataset ma52 --root {cfg.root}` lists every unusable clip; "
                            f"add --skip-bad-clips to leave them out") from None
    if screen is not None:
        _log_skipped(screen, split)
    return ds


def _ma52_screen(cfg, release, split: str):
    """``--skip-bad-clips``: the clip screen of ``split`` as ``check-data`` runs it (every video opened:
    decoding failures are found, which the dataset alone would only meet mid-epoch); the dataset is built
    from it and leaves its bad clips out; rank 0 logs them. Under torchrun every rank screens on its own:
    a rank-0 screen broadcast to the others could outlast the collectives' timeout on a full release."""
    from ..data.ma52 import screen_split
    return screen_split(release, split, modality=cfg.modality, check_videos=cfg.modality != "pose",
                        findings=False, progress=cfg.progress and _rank() == 0)   # pose: the videos are not read


def _log_skipped(screen, split: str) -> None:
    """Rank 0 logs the clips ``--skip-bad-clips`` left out of ``split``, the first with its reason."""
    bad = screen.bad_clips()
    if bad and _rank() == 0:
        first = next(iter(screen.clip_errors().values()))
        where = first.file + (f", line {first.line}" if first.line is not None else "")
        log.warning("--skip-bad-clips: split %r: leaving out %d of %d listed clips that `mdn-fast check-data` "
                    "finds unusable (first: %s [%s]: %s): %s", split, len(bad), screen.report.clips, where,
                    first.clip, first.message, ", ".join(bad))


def _rank() -> int:
    import torch.distributed as dist
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _ma52_check(cfg, splits, check_videos: bool, progress: bool):
    from ..data.check import check_dataset
    return check_dataset("ma52", cfg.root, splits, modality=cfg.modality, check_videos=check_videos,
                         progress=progress, **_ma52_parts(cfg))


def _ma52_predictions(path, ds, logits):
    """MA-52's ``prediction.csv`` (``vid, action_pred_1..5, body_pred_1..5``; ``body_pred_k`` is the body
    class of ``action_pred_k``, the official evaluation script's rule)."""
    from ..data.prediction_csv import write_prediction_csv
    base, idx = unwrap_subset(ds)
    names = base.names()
    listed = base.num_listed
    if len(idx) < listed:
        log.warning("%s holds %d of the %d clips listed in %s (--num-clips, or clips left out by "
                    "--skip-bad-clips): an evaluation server may refuse an incomplete file", path, len(idx),
                    listed, base.list_file)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return write_prediction_csv(path, [names[i] for i in idx], logits)


MA52 = register_dataset(DatasetEntry(
    name="ma52", spec=_ma52_spec, open_split=_ma52_split,
    labels=lambda ds: [-1 if ds.hide_labels else label for _, label in ds.items],
    options=("lists", "videos", "pose", "prepared_videos", "skip_bad_clips"), video_files=True, check=_ma52_check,
    write_predictions=_ma52_predictions,
    preset=dict(modality="rgb+pose", epochs=40, batch_size=32, lr=5e-4, weight_decay=0.05, warmup_epochs=2.0,
                dim=256, heads=8, lambda_mac=1.0, backbone="resnet101", image_size=224, num_clips=0,
                # -1: every core a DataLoader worker (divided among a node's processes): decoding is the
                # input pipeline's cost, and a core left idle is throughput lost (training/loader.py)
                workers=-1, out="runs/ma52")))


# ------------------------------------------------------------------------------------------ iMiGUE
def _imigue_spec(class_names=None) -> DatasetSpec:
    from ..data.imigue import NUM_CLASSES
    from ..skeleton.layouts import get_layout
    return DatasetSpec("imigue", NUM_CLASSES, None, "miga22", tuple(get_layout("miga22").entities), None, None, None)


def _imigue_split(cfg, split: str, train: bool):
    from ..data.imigue import IMiGUEDataset
    return IMiGUEDataset(Path(cfg.root), split, num_frames=cfg.num_frames, train=train)


def _imigue_check(cfg, splits, check_videos: bool, progress: bool):
    from ..data.check import check_dataset
    return check_dataset("imigue", cfg.root, splits, progress=progress)


IMIGUE = register_dataset(DatasetEntry(
    name="imigue", spec=_imigue_spec, open_split=_imigue_split, labels=lambda ds: list(ds.labels),
    check=_imigue_check,
    preset=dict(modality="pose", epochs=60, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=2.0, dim=256,
                heads=8, lambda_mac=1.0, num_clips=0, workers=2, out="runs/imigue"),
    modalities=("pose",), modality_note="the iMiGUE skeleton release has no video"))
