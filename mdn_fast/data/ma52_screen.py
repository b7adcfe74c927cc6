"""The MA-52 clip screen: the one set of rules that decides which listed clips training can use, applied
to the parts of one ``MA52Release`` by the dataset (``MA52Dataset``, when it is built) and by
``check-data`` (``mdn_fast.data.check``).

A clip is unusable (an ``ERROR`` ``Problem`` naming the list file, line and clip) when its pose entry is
missing or malformed (``PosePickle.problem``: ``pose_entry_problem``), when the modality reads videos and
its video file is missing, when its keypoints need the original video size and the prepared videos'
manifest has no entry for it, and -- only where the videos are opened (``open_videos``: check-data, and
``mdn-fast train --skip-bad-clips``) -- when its video does not decode. ``findings`` adds what training
copes with (clips without detections, NaN, sizes and frame counts that differ, the hand order) and the
tallies of the report; the dataset asks for neither.

``screen_split`` screens a whole split as check-data reports it: the split's parts that are missing are
findings too (the dataset raises on those instead, from the same ``MA52Split`` lookups). Its result,
``SplitScreen``, can be handed to ``MA52Dataset(screen=...)``, which then screens nothing again (that is
how ``--skip-bad-clips`` reads each pose pickle once). A dataset refusing clips raises ``BadClipsError``,
which carries the records (``problems``: clip, file, line, message) rather than only their text.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..skeleton.layouts import get_layout
from ..skeleton.layouts_extra import HAND_BLOCKS, hand_groups_swapped
from .findings import ERROR, INFO, WARNING, Problem, SplitReport, problem, progress_bar
from .ma52_annotations import LAYOUT, AnnotationError
from .ma52_pose import PosePickle
from ..inputs import modality_needs
from .ma52_release import MA52Release, resolve_video
from .video_decode import video_info


class BadClipsError(AnnotationError):
    """Listed clips that a dataset cannot use, refused. ``problems``: one ``Problem`` per bad clip in list
    order (``clip``, ``file`` -- the list file --, ``line``, ``message``: the first reason found);
    ``list_file``, ``listed`` (clips listed), ``summary`` (the message without ``advice``, the sentence on
    what to do next); ``skippable``: False when no listed clip is usable (leaving the bad ones out would
    leave nothing). An ``AnnotationError``, so ``except AnnotationError`` still catches it."""

    def __init__(self, list_file, problems, listed: int, advice: str = "", *, skippable: bool = True):
        self.list_file, self.problems, self.listed = list_file, list(problems), int(listed)
        self.advice, self.skippable = advice, skippable
        first = self.problems[0]
        self.summary = (f"{list_file}: {len(self.problems)} of {self.listed} listed clips cannot be used; "
                        f"first: line {first.line}, clip {first.clip!r}: {first.message}")
        super().__init__(self.summary + advice)

    @property
    def clips(self) -> list[str]:
        return [p.clip for p in self.problems]

    def __reduce__(self):   # raised in a DataLoader worker: rebuilt from its records, not from the text
        return (_rebuild_bad_clips, (self.list_file, self.problems, self.listed, self.advice, self.skippable))


def _rebuild_bad_clips(list_file, problems, listed, advice, skippable):
    return BadClipsError(list_file, problems, listed, advice, skippable=skippable)


@dataclass(eq=False)
class SplitScreen:
    """One split screened (``screen_split``): the parameters it was screened with, the report's tallies
    (``report``), every finding in screening order (``problems``) and the usable list lines
    (``entries``: ``(name, label, line)``, before the clip rules)."""
    release: MA52Release
    split: str
    modality: str
    layout: str
    hidden_ok: bool
    videos_opened: bool
    report: SplitReport
    problems: list = field(default_factory=list)
    entries: list = field(default_factory=list)

    def clip_errors(self) -> dict[str, Problem]:
        """Clip name (as listed) -> its first ``ERROR``, in screening order."""
        return clip_errors(self.problems)

    def bad_clips(self) -> list[str]:
        """The clips with an error, sorted (``Report.bad_clips``; ``MA52Dataset(exclude=...)``)."""
        return sorted(self.clip_errors())


def clip_errors(problems) -> dict[str, Problem]:
    """Clip name (as listed) -> its first ``ERROR`` among ``problems`` (screening order: the reason a
    dataset names)."""
    out: dict[str, Problem] = {}
    for p in problems:
        if p.severity == ERROR and p.clip:
            out.setdefault(p.clip, p)
    return out


def screen_clips(entries, *, split, list_file, pose, video_dir, manifest, need_video: bool, open_videos: bool,
                 findings: bool, progress: bool, report: SplitReport, problems: list) -> set[str]:
    """Screen the listed clips ``entries`` (``(name, label, line)``) against the split's parts (``pose``:
    the opened pose source or None; ``video_dir`` / ``manifest``: the video folder and its prepared
    manifest, or None); append the findings to ``problems`` and the tallies to ``report``; return the
    names of the unusable clips. Pose rules first, then video rules, each over every clip (so a clip's
    first error is its pose problem when it has one)."""
    bad: set[str] = set()

    def add(severity, line, clip, message, action, file=list_file):
        problems.append(problem(severity, split, file, line, clip, message, action))

    # ---- pose
    pose_shapes = {}
    if pose is not None:
        usable = []
        for clip, label, line in progress_bar(entries, len(entries), f"{split}: pose", progress):
            try:
                why = pose.problem(clip, split)
            except AnnotationError as e:      # a name matching several frame_dirs
                why = str(e)
            if why is not None:
                add(ERROR, line, clip, why, "refuse_clip")
                bad.add(clip)
                continue
            if findings and isinstance(pose, PosePickle):
                fd = pose.find(clip, split)
                a = pose.entries[fd]
                kp = np.asarray(a["keypoint"])
                if kp.shape[0] == 0:
                    report.counts["pose_no_detections"] += 1
                    add(WARNING, line, clip, f"{pose.path}: annotation {pose.index[fd]}: no detections (keypoint "
                        f"shape {tuple(kp.shape)})", "empty")
                    continue
                score = np.asarray(a["keypoint_score"], np.float64)
                if not (np.isfinite(kp).all() and np.isfinite(score).all()):
                    report.counts["pose_nan"] += 1
                    add(WARNING, line, clip, f"{pose.path}: annotation {pose.index[fd]}: NaN/inf in keypoint or "
                        f"keypoint_score", "nan")
                seq, shape = pose.clip(clip, split)
                missing = float((seq[..., 2] <= 0).mean())
                if missing > 0.9:
                    report.counts["pose_mostly_missing"] += 1
                    add(WARNING, line, clip, f"{100 * missing:.0f}% of the joints are missing", "few_joints")
                pose_shapes[clip] = (shape, seq.shape[0])
                usable.append(seq)
            report.counts["pose_ok"] += 1
        if findings and isinstance(pose, PosePickle):
            listed = set()
            for c, _, _ in entries:
                try:
                    listed.add(pose.find(c, split))
                except AnnotationError:
                    pass
            extra = len(set(pose.entries) - listed)
            if extra > 0:
                add(INFO, None, None, f"{extra} pose entries are not in the list", "ignored", file=pose.path)
            lay = pose.layout
            if lay.name in HAND_BLOCKS:
                sw = hand_groups_swapped(np.concatenate(usable), lay) if usable else None
                report.hand_order = {None: "undetermined (no frame with both hands)", False: "as the layout",
                                     True: "swapped relative to the layout"}[sw]
                if sw:
                    add(WARNING, None, None, "the hand blocks sit next to the other wrist than layout "
                        f"{lay.name!r} says", "hand_swap", file=pose.path)

    # ---- videos
    if video_dir is None:
        return bad
    # the original size is looked up for the frames, and for OpenPose JSON (which carries no frame size)
    needs_size = need_video or (pose is not None and not isinstance(pose, PosePickle))
    for clip, label, line in progress_bar(entries, len(entries), f"{split}: videos", progress):
        vp = resolve_video(video_dir, clip)
        if not vp.is_file():
            if need_video:
                add(ERROR, line, clip, f"video file {str(vp)!r} does not exist", "refuse_clip")
                bad.add(clip)
            else:
                report.counts["videos_missing"] += 1
            continue
        if manifest is not None:
            try:   # a prepared clip without manifest entry: its keypoints could not be mapped
                orig_hw = manifest.original_size(vp.relative_to(video_dir).as_posix())
            except KeyError as e:
                add(ERROR if needs_size else WARNING, line, clip, e.args[0],
                    "refuse_clip" if needs_size else "optional")
                if needs_size:
                    bad.add(clip)
                continue
        if not open_videos:
            report.counts["videos_found"] += 1
            continue
        try:
            n, w, h, fps = video_info(vp)
        except Exception as e:  # VideoReadError and whatever a broken container raises
            add(ERROR if need_video else WARNING, line, clip, str(e), "video_read" if need_video else "optional")
            if need_video:
                bad.add(clip)
            continue
        report.counts["videos_ok"] += 1
        report.frames.append(n)
        report.sizes[(w, h)] += 1
        if manifest is not None:       # keypoints refer to the original video's size
            h, w = orig_hw
        if clip in pose_shapes:
            shape, tp = pose_shapes[clip]
            if shape is not None and tuple(shape) != (h, w):
                same_aspect = abs(shape[0] * w - shape[1] * h) <= max(shape[0], shape[1], h, w)
                add(INFO if same_aspect else WARNING, line, clip,
                    f"pose img_shape {tuple(shape)} (h, w) differs from the video's ({h}, {w})",
                    "rescaled" if same_aspect else "misaligned")
            if tp != n:
                report.counts["pose_frames_differ"] += 1
    return bad


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def screen_split(release: MA52Release, split: str, *, modality: str = "rgb+pose", layout: str = LAYOUT,
                 hidden_ok: bool | None = None, check_videos: bool = True, findings: bool = True,
                 progress: bool = False, train_labels=None) -> SplitScreen:
    """Screen split ``split`` of ``release`` as check-data reports it: the list (each bad line), the pose
    source and the video folder (missing ones are findings), then ``screen_clips``. ``hidden_ok``: labels
    may be hidden (default: the test split, as ``MA52Dataset``); ``check_videos``: open every video (with
    PyAV; without it existence only); ``train_labels``: the training split's labels, to name the classes
    of this split that have no training clip."""
    need_video, need_pose = modality_needs(modality)
    hidden_ok = split == "test" if hidden_ok is None else bool(hidden_ok)
    lay = get_layout(layout)
    open_videos = check_videos and have_pyav()
    sr = SplitReport(split)
    out = SplitScreen(release, split, modality, lay.name, hidden_ok, open_videos, sr)
    root, parts = release.root, release.split(split)

    def add(severity, file, line, clip, message, action):
        out.problems.append(problem(severity, split, file, line, clip, message, action))

    try:
        lst = parts.list_file
    except FileNotFoundError as e:
        add(INFO if split == "test" else ERROR, root, None, None, str(e),
            "optional" if split == "test" else "refuse_split")
        return out
    sr.files["list"] = str(lst)
    try:
        parsed = parts.lines(hidden_ok)
    except AnnotationError as e:
        add(ERROR, lst, None, None, str(e), "refuse_split")
        return out
    for line, clip, label, why in parsed:
        if why is not None:
            add(ERROR, lst, line, clip, why, "refuse_split")
            sr.bad += 1
        else:
            out.entries.append((clip, label, line))
    entries = out.entries
    sr.clips = len(entries) + sr.bad
    if not entries:
        add(ERROR, lst, None, None, "no usable clips listed", "refuse_split")
        return out
    sr.labels.update(l for _, l, _ in entries)
    if split == "test" and set(sr.labels) <= {0, -1}:
        add(INFO, lst, None, None, "every label is 0 or missing (hidden test labels)", "hidden")
    if train_labels is not None and split not in ("train", "test"):
        unseen = sorted(set(sr.labels) - set(train_labels))
        if unseen:
            add(WARNING, lst, None, None, f"classes {unseen} have no training clip", "no_train_clips")

    src = p = None
    try:
        p = parts.pose_path
        if p is None:
            if need_pose:
                add(ERROR, root, None, None, f"no pose source found: {parts.no_pose_reason()}", "refuse_split")
        else:
            sr.files["pose"] = str(p)
            src = parts.pose_source(lay)
    except AnnotationError as e:
        add(ERROR, p or release.pose or root, None, None, str(e), "refuse_split")

    vdir = manifest = None
    try:
        # Both found, or neither: a prepared folder that is not one (no manifest) must not leave the raw
        # folder behind as if it had been checked.
        vdir, manifest = parts.video_parts(entries[0][0])
        sr.files["videos"] = str(vdir) + (" (prepared)" if manifest is not None else "")
    except FileNotFoundError as e:
        add(ERROR if need_video else INFO, release.videos or root, None, None, str(e),
            "refuse_split" if need_video else "optional")
    bad = screen_clips(entries, split=split, list_file=lst, pose=src, video_dir=vdir, manifest=manifest,
                       need_video=need_video, open_videos=open_videos, findings=findings, progress=progress,
                       report=sr, problems=out.problems)
    sr.bad += len(bad)
    return out
