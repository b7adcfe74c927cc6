"""Scan a real dataset release before training: ``check_dataset("ma52" | "imigue", root) -> Report``
(the library side of ``mdn-fast check-data``).

MA-52: every list line, ``label_name.txt``, every video (opens, frame count, size, fps — with PyAV;
without it only existence is checked and the report says so), every pose entry (shape, clips without
detections, missing joints, NaN, frame size against the video's), the hand order found in the pose data,
and the labels (range, hidden test labels, classes without training clips).
iMiGUE: ``{split}_data.npy`` and ``{split}_label.pkl`` (shape, counts, labels), clips without detections,
NaN, the hand order.

Each finding is a ``Problem`` (``mdn_fast.data.findings``) with the file and line (list line, or pose
annotation index), the clip, a message and what training does with it. The MA-52 clip findings come from
the clip screen the dataset applies too (``mdn_fast.data.ma52_screen``), on one ``MA52Release``. ``Report.format()`` prints a summary; ``Report.bad_clips(split)``
lists the clips training cannot use (``MA52Dataset(exclude=...)`` leaves them out, video decoding
failures included, which the dataset itself only meets when it reads the clip).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..skeleton.layouts import get_layout
from ..skeleton.layouts_extra import hand_groups_swapped
# the report's records, defined with the MA-52 clip screen that writes them too; re-exported here
from .findings import ACTIONS, ERROR, INFO, WARNING, Problem, Report, SplitReport, progress_bar  # noqa: F401
from .ma52_annotations import (LAYOUT as MA52_LAYOUT, NUM_CLASSES as MA52_CLASSES, SPLITS as MA52_SPLITS,
                               AnnotationError, read_label_names)
from ..inputs import modality_needs
from .ma52_release import MA52Release
from .ma52_screen import have_pyav, screen_split


def check_dataset(name: str, root, splits=None, *, modality: str = "rgb+pose", lists=None, videos=None,
                  pose=None, layout: str | None = None, check_videos: bool = True,
                  progress: bool = True, prepared=None, release: MA52Release | None = None) -> Report:
    """Scan the release of dataset ``name`` (``"ma52"`` or ``"imigue"``) under ``root``.

    splits: default ``("train", "val", "test")`` (iMiGUE: the splits found). modality (MA-52): which
    parts are required (``"pose"`` needs no videos, ``"rgb"`` no pose). lists/videos/pose: as
    ``MA52Dataset``. check_videos: open every video (needs PyAV; else existence only). prepared (MA-52):
    the prepared copy of the videos (``MA52Dataset(prepared=)``): those are checked, and each needs an
    entry in its manifest (the original size its keypoints are mapped through). release (MA-52): an
    ``MA52Release`` already found, instead of root/lists/videos/pose/prepared (its opened pose sources
    are reused).
    """
    if name == "ma52":
        if release is None:
            release = MA52Release(root, lists=lists, videos=videos, pose=pose, prepared=prepared)
        return _check_ma52(release, tuple(splits or MA52_SPLITS), modality, layout or MA52_LAYOUT,
                           check_videos, progress)
    if name == "imigue":
        return _check_imigue(Path(root), splits, progress)
    raise ValueError(f"name: expected 'ma52' or 'imigue', got {name!r}")


# ------------------------------------------------------------------------------------------ MA-52
def _check_ma52(release: MA52Release, splits, modality, layout, check_videos, progress) -> Report:
    """The release's label names, then each split through the clip screen (``screen_split``)."""
    rep = Report("ma52", str(release.root))
    get_layout(layout)      # an unknown layout or modality is refused before anything is read
    need_video, _ = modality_needs(modality)
    if check_videos and need_video and not have_pyav():
        rep.notes.append("PyAV is not installed: videos were checked for existence only (pip install av)")
    names_file = release.names_file
    if names_file is None:
        rep.notes.append("no label_name.txt: plots will use class ids")
    else:
        try:
            n = len(read_label_names(names_file))
            if n != MA52_CLASSES:
                rep.add(ERROR, None, names_file, None, None, f"{n} class names, expected {MA52_CLASSES}",
                        "refuse_split")
        except AnnotationError as e:
            rep.add(ERROR, None, names_file, None, None, str(e), "training refuses every split (label_name.txt is read)")
    train_labels = None
    for split in splits:
        # the dataset's rules (MA52Dataset reads the list with hidden_ok=hide_labels, default split == "test")
        s = screen_split(release, split, modality=modality, layout=layout, check_videos=check_videos,
                         progress=progress, train_labels=train_labels)
        rep.splits[split] = s.report
        rep.problems += s.problems
        if split == "train" and s.entries:
            train_labels = set(s.report.labels)
    return rep


