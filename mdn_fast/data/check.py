"""Scan a real dataset release before training: ``check_dataset("ma52" | "imigue", root) -> Report``
(the library side of ``mdn-fast check-data``).

MA-52: every list line, ``label_name.txt``, every video (opens, frame count, size, fps — with PyAV;
without it only existence is checked and the report says so), every pose entry (shape, clips without
detections, missing joints, NaN, frame size against the video's), the hand order found in the pose data,
and the labels (range, hidden test labels, classes without training clips).
iMiGUE: ``{split}_data.npy`` and ``{split}_label.pkl`` (shape, counts, labels), clips without detections,
NaN, the hand order.

Each finding is a ``Problem`` with the file and line (list line, or pose annotation index), the clip, a
message and what training does with it. ``Report.format()`` prints a summary; ``Report.bad_clips(split)``
lists the clips training cannot use (``MA52Dataset(exclude=...)`` leaves them out, video decoding
failures included, which the dataset itself only meets when it reads the clip).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ma52 as _ma52
from ..skeleton.layouts import get_layout
from ..skeleton.layouts_extra import HAND_BLOCKS, hand_groups_swapped

ERROR, WARNING, INFO = "error", "warning", "info"

#: What training does, per kind of finding (one source for the report and the docs).
ACTIONS = {
    "refuse_split": "training refuses this split until it is fixed",
    "refuse_clip": "training refuses the split (skip_bad_clips=True / --skip-bad-clips: leaves the clip out)",
    "video_read": ("training stops when it reads this clip (VideoReadError); leave it out with "
                   "exclude=report.bad_clips(split) (--skip-bad-clips)"),
    "empty": "trained with every joint missing (all entities absent for the clip)",
    "nan": "NaN/inf values are read as missing joints",
    "few_joints": "trained as is (entities without confident joints are absent)",
    "hand_swap": "hand_order='auto' (default) swaps the hand blocks; hand_order='as_is' would not",
    "ignored": "ignored",
    "rescaled": "keypoints are scaled from img_shape to the video's frame size (a resized video)",
    "misaligned": ("keypoints are scaled from img_shape to the video's frame size, but the aspect ratios "
                   "differ (a cropped video?): check that they line up"),
    "frame_count": "pose frames are matched to video frames proportionally",
    "hidden": "labels hidden: evaluation reports -1, use the val split for metrics",
    "no_train_clips": "these classes are never trained; their val clips count as errors",
    "optional": "not needed for training",
}


@dataclass
class Problem:
    severity: str                  # ERROR (training cannot use it), WARNING (trains, with a caveat), INFO
    split: str | None
    file: str
    line: int | None               # list-file line (1-based) when the finding belongs to a listed clip
    clip: str | None
    message: str
    action: str

    def format(self) -> str:
        where = self.file + (f", line {self.line}" if self.line is not None else "")
        clip = f" [{self.clip}]" if self.clip else ""
        return f"{self.severity.upper():7s} {where}{clip}: {self.message}\n        -> {self.action}"


@dataclass
class SplitReport:
    split: str
    files: dict = field(default_factory=dict)        # role -> path ("list", "videos", "pose", "data", "labels")
    clips: int = 0                                   # listed / stored clips
    bad: int = 0                                     # clips training cannot use
    counts: Counter = field(default_factory=Counter)  # named tallies (videos_ok, pose_empty, ...)
    frames: list = field(default_factory=list)       # video frame counts
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> clips
    labels: Counter = field(default_factory=Counter)
    hand_order: str | None = None                    # "as layout", "swapped", "undetermined"


@dataclass
class Report:
    dataset: str
    root: str
    splits: dict = field(default_factory=dict)       # split -> SplitReport
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def add(self, severity, split, file, line, clip, message, action):
        self.problems.append(Problem(severity, split, str(file), line, clip, message, ACTIONS.get(action, action)))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        """No errors: training can use every split that was checked, every clip."""
        return not self.errors

    def bad_clips(self, split: str) -> list[str]:
        """Clips of ``split`` with an error (pass as ``MA52Dataset(exclude=...)``)."""
        return sorted({p.clip for p in self.errors if p.split == split and p.clip})

    def format(self, max_problems: int = 20) -> str:
        """A printable report: per split the files and tallies, then the problems (the first
        ``max_problems`` of each severity), then the notes."""
        out = [f"check-data {self.dataset} {self.root}"]
        for s, r in self.splits.items():
            out.append(f"[{s}] {r.clips} clips, {r.bad} unusable")
            for role, path in r.files.items():
                out.append(f"  {role:8s} {path}")
            if r.counts:
                out.append("  " + ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items())))
            if r.frames:
                f = np.asarray(r.frames)
                out.append(f"  video frames min/median/max {f.min()}/{int(np.median(f))}/{f.max()}")
            if r.sizes:
                out.append("  video sizes (w x h): " + ", ".join(f"{w}x{h} ({n})" for (w, h), n in r.sizes.most_common(4)))
            if r.labels:
                out.append(f"  labels: {len(r.labels)} classes, clips per class min/max "
                           f"{min(r.labels.values())}/{max(r.labels.values())}")
            if r.hand_order is not None:
                out.append(f"  hand order: {r.hand_order}")
        for sev in (ERROR, WARNING, INFO):
            order = {s: i for i, s in enumerate(self.splits)}
            ps = sorted((p for p in self.problems if p.severity == sev),
                        key=lambda p: (order.get(p.split, -1), p.file, p.line or 0))
            if ps:
                out.append(f"{len(ps)} {sev}{'s' if len(ps) != 1 else ''}:")
                out += [p.format() for p in ps[:max_problems]]
                if len(ps) > max_problems:
                    out.append(f"  ... {len(ps) - max_problems} more")
        out += [f"note: {n}" for n in self.notes]
        out.append("OK: training can use every clip" if self.ok else
                   f"NOT OK: {len(self.errors)} errors; clips with errors: "
                   + ", ".join(f"{s} {len(self.bad_clips(s))}" for s in self.splits))
        return "\n".join(out)


def _bar(it, total, desc, progress):
    if not progress:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, total=total, desc=desc, leave=False)


def _video_info(path: Path):
    """(frames, width, height, fps) of a video, read from the container (PyAV), decoding one frame."""
    from .video import VideoReadError, _open
    with _open(path) as c:
        if not c.streams.video:
            raise VideoReadError(f"video file {str(path)!r}: no video stream")
        st = c.streams.video[0]
        n = int(st.frames or 0)
        w, h = st.codec_context.width, st.codec_context.height
        fps = float(st.average_rate) if st.average_rate else None
        try:
            first = next(c.decode(st), None)
        except Exception as e:
            raise VideoReadError(f"video file {str(path)!r}: decoding failed ({type(e).__name__}: {e})") from e
        if first is None:
            raise VideoReadError(f"video file {str(path)!r}: no frame could be decoded")
    if n <= 0:   # no count in the header: count packets as the reader does
        from .video import count_frames
        n = count_frames(path)
    return n, w, h, fps


def check_dataset(name: str, root, splits=None, *, modality: str = "rgb+pose", lists=None, videos=None,
                  pose=None, layout: str | None = None, check_videos: bool = True,
                  progress: bool = True, prepared=None) -> Report:
    """Scan the release of dataset ``name`` (``"ma52"`` or ``"imigue"``) under ``root``.

    splits: default ``("train", "val", "test")`` (iMiGUE: the splits found). modality (MA-52): which
    parts are required (``"pose"`` needs no videos, ``"rgb"`` no pose). lists/videos/pose: as
    ``MA52Dataset``. check_videos: open every video (needs PyAV; else existence only). prepared (MA-52):
    the prepared copy of the videos (``MA52Dataset(prepared=)``): those are checked, and each needs an
    entry in its manifest (the original size its keypoints are mapped through).
    """
    if name == "ma52":
        return _check_ma52(Path(root), tuple(splits or _ma52.SPLITS), modality, lists, videos, pose,
                           layout or "coco18_hands28", check_videos, progress, prepared)
    if name == "imigue":
        return _check_imigue(Path(root), splits, progress)
    raise ValueError(f"name: expected 'ma52' or 'imigue', got {name!r}")


# ------------------------------------------------------------------------------------------ MA-52
def _check_ma52(root, splits, modality, lists, videos, pose, layout, check_videos, progress, prepared=None) -> Report:
    rep = Report("ma52", str(root))
    lay = get_layout(layout)
    if modality not in _ma52.MODALITIES:
        raise ValueError(f"modality: expected one of {_ma52.MODALITIES}, got {modality!r}")
    need_video, need_pose = modality in ("rgb+pose", "rgb"), modality in ("rgb+pose", "pose")
    try:
        import av  # noqa: F401
        have_av = True
    except ImportError:
        have_av = False
    if check_videos and need_video and not have_av:
        rep.notes.append("PyAV is not installed: videos were checked for existence only (pip install av)")
    names_file = next((c for c in [root / "label_name.txt", root / "annotations" / "label_name.txt"] if c.is_file()), None)
    if names_file is None:
        rep.notes.append("no label_name.txt: plots will use class ids")
    else:
        try:
            n = len(_ma52.read_label_names(names_file))
            if n != _ma52.NUM_CLASSES:
                rep.add(ERROR, None, names_file, None, None, f"{n} class names, expected {_ma52.NUM_CLASSES}",
                        "refuse_split")
        except _ma52.AnnotationError as e:
            rep.add(ERROR, None, names_file, None, None, str(e), "training refuses every split (label_name.txt is read)")
    train_labels = None
    for split in splits:
        sr = rep.splits.setdefault(split, SplitReport(split))
        try:
            lst = _ma52.find_list_file(root, split, lists)
        except FileNotFoundError as e:
            rep.add(INFO if split == "test" else ERROR, split, root, None, None, str(e),
                    "optional" if split == "test" else "refuse_split")
            continue
        sr.files["list"] = str(lst)
        entries = []
        try:   # the dataset's rules (MA52Dataset reads the list with hidden_ok=hide_labels, default split == "test")
            parsed = _ma52.parse_list(lst, hidden_ok=split == "test")
        except _ma52.AnnotationError as e:
            rep.add(ERROR, split, lst, None, None, str(e), "refuse_split")
            continue
        for line, clip, label, problem in parsed:
            if problem is not None:
                rep.add(ERROR, split, lst, line, clip, problem, "refuse_split")
                sr.bad += 1
            else:
                entries.append((clip, label, line))
        sr.clips = len(entries) + sr.bad
        if not entries:
            rep.add(ERROR, split, lst, None, None, "no usable clips listed", "refuse_split")
            continue
        sr.labels = Counter(l for _, l, _ in entries)
        if split == "test" and set(sr.labels) <= {0, -1}:
            rep.add(INFO, split, lst, None, None, "every label is 0 or missing (hidden test labels)", "hidden")
        if split == "train":
            train_labels = set(sr.labels)
        elif train_labels is not None and split != "test":
            unseen = sorted(set(sr.labels) - train_labels)
            if unseen:
                rep.add(WARNING, split, lst, None, None, f"classes {unseen} have no training clip", "no_train_clips")
        bad_clips: set[str] = set()

        # ---- pose
        src = p = None
        try:
            p = _ma52.find_pose_source(root, split, pose)
            if p is None:
                if need_pose:
                    rep.add(ERROR, split, root, None, None, "no pose source found: none of "
                            f"{[str(c) for c in _ma52.pose_candidates(root, split)]} exist", "refuse_split")
            else:
                sr.files["pose"] = str(p)
                src = _ma52.open_pose_source(p, lay)
        except _ma52.AnnotationError as e:
            rep.add(ERROR, split, p or pose or root, None, None, str(e), "refuse_split")
        pose_shapes = {}
        if src is not None:
            usable = []
            for clip, label, line in _bar(entries, len(entries), f"{split}: pose", progress):
                try:
                    why = src.problem(clip, split)
                except _ma52.AnnotationError as e:
                    why = str(e)
                if why is not None:
                    rep.add(ERROR, split, lst, line, clip, why, "refuse_clip")
                    bad_clips.add(clip)
                    continue
                if isinstance(src, _ma52.PosePickle):
                    fd = src.find(clip, split)
                    a = src.entries[fd]
                    kp = np.asarray(a["keypoint"])
                    if kp.shape[0] == 0:
                        sr.counts["pose_no_detections"] += 1
                        rep.add(WARNING, split, lst, line, clip,
                                f"{src.path}: annotation {src.index[fd]}: no detections (keypoint shape "
                                f"{tuple(kp.shape)})", "empty")
                        continue
                    score = np.asarray(a["keypoint_score"], np.float64)
                    if not (np.isfinite(kp).all() and np.isfinite(score).all()):
                        sr.counts["pose_nan"] += 1
                        rep.add(WARNING, split, lst, line, clip, f"{src.path}: annotation {src.index[fd]}: "
                                f"NaN/inf in keypoint or keypoint_score", "nan")
                    seq, shape = src.clip(clip, split)
                    missing = float((seq[..., 2] <= 0).mean())
                    if missing > 0.9:
                        sr.counts["pose_mostly_missing"] += 1
                        rep.add(WARNING, split, lst, line, clip, f"{100 * missing:.0f}% of the joints are missing",
                                "few_joints")
                    pose_shapes[clip] = (shape, seq.shape[0])
                    usable.append(seq)
                sr.counts["pose_ok"] += 1
            if isinstance(src, _ma52.PosePickle):
                listed = set()
                for c, _, _ in entries:
                    try:
                        listed.add(src.find(c, split))
                    except _ma52.AnnotationError:
                        pass
                extra = len(set(src.entries) - listed)
                if extra > 0:
                    rep.add(INFO, split, src.path, None, None, f"{extra} pose entries are not in the list", "ignored")
                if lay.name in HAND_BLOCKS:
                    sw = hand_groups_swapped(np.concatenate(usable), lay) if usable else None
                    sr.hand_order = {None: "undetermined (no frame with both hands)", False: "as the layout",
                                     True: "swapped relative to the layout"}[sw]
                    if sw:
                        rep.add(WARNING, split, src.path, None, None, "the hand blocks sit next to the other wrist "
                                f"than layout {lay.name!r} says", "hand_swap")

        # ---- videos
        vdir = manifest = None
        try:
            # Both found, or neither: a prepared folder that is not one (no manifest) must not leave the
            # raw folder behind as if it had been checked.
            found = _ma52.find_video_dir(root, split, videos, first_clip=entries[0][0])
            vdir, manifest = _ma52.resolve_prepared(found, prepared, root=root)
            sr.files["videos"] = str(vdir) + (" (prepared)" if manifest is not None else "")
        except FileNotFoundError as e:
            rep.add(ERROR if need_video else INFO, split, videos or root, None, None, str(e),
                    "refuse_split" if need_video else "optional")
        if vdir is not None:
            for clip, label, line in _bar(entries, len(entries), f"{split}: videos", progress):
                vp = _ma52.resolve_video(vdir, clip)
                if not vp.is_file():
                    if need_video:
                        rep.add(ERROR, split, lst, line, clip, f"video file {str(vp)!r} does not exist", "refuse_clip")
                        bad_clips.add(clip)
                    else:
                        sr.counts["videos_missing"] += 1
                    continue
                if manifest is not None:
                    try:
                        orig_hw = manifest.original_size(vp.relative_to(vdir).as_posix())
                    except KeyError as e:
                        rep.add(ERROR if need_video else WARNING, split, lst, line, clip, e.args[0],
                                "refuse_clip" if need_video else "optional")
                        if need_video:
                            bad_clips.add(clip)
                        continue
                if not (check_videos and have_av):
                    sr.counts["videos_found"] += 1
                    continue
                try:
                    n, w, h, fps = _video_info(vp)
                except Exception as e:  # VideoReadError and whatever a broken container raises
                    rep.add(ERROR if need_video else WARNING, split, lst, line, clip, str(e),
                            "video_read" if need_video else "optional")
                    if need_video:
                        bad_clips.add(clip)
                    continue
                sr.counts["videos_ok"] += 1
                sr.frames.append(n)
                sr.sizes[(w, h)] += 1
                if manifest is not None:       # keypoints refer to the original video's size
                    h, w = orig_hw
                if clip in pose_shapes:
                    shape, tp = pose_shapes[clip]
                    if shape is not None and tuple(shape) != (h, w):
                        same_aspect = abs(shape[0] * w - shape[1] * h) <= max(shape[0], shape[1], h, w)
                        rep.add(INFO if same_aspect else WARNING, split, lst, line, clip,
                                f"pose img_shape {tuple(shape)} (h, w) differs from the video's ({h}, {w})",
                                "rescaled" if same_aspect else "misaligned")
                    if tp != n:
                        sr.counts["pose_frames_differ"] += 1
        sr.bad += len(bad_clips)
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
        for i in _bar(range(data.shape[0]), data.shape[0], f"{split}: clips", progress):
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
