"""The dataset registry: one ``DatasetEntry`` per dataset ``mdn-fast train --dataset NAME`` accepts.

An entry holds everything the training code needs to know about a dataset: its preset (option
defaults), its ``DatasetSpec`` (classes, layout, entities: what the model and the metrics need), how
to open a split, and how to read a split's labels. ``register_dataset(entry)`` is the only edit a new
dataset needs: the CLI's ``--dataset`` choices, the presets shown in ``--help``, the config's checks,
``build_datasets`` and ``evaluate_checkpoint`` all read the registry. The built-in entries (synthetic,
ma52, imigue) are in ``mdn_fast.training.datasets``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from torch.utils.data import Subset

from ..inputs import MODALITIES as _MODEL_MODALITIES

MODALITIES = tuple(sorted(_MODEL_MODALITIES))  # the model's, alphabetical for the CLI's choices
#: TrainConfig fields that only some datasets read (``DatasetEntry.options``).
DATASET_OPTIONS = ("lists", "videos", "pose", "prepared_videos", "skip_bad_clips")


@dataclass
class DatasetSpec:
    """What the model and the metrics need to know about a dataset."""
    name: str
    num_classes: int
    num_body_classes: int | None
    layout: str
    entities: tuple
    body_of_class: tuple | None      # body class of each action (F1_mean), None without body classes
    class_names: tuple | None
    body_names: tuple | None

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of ``mdn-fast train``.

    ``preset``: TrainConfig values that differ from its defaults for this dataset (user options win).
    ``spec(class_names)``: the ``DatasetSpec``; ``class_names`` are those the opened val split carries
    (its ``class_names`` attribute, or None).
    ``open_split(cfg, split, train)``: the ``torch.utils.data.Dataset`` of ``split`` (``train``: with
    training augmentation); FileNotFoundError naming what is missing.
    ``labels(ds)``: the label of every clip of an opened split, -1 where hidden.
    ``needs_root``: the data lives under ``--root`` (checked before opening anything).
    ``modalities`` / ``modality_note``: the modalities it has, and why others are refused.
    ``first_clips``: ``num_clips`` / ``val_clips`` N > 0 keep a split's first N clips (real data);
    False when ``open_split`` makes exactly that many (the synthetic generator).
    ``options``: the dataset-specific TrainConfig fields (``DATASET_OPTIONS``) it reads; set for another
    dataset they are refused, never silently ignored.
    ``val_splits``: the splits ``--val-split`` may name (None: any; the reader says what it lacks).
    ``video_files``: its rgb modalities decode video files (PyAV, the ``[video]`` extra; checked before
    any work starts).
    ``check(cfg, splits, check_videos, progress)``: scan the release (``mdn-fast check-data``) ->
    ``mdn_fast.data.check.Report``; None: the dataset has no check.
    ``write_predictions(path, ds, logits)``: write the challenge's submission file for an opened split
    (``ds`` may be a ``Subset``) from the action logits ``[N, C]`` (``mdn-fast eval --prediction-csv``).
    """
    name: str
    spec: Callable[[tuple | None], DatasetSpec]
    open_split: Callable
    labels: Callable[[object], list]
    preset: dict = field(default_factory=dict)
    needs_root: bool = True
    modalities: tuple = MODALITIES
    modality_note: str = ""
    first_clips: bool = True
    options: tuple = ()
    val_splits: tuple | None = None
    video_files: bool = False
    check: Callable | None = None
    write_predictions: Callable | None = None


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(entry: DatasetEntry, *, replace: bool = False) -> DatasetEntry:
    """Add ``entry`` to the registry (ValueError if its name is taken, unless ``replace``)."""
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f"dataset: {entry.name!r} is already registered; pass replace=True to override it")
    bad = [o for o in entry.options if o not in DATASET_OPTIONS]
    if bad:
        raise ValueError(f"options: expected a subset of {DATASET_OPTIONS}, got {entry.options}")
    bad = [m for m in entry.modalities if m not in MODALITIES]
    if bad or not entry.modalities:
        raise ValueError(f"modalities: expected a non-empty subset of {MODALITIES}, got {entry.modalities}")
    _REGISTRY[entry.name] = entry
    return entry