# ------------------------------------------------------------------------------------------ iMiGUE
def _check_imigue(root, splits, progress) -> Report:
    from . import imigue as _im
    rep = Report("imigue", str(root))
    if splits is None:
        splits = [s for s in ("train", "val", "test") if any((root / f"{a}_data.npy").is_file()
                                                            for a in (s, {"val": "valid"}.get(s, s)))]
        if not splits:
            rep.add(ERROR, None, root, None, None, "no {split}_data.npy found (train, val/valid, test)", "refuse_split")
    lay = get_layout("miga22")
    for split in splits:
        sr = rep.splits.setdefault(split, SplitReport(split))
        try:
            dpath = _im._split_file(root, split, "_data.npy")
            sr.files["data"] = str(dpath)
            data = _im.read_data(dpath)
        except (FileNotFoundError, _im.IMiGUEFormatError) as e:
            rep.add(ERROR, split, root, None, None, str(e), "refuse_split")
            continue
        sr.clips = data.shape[0]
        names = None
        try:
            lpath = _im._split_file(root, split, "_label.pkl")
            sr.files["labels"] = str(lpath)
            names, labels = _im.read_labels(lpath, hidden_ok=split == "test")   # as IMiGUEDataset reads it
            sr.labels = Counter(labels)
            if len(labels) != data.shape[0]:
                rep.add(ERROR, split, lpath, None, None, f"{len(labels)} labels but {dpath} holds {data.shape[0]} "
                        f"clips", "refuse_split")
        except FileNotFoundError:
            rep.add(INFO if split == "test" else ERROR, split, root, None, None, f"no {split}_label.pkl: labels -1",
                    "optional" if split == "test" else "refuse_split")
        except _im.IMiGUEFormatError as e:
            rep.add(ERROR, split, root, None, None, str(e), "refuse_split")
        sample = []
        for i in progress_bar(range(data.shape[0]), data.shape[0], f"{split}: clips", progress):
            clip = np.asarray(data[i, :, :, :, 0], np.float32)
            cname = names[i] if names is not None and i < len(names) else f"{split}_{i}"
            if not np.isfinite(clip).all():
                sr.counts["nan"] += 1
                rep.add(WARNING, split, dpath, None, f"{cname} (#{i})", "NaN/inf values", "nan")
            if not (np.nan_to_num(clip[2]) > 0).any():
                sr.counts["no_detections"] += 1
                rep.add(WARNING, split, dpath, None, f"{cname} (#{i})", "no detections (all scores 0)", "empty")
                continue
            sr.counts["ok"] += 1
            if len(sample) < 2048:
                sample.append(np.nan_to_num(clip[:, :_im.valid_length(clip)]).transpose(1, 2, 0))
        sw = hand_groups_swapped(np.concatenate(sample), lay) if sample else None
        sr.hand_order = {None: "undetermined", False: "as the layout", True: "swapped relative to the layout"}[sw]
        if sw:
            rep.add(WARNING, split, dpath, None, None, "the hand blocks sit next to the other wrist than layout "
                    "'miga22' says", "hand_swap")
    return rep
