"""``TrainConfig``: every option of a training run, with its help text, limits and choices.

The fields are the single source of the ``mdn-fast train`` options: ``mdn_fast.cli`` builds one flag
per field (``--batch-size`` for ``batch_size``) from the field's type, default and metadata, and
``TrainConfig.validate`` (run on construction and by ``train``) is the one place options are checked,
for the CLI and the Python API alike. Adding an option is adding a field here.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace

from ..ops import BACKEND_CHOICES
from .registry import DATASET_OPTIONS, MODALITIES, dataset_names, get_dataset


def option(default, help="", *, min=None, above=None, choices=None, metavar=None, show_default=True, flag=None,
           path=False):
    """A TrainConfig field and its CLI metadata. ``help``: text, or a callable giving it (read when
    the parser is built, e.g. from the registry); ``min``: smallest allowed value; ``above``: values must
    be greater than it; ``choices``: a tuple
    or a callable giving one; ``show_default``: the help ends with the default of each dataset's
    preset; ``flag``: the CLI flag when not ``--field-name`` (a bool defaulting to True is a ``--no-X``
    switch); ``path``: a file or folder, made absolute when a run starts (``absolute_paths``)."""
    return field(default=default, metadata=dict(help=help, min=min, above=above, choices=choices, metavar=metavar,
                                                show_default=show_default, flag=flag, path=path))


def _roots_help() -> str:
    return "data folder (required for " + " / ".join(n for n in dataset_names() if get_dataset(n).needs_root) + ")"


class ConfigError(ValueError):
    """An option out of its range or choices: ``field`` names it, ``problem`` says what was expected
    and what was given. ``str()`` names the field (``epochs: ...``), ``flag_message()`` the CLI flag."""

    def __init__(self, name: str, problem: str):
        self.field, self.problem = name, problem
        super().__init__(f"{name}: {problem}")

    def flag_message(self) -> str:
        return f"{cli_flag(self.field)}: {self.problem}"


def cli_flag(name: str) -> str:
    """The CLI flag of a TrainConfig field (``batch_size`` -> ``--batch-size``)."""
    meta = next((f.metadata for f in fields(TrainConfig) if f.name == name), {})
    return "--" + name.replace("_", "-") if not meta.get("flag") else meta["flag"]


@dataclass
class TrainConfig:
    """Everything a run depends on (the CLI's options); defaults are the synthetic set's.

    ``num_clips`` / ``val_clips``: synthetic: clips generated (``val_clips`` 0 -> ``max(64, num_clips // 4)``);
    real datasets: 0 = every clip of the split, N > 0 = its first N clips (quick runs).
    ``threads``: torch intra-op threads; 0 = 1 for ``"pose"`` (its small GEMMs gain little from more
    threads and lose much when the cores are shared) and torch's default for the RGB modalities.
    ``image_size``: synthetic frame side; MA-52 crop side (short side resized to ``image_size·256/224``).
    ``amp``: bf16 autocast (CUDA or CPU); bf16 keeps fp32's exponent range, so no loss scaling is needed.
    ``grad_clip``: max global gradient norm (default 1.0; 0 = no clipping).
    ``stop_after``: stop after this many epochs of *this* invocation (0 = run to ``epochs``), leaving a
    resumable ``last.pt`` — for time-limited job slots. ``resume``: a ``last.pt``/``best.pt`` path, or
    ``"auto"`` (``OUT/last.pt`` if it exists, else a fresh start). A seed reproduces a run exactly for a
    given thread count, device and world size.
    ``workers``: DataLoader processes; -1 = every core (``mdn_fast.training.loader``: the measured
    settings). ``lists`` / ``videos`` / ``pose`` / ``prepared_videos`` / ``skip_bad_clips``:
    dataset-specific (``DatasetEntry.options``; MA-52): where each part of the release is when not under
    ``root``, the prepared copy of its videos (``mdn-fast prepare-videos``), and whether the clips that
    ``mdn_fast.data.check`` finds unusable are left out (logged) instead of refused. Path options are
    made absolute when a run starts (``absolute_paths``), so a checkpoint's config finds its data from
    any working folder.
    """
    dataset: str = option("synthetic", choices=dataset_names, show_default=False)
    root: str = option("", _roots_help, show_default=False, path=True)
    lists: str = option("", "MA-52: the folder holding {split}_list_videos.txt (a file serves every split); "
                        "unset: found under --root", metavar="PATH", show_default=False, path=True)
    videos: str = option("", "MA-52: the folder holding the clips, or their {split}/ folders; unset: found "
                         "under --root", metavar="PATH", show_default=False, path=True)
    pose: str = option("", "MA-52: a pose pickle, the folder holding MA52_{split}.pkl, or an OpenPose JSON "
                       "folder; unset: found under --root", metavar="PATH", show_default=False, path=True)
    prepared_videos: str = option("", "MA-52: the folder written by `mdn-fast prepare-videos` from the videos "
                                  "(smaller twins + a manifest of original sizes): clips are decoded from there, "
                                  "keypoints mapped through the original sizes; unset: the original videos",
                                  metavar="DIR", show_default=False, path=True)
    skip_bad_clips: bool = option(False, "MA-52: leave out (and log) the clips that mdn-fast check-data finds "
                                  "unusable, instead of refusing the split", show_default=False)
    val_split: str = option("val", "split evaluated each epoch (default val; iMiGUE's 'valid' is found as 'val')",
                            show_default=False)
    modality: str = option("pose", choices=MODALITIES)
    epochs: int = option(25, min=1)
    batch_size: int = option(32, "global batch (split over torchrun processes)", min=1)
    lr: float = option(3e-3, "peak learning rate (AdamW)", above=0)
    weight_decay: float = option(0.05, min=0)
    warmup_epochs: float = option(1.0, "linear warm-up, then cosine decay to 1%% of --lr", min=0)
    grad_clip: float = option(1.0, "max gradient norm, 0 = off", min=0)
    amp: bool = option(False, "bf16 autocast (CUDA or CPU)", show_default=False)
    dim: int = option(64, min=1)
    heads: int = option(4, min=1)
    depth: int = option(1, min=1)
    lambda_mac: float = option(0.1, "weight of the MAC loss (0 = off)", min=0)
    backend: str = option("auto", choices=BACKEND_CHOICES)
    backbone: str = option("resnet18", "torchvision ResNet for rgb modalities")
    backbone_weights: str = option("", "local ResNet state-dict file (ImageNet init); never downloaded", path=True)
    num_clips: int = option(3000, "training clips (real data: 0 = all, N = first N)", min=0)
    val_clips: int = option(0, "synthetic: 0 = max(64, num_clips // 4); real data: 0 = all", min=0)
    num_frames: int = option(8, min=1)
    image_size: int = option(64, "synthetic frame side / MA-52 crop side", min=1)
    seed: int = option(0)
    threads: int = option(0, "torch CPU threads (0: 1 for pose, torch's default for rgb)", min=0)
    workers: int = option(0, "DataLoader worker processes (-1: one per core, shared by a node's processes)",
                          min=-1)
    eval_batch_size: int = option(0, "0 = max(per-process batch, 64)", min=0)
    device: str = option("auto", "auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda", show_default=False)
    out: str = option("runs/synthetic", "output folder", path=True)
    resume: str = option("", "continue from a last.pt/best.pt; 'auto' = OUT/last.pt if present",
                         metavar="PATH|auto", show_default=False, path=True)
    stop_after: int = option(0, "stop after N epochs of this invocation (0 = run to --epochs); resume later", min=0)
    progress: bool = option(True, "no tqdm progress bar", show_default=False, flag="--no-progress")

    def __post_init__(self):
        self.validate()

    def validate(self) -> "TrainConfig":
        """Check every option (ConfigError naming the first bad one); returns ``self``."""
        for f in fields(self):
            v, meta = getattr(self, f.name), f.metadata
            choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
            if choices is not None and v not in choices:
                raise ConfigError(f.name, f"expected one of {tuple(choices)}, got {v!r}")
            if f.type == "float" and not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ConfigError(f.name, f"expected a finite number, got {v!r}")
            if meta["min"] is not None and v < meta["min"]:
                raise ConfigError(f.name, f"expected >= {meta['min']}, got {v}")
            if meta["above"] is not None and not v > meta["above"]:
                raise ConfigError(f.name, f"expected > {meta['above']}, got {v}")
        entry = get_dataset(self.dataset)
        if not entry.first_clips and self.num_clips < 1:
            raise ConfigError("num_clips", f"expected >= 1 for the {self.dataset} set, got {self.num_clips}")
        if entry.needs_root and not self.root:
            raise ConfigError("root", f"required for --dataset {self.dataset} (the folder holding the data; see "
                                      f"docs/training.md for the expected layout)")
        if self.modality not in entry.modalities:
            note = f"{entry.modality_note}; " if entry.modality_note else ""
            raise ConfigError("modality", f"{note}expected {' or '.join(map(repr, entry.modalities))}, "
                                          f"got {self.modality!r}")
        if entry.val_splits is not None and self.val_split not in entry.val_splits:
            raise ConfigError("val_split", f"--dataset {self.dataset} has no split {self.val_split!r} to evaluate on; "
                                           f"expected {' or '.join(map(repr, entry.val_splits))}")
        defaults = {f.name: f.default for f in fields(self)}
        for name in DATASET_OPTIONS:     # an option the dataset does not read is refused, not ignored
            if getattr(self, name) != defaults[name] and name not in entry.options:
                users = [n for n in dataset_names() if name in get_dataset(n).options]
                raise ConfigError(name, f"--dataset {self.dataset} does not read it (only "
                                        f"{' / '.join(users) or 'no dataset'}), got {getattr(self, name)!r}")
        return self

    def absolute_paths(self) -> "TrainConfig":
        """A copy whose file and folder options are absolute (relative to the current folder), so the
        checkpoint's config still finds the data from anywhere; empty ones and ``resume="auto"`` stay."""
        paths = {f.name: os.path.abspath(getattr(self, f.name)) for f in fields(self)
                 if f.metadata["path"] and getattr(self, f.name) not in ("", "auto")}
        return replace(self, **paths)

    def resolved_val_clips(self) -> int:
        if get_dataset(self.dataset).first_clips:
            return self.val_clips
        return self.val_clips if self.val_clips > 0 else max(64, self.num_clips // 4)

    @classmethod
    def for_dataset(cls, dataset: str = "synthetic", **overrides) -> "TrainConfig":
        """The dataset's preset with ``overrides`` on top (None values are ignored)."""
        preset = get_dataset(dataset).preset
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"TrainConfig: unknown field(s) {bad}")
        bad = sorted(set(preset) - known)
        if bad:
            raise ValueError(f"dataset {dataset!r}: its preset sets unknown TrainConfig field(s) {bad}")
        values = {**preset, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(dataset=dataset, **values)


def preset_values(name: str) -> dict:
    """``{dataset: value of option name in its preset}`` for every registered dataset."""
    default = next(f.default for f in fields(TrainConfig) if f.name == name)
    return {ds: get_dataset(ds).preset.get(name, default) for ds in dataset_names()}


def config_from_checkpoint(ckpt: dict, **overrides) -> TrainConfig:
    """The ``TrainConfig`` a checkpoint was trained with (unknown fields dropped; a format-1 checkpoint
    is a synthetic run), with ``overrides`` (None values ignored) on top. A new ``root`` moves the saved
    ``lists`` / ``videos`` / ``pose`` that lay under the saved root along with it (the data moved)."""
    known = {f.name for f in fields(TrainConfig)}
    saved = {k: v for k, v in ckpt.get("train_config", {}).items() if k in known}
    old_root, new_root = saved.get("root"), overrides.get("root")
    if old_root and new_root:
        for name in ("lists", "videos", "pose", "prepared_videos"):
            if saved.get(name) and overrides.get(name) is None:
                saved[name] = _rebase(saved[name], old_root, new_root)
    saved.update({k: v for k, v in overrides.items() if v is not None})
    saved.update(resume="", stop_after=0)
    return TrainConfig(**saved)


def _rebase(path: str, old_root: str, new_root: str) -> str:
    """``path`` moved from under ``old_root`` to under ``new_root``; unchanged when it lay elsewhere."""
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(old_root))
    except ValueError:           # another drive (Windows)
        return path
    return path if rel == ".." or rel.startswith(".." + os.sep) else os.path.join(new_root, rel)