def unregister_dataset(name: str) -> None:
    """Remove ``name`` from the registry (tests that register a temporary dataset)."""
    _REGISTRY.pop(name, None)


def dataset_names() -> tuple:
    """Registered dataset names, in registration order (the built-ins first)."""
    return tuple(_REGISTRY)


def get_dataset(name: str) -> DatasetEntry:
    if name not in _REGISTRY:
        raise ValueError(f"dataset: expected one of {dataset_names()}, got {name!r}")
    return _REGISTRY[name]


def unwrap_subset(ds) -> tuple[object, list[int]]:
    """``(the opened split, the indices of its items that ds holds)`` of a split or a (nested) ``Subset``."""
    idx = list(range(len(ds)))
    while isinstance(ds, Subset):
        idx = [ds.indices[i] for i in idx]
        ds = ds.dataset
    return ds, idx


def check_class_names(spec: DatasetSpec, opened, dataset: str) -> None:
    """Class names (a ``label_name.txt``) must name every class: ValueError naming the file (the opened
    split's ``class_names_file`` when it has one) and both counts."""
    if spec.class_names is None or len(spec.class_names) == spec.num_classes:
        return
    src = getattr(opened, "class_names_file", None)
    where = str(src) if src is not None else f"the class names of --dataset {dataset}"
    raise ValueError(f"{where}: {len(spec.class_names)} class names, but --dataset {dataset} has "
                     f"{spec.num_classes} classes; give one name per class (ids 0..{spec.num_classes - 1}), or "
                     f"remove the file (plots then show class ids)")


def build_datasets(cfg, *, need_train: bool = True, allow_hidden: bool = False, split_flag: str = "--val-split"):
    """``(train_set or None, val_set, spec)`` of ``cfg.dataset``. Missing data: one FileNotFoundError
    naming every missing folder or file of every split; a val split whose labels are hidden: ValueError
    (naming ``split_flag``) unless ``allow_hidden`` (writing a submission file for the test split)."""
    cfg.validate()
    entry = get_dataset(cfg.dataset)
    if entry.needs_root and not Path(cfg.root).is_dir():
        raise FileNotFoundError(f"--root {cfg.root!r}: no such folder (--dataset {cfg.dataset})")
    opened, errors = {}, []
    wanted = ((("train", "train", True),) if need_train else ()) + (("val", cfg.val_split, False),)
    for role, split, train in wanted:
        try:
            opened[role] = entry.open_split(cfg, split, train)
        except FileNotFoundError as e:
            errors.append(f"  {split}: {e}")
    if errors:
        parts = ["--" + o for o in entry.options if o in ("lists", "videos", "pose")]
        raise FileNotFoundError(f"--dataset {cfg.dataset} --root {cfg.root!r}: missing data for modality "
                                f"{cfg.modality!r}:\n" + "\n".join(errors)
                                + "\n(see docs/training.md for the expected layout" + (
                                    "; " + " / ".join(parts) + " point at parts stored elsewhere" if parts else "")
                                + ")")
    val_set = opened["val"]
    if not allow_hidden and any(label < 0 for label in entry.labels(val_set)):
        submit = (f"; `mdn-fast eval CHECKPOINT --split {cfg.val_split} --prediction-csv PATH` writes the "
                  f"submission file for it" if entry.write_predictions is not None else "")
        raise ValueError(f"{split_flag} {cfg.val_split!r}: its labels are hidden (-1), so no metrics can be "
                         f"computed on it; evaluate on a split with labels (MA-52: val; iMiGUE: valid, or test with "
                         f"its label file){submit}")
    spec = entry.spec(getattr(val_set, "class_names", None))
    check_class_names(spec, val_set, cfg.dataset)
    train_set = opened.get("train")
    if entry.first_clips:
        if train_set is not None and cfg.num_clips > 0:
            train_set = Subset(train_set, range(min(cfg.num_clips, len(train_set))))
        if cfg.val_clips > 0:
            val_set = Subset(val_set, range(min(cfg.val_clips, len(val_set))))
    return train_set, val_set, spec
