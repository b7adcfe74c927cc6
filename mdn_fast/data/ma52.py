"""MA-52 (Micro-Action-52): the dataset, and every MA-52 name in one place. The parts live in files
named after what they hold, re-exported here:

- ``ma52_annotations``: list files, ``label_name.txt``, the label sets, ``clip_key``;
- ``ma52_pose``: pose pickles and OpenPose JSON folders (``PosePickle``, ``PoseJsonDir``,
  ``pose_entry_problem``);
- ``ma52_release``: where a release's parts are (``MA52Release``, found once per split);
- ``ma52_screen``: which listed clips training can use (``screen_split``, ``BadClipsError``), the rules
  the dataset and ``check-data`` share;
- here: ``MA52Dataset`` (built from a release and its screen) and ``rescale_keypoints``.

Files: as the public release is downloaded (VUT-HFUT/Micro-Action), found as ``ma52_release`` says.
``MA52Dataset(lists=, videos=, pose=)`` overrides each part (a file, or a folder searched as above).
Clip names match with or without split prefixes and video extensions: the list's ``0003_01_0001.mp4``
is the pose pickle's ``frame_dir`` ``train/0003_01_0001`` (``clip_key``).

Hidden test labels: the public ``test_list_videos.txt`` writes ``0`` for every clip. ``read_list`` returns
what the file says, mapping a missing label to ``-1``; ``MA52Dataset`` reports ``label = body_label = -1``
for every clip when ``hide_labels`` is True (default: ``split == "test"``), so placeholder zeros never
reach a metric.

Keypoint sources: mmaction/pyskl pose pickles or OpenPose JSON folders (``ma52_pose``).
Pose frames are matched to video frames proportionally when the two counts differ; keypoints are scaled
from the pickle's ``img_shape`` to the video's size when the two differ (resized videos). Keypoints go
through exactly the crop/resize of the frames (``mdn_fast.data.video``): they come out in 224x224 pixels.

Prepared videos (``mdn_fast.data.prepare_videos``, ``mdn-fast prepare-videos``): smaller twins of the
clips plus a manifest of each clip's original size. ``MA52Dataset(prepared=DIR)`` reads them (a video
folder that holds a manifest is read as prepared without it); "the video's size" above is then the
ORIGINAL size from the manifest: the crop plan is made for it (the same random draws, the same geometry
as with the original videos) and applied to the smaller frames with ``CropPlan.for_frames``.

Bad clips (a listed clip without pose entry, a malformed entry, a missing video file) are found when the
dataset is built, by the clip screen ``check-data`` applies too (``mdn_fast.data.ma52_screen``;
``parse_list``: labels ``0..51``, -1 only in the hidden test split; ``pose_entry_problem``: shapes, numeric
arrays, ``img_shape``, ``total_frames``): by default the dataset refuses them with ``BadClipsError``
(an ``AnnotationError`` naming the file, line and reason, carrying the records); ``skip_bad_clips=True``
logs them and leaves them out. ``mdn_fast.data.check`` scans a whole release, videos included. A video
that turns out undecodable when a clip is read raises ``ClipReadError`` (a ``ValueError``: one line
naming the list line, the clip and the file, also when raised in a DataLoader worker).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..inputs import MODALITIES, modality_needs
from ..skeleton.layouts import get_layout
# importing layouts_extra registers coco18_hands28 / coco17 / miga22
from ..skeleton.layouts_extra import HAND_BLOCKS, hand_groups_swapped, swap_hand_groups
from .findings import SplitReport
from .ma52_annotations import (BODY_NAMES, BODY_OF_ACTION, LAYOUT, NUM_BODY_CLASSES, NUM_CLASSES, SPLITS,
                               VIDEO_EXTENSIONS, AnnotationError, body_of_action, clip_key, clip_prefix, listed_clips,
                               parse_list, read_label_names, read_list)
from .ma52_pose import (MAX_IMAGE_SIDE, MAX_POSE_FRAMES, PoseJsonDir, PosePickle, open_pose_source,
                        pose_entry_problem)
from .ma52_release import (MA52Release, MA52Split, find_list_file, find_pose_source, find_video_dir,
                           label_names_candidates, list_candidates, pose_candidates, resolve_video, video_dir_candidates)
from .ma52_screen import BadClipsError, SplitScreen, clip_errors, screen_clips, screen_split
from .prepare_videos import resolve_prepared
from .video_decode import ClipReadError, VideoReadError, decode_sampled, video_frame_size
from .video_sampling import frame_map, tsn_sample_indices
from .video_transforms import apply_to_frames, apply_to_keypoints, make_crop_plan

__all__ = [
    "NUM_CLASSES", "NUM_BODY_CLASSES", "BODY_NAMES", "BODY_OF_ACTION", "LAYOUT", "MODALITIES", "SPLITS",
    "VIDEO_EXTENSIONS",
    "AnnotationError", "body_of_action", "clip_key", "clip_prefix", "parse_list", "read_list", "listed_clips",
    "read_label_names", "MAX_POSE_FRAMES", "MAX_IMAGE_SIDE", "pose_entry_problem", "PosePickle", "PoseJsonDir",
    "open_pose_source", "MA52Release", "MA52Split", "modality_needs", "list_candidates", "video_dir_candidates",
    "pose_candidates", "label_names_candidates", "find_list_file", "find_video_dir", "resolve_video",
    "find_pose_source", "resolve_prepared", "BadClipsError", "SplitScreen", "clip_errors", "screen_clips",
    "screen_split",
    "MA52Dataset", "rescale_keypoints",
]
log = logging.getLogger(__name__)


class MA52Dataset(torch.utils.data.Dataset):
    """MA-52 clips as ``{"frames": [T, 3, 224, 224], "keypoints": [T, J, 3], "label", "body_label"}``.

    ``label`` / ``body_label`` are Python ints as in ``SyntheticMicroActions``.
    ``frames`` (float32, ImageNet-normalised) is present for the rgb modalities; ``keypoints`` (float32,
    x, y in 224x224 crop pixels, confidence) whenever a pose source is available (required for the pose
    modalities; with ``"rgb"`` they give the entity boxes). ``label`` / ``body_label``
    (ints, -1 when hidden). T = ``num_segments`` (TSN sampling: random offset per segment when ``train``,
    segment centre otherwise). Random choices draw from torch's generator, so ``torch.manual_seed`` and
    DataLoader worker seeding make them reproducible.

    Where the files are (module docstring): found under ``root`` as the release is downloaded;
    ``lists`` (list file or folder), ``videos`` (folder) and ``pose`` (pickle, folder of pickles or of
    OpenPose JSON) override each part. ``list_file`` / ``video_dir`` are older names of the first two.
    ``prepared``: the output folder of ``prepare_videos`` for these videos (``resolve_prepared``): the
    clips are decoded from there, keypoints mapped through each clip's original size (its manifest).
    ``self.prepared`` is that manifest (None for original videos).

    hand_order: for layouts with hand blocks (coco18_hands28), ``"auto"`` checks a pose pickle once
    (``hand_groups_swapped``) and swaps the blocks if the data put them the other way round;
    ``"as_is"`` trusts the layout (for coco18_hands28 the public MA-52 order: 18–22 left hand, 23–27
    right hand); ``"swap"`` always swaps.

    skip_bad_clips: a listed clip without usable keypoints (no pose entry, a malformed one) or whose
    video file is missing is refused by default (``BadClipsError``, an ``AnnotationError`` naming the list
    file, line and reason, with the records in ``problems``); True logs it and leaves it out
    (``bad_clips`` holds ``(name, line, reason)``; not logged when a ``screen`` is given: whoever ran the
    screen has its bad clips and reports them). Either way a split left with no usable clip is refused.
    ``exclude``: clip names to leave out (e.g. the bad clips of a ``mdn_fast.data.check`` report, video
    decoding failures included).

    release: an ``MA52Release`` already found (then ``root`` is its root, and ``lists`` / ``videos`` /
    ``pose`` / ``prepared`` are not given): its parts, the opened pose source included, are used as found.
    screen: the ``screen_split`` result of this split of ``release`` (same modality, layout, hidden labels):
    its findings decide the bad clips (videos it opened included) and nothing is screened again.
    """

    num_classes = NUM_CLASSES
    num_body_classes = NUM_BODY_CLASSES
    body_names = BODY_NAMES

    def __init__(self, root, split: str = "train", modality: str = "rgb+pose", layout: str = LAYOUT,
                 num_segments: int = 8, train: bool | None = None, *, pose=None, videos=None, lists=None,
                 video_dir=None, list_file=None, hide_labels: bool | None = None, hand_order: str = "auto",
                 short_side: int = 256, crop_size: int = 224, skip_bad_clips: bool = False, exclude=(),
                 prepared=None, release: MA52Release | None = None, screen: SplitScreen | None = None):
        need_video, need_pose = modality_needs(modality)
        if hand_order not in ("auto", "as_is", "swap"):
            raise ValueError(f"hand_order: expected 'auto', 'as_is' or 'swap', got {hand_order!r}")
        if num_segments < 1:
            raise ValueError(f"num_segments: expected >= 1, got {num_segments}")
        for new, old, a, b in (("lists", "list_file", lists, list_file), ("videos", "video_dir", videos, video_dir)):
            if a is not None and b is not None:
                raise ValueError(f"{new}/{old}: give one of them ({old} is the older name of {new})")
        lists = lists if lists is not None else list_file
        videos = videos if videos is not None else video_dir
        if release is None:
            release = MA52Release(root, lists=lists, videos=videos, pose=pose, prepared=prepared)
        elif any(v is not None for v in (lists, videos, pose, prepared)) or Path(root) != release.root:
            raise ValueError(f"release: {release!r} already says where the files are; give root={str(release.root)!r} "
                             f"and no lists/videos/pose/prepared with it")
        self.root = release.root
        self.split, self.modality = split, modality
        self._layout = get_layout(layout)
        self.layout = self._layout.name     # a name, as SyntheticMicroActions.layout
        self.num_segments = int(num_segments)
        self.train = (split == "train") if train is None else bool(train)
        self.hide_labels = (split == "test") if hide_labels is None else bool(hide_labels)
        self.short_side, self.crop_size = short_side, crop_size
        if screen is not None and (screen.release is not release or screen.split != split or screen.modality != modality
                                   or screen.layout != self.layout or screen.hidden_ok != self.hide_labels):
            raise ValueError(f"screen: made for split {screen.split!r}, modality {screen.modality!r}, layout "
                             f"{screen.layout!r}, hidden labels {screen.hidden_ok} of {screen.release!r}; this "
                             f"dataset is split {split!r}, modality {modality!r}, layout {self.layout!r}, hidden "
                             f"labels {self.hide_labels} of {release!r}: pass screen_split(release, split, ...) "
                             f"with the same values, or no screen")
        parts = release.split(split)
        self.list_file = parts.list_file
        # -1 / no label only where labels are hidden: anywhere else it is no class (IndexError in the loss)
        entries = listed_clips(self.list_file, parts.lines(self.hide_labels))
        self.num_listed = len(entries)
        names_file = release.names_file
        self.class_names = tuple(read_label_names(names_file)) if names_file is not None else None
        self.class_names_file = names_file      # where they come from (named when they do not fit the classes)
        self.use_rgb = need_video
        self.video_dir, self.prepared = None, None
        if self.use_rgb or release.videos is not None or release.prepared is not None:
            self.video_dir, self.prepared = parts.video_parts(entries[0][0])
        if parts.pose_path is None and need_pose:
            raise FileNotFoundError(f"MA-52 pose source for split {split!r} (modality {modality!r} needs keypoints): "
                                    f"{parts.no_pose_reason()}; pass pose=PATH")
        self.pose = parts.pose_source(self._layout)

        # Bad clips: found now (the clip screen's cheap rules, or the screen given), refused or left out,
        # never a crash in a worker mid-epoch.
        excluded = {clip_key(n) for n in exclude}
        entries_kept = [e for e in entries if clip_key(e[0]) not in excluded]
        if screen is None:
            problems: list = []
            screen_clips(entries_kept, split=split, list_file=self.list_file, pose=self.pose, video_dir=self.video_dir,
                         manifest=self.prepared, need_video=self.use_rgb, open_videos=False, findings=False,
                         progress=False, report=SplitReport(split), problems=problems)
            errors = clip_errors(problems)
        else:
            errors = screen.clip_errors()
        bad = [errors[name] for name, _, _ in entries_kept if name in errors]
        #: ``(name, line, reason)`` of each clip left out (skip_bad_clips)
        self.bad_clips: list[tuple[str, int, str]] = [(p.clip, p.line, p.message) for p in bad]
        keep = [e for e in entries_kept if e[0] not in errors]
        if bad:
            if not keep:
                hint = ""
                if isinstance(self.pose, PosePickle) and all("no annotation" in p.message for p in bad):
                    hint = (f" (no listed clip is in {self.pose.path}: list names look like {entries[0][0]!r}, "
                            f"frame_dirs like {next(iter(self.pose.entries), None)!r}; wrong split or file?)")
                raise BadClipsError(self.list_file, bad, len(entries), hint, skippable=False)
            if not skip_bad_clips:
                raise BadClipsError(self.list_file, bad, len(entries),
                                    ". Run mdn_fast.data.check.check_dataset (mdn-fast check-data) for the full "
                                    "list, or pass skip_bad_clips=True to leave them out")
            if screen is None:
                summary = BadClipsError(self.list_file, bad, len(entries)).summary
                log.warning("%s; leaving them out (skip_bad_clips)", summary)
                for name, line, reason in self.bad_clips[1:]:
                    log.info("%s, line %d: skipping clip %r: %s", self.list_file, line, name, reason)
        self.items = [(name, label) for name, label, _ in keep]
        self.lines = [line for _, _, line in keep]

        self.swap_hands = hand_order == "swap"
        if hand_order == "auto" and isinstance(self.pose, PosePickle) and self._layout.name in HAND_BLOCKS:
            usable = [fd for fd in self.pose.entries if fd not in self.pose.problems][:256]
            sample = [self.pose.clip(fd)[0] for fd in usable]
            self.swap_hands = bool(hand_groups_swapped(np.concatenate(sample), self._layout)) if sample else False

    def __len__(self) -> int:
        return len(self.items)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item()))

    def video_path(self, name) -> Path:
        return resolve_video(self.video_dir, name)

    def original_size(self, name) -> tuple[int, int]:
        """``(h, w)`` of clip ``name``'s original video: the prepared manifest's entry (the pixel units of
        the keypoints), else the video header."""
        if self.prepared is None:
            return video_frame_size(self.video_path(name))
        rel = self.video_path(name).relative_to(self.video_dir).as_posix()
        return self.prepared.original_size(rel)

    def __getitem__(self, i: int) -> dict:
        name, label = self.items[i]
        rng = self._rng() if self.train else None
        out: dict = {}
        kp_all = None
        if self.use_rgb:
            # one open of the file: frame count, TSN indices (drawn from rng first, as before), decoding
            try:
                frames, idx, n = decode_sampled(self.video_path(name), self.num_segments, self.train, rng)
            except VideoReadError as e:   # one line naming the clip, also out of a DataLoader worker
                raise ClipReadError(f"{self.list_file}, line {self.lines[i]}: clip {name!r}: {e}; leave it out "
                                    f"with --skip-bad-clips (skip_bad_clips=True: `mdn-fast check-data` finds "
                                    f"such clips) or replace the file") from None
            # the size the keypoints and the crop plan refer to: the ORIGINAL video's (prepared: manifest)
            h, w = self.original_size(name) if self.prepared is not None else frames.shape[1:3]
        else:
            frames = None
        if self.pose is not None:
            if isinstance(self.pose, PosePickle):
                seq, shape = self.pose.clip(name, self.split)
                n_pose = seq.shape[0]
            else:
                seq, shape, n_pose = None, None, self.pose.num_frames(name)
            if frames is None:
                idx = tsn_sample_indices(n_pose, self.num_segments, self.train, rng)
                pidx = idx
                if shape is None:  # JSON has no frame size: the original video's (header or manifest)
                    if self.video_dir is None:
                        raise FileNotFoundError(f"clip {name!r}: OpenPose JSON carries no frame size; pass "
                                                f"videos=PATH so it can be read from the video")
                    shape = self.original_size(name)
                h, w = shape
            else:
                pidx = frame_map(n_pose, n, idx)
            kp_all = seq[pidx] if seq is not None else self.pose.frames(name, pidx)
            if frames is not None and shape is not None and tuple(shape) != (h, w):
                kp_all = rescale_keypoints(kp_all, shape, (h, w))
            if self.swap_hands:
                kp_all = swap_hand_groups(kp_all, self._layout)
        plan = make_crop_plan(h, w, self.train, rng, short_side=self.short_side, out=self.crop_size)
        if frames is not None:
            plan = plan.for_frames(*frames.shape[1:3])   # prepared: the same crop in the smaller frames
            out["frames"] = apply_to_frames(frames, plan)
        if kp_all is not None:
            out["keypoints"] = torch.from_numpy(apply_to_keypoints(kp_all, plan))
        hidden = self.hide_labels
        out["label"] = -1 if hidden else int(label)
        out["body_label"] = -1 if hidden else body_of_action(label)
        return out

    def names(self) -> list[str]:
        return [n for n, _ in self.items]


def rescale_keypoints(kp: np.ndarray, src_hw, dst_hw) -> np.ndarray:
    """Keypoints of a ``src_hw`` frame in the pixels of a ``dst_hw`` frame (a resized video: the pose
    pickle's ``img_shape`` differs from the decoded frames). Pixel-index convention of
    ``mdn_fast.data.video``: ``x -> (x + .5) s - .5``; missing joints stay ``(0, 0, 0)``."""
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    out = np.array(kp, dtype=np.float32, copy=True)
    ok = out[..., 2] > 0
    out[..., 0] = np.where(ok, (out[..., 0] + 0.5) * sx - 0.5, 0.0)
    out[..., 1] = np.where(ok, (out[..., 1] + 0.5) * sy - 0.5, 0.0)
    return out
