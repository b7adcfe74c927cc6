"""MA-52 (Micro-Action-52) readers and dataset.

Files (the public release's layout, as in VUT-HFUT/Micro-Action's mmaction2 data folder):
```
root/
  {train,val,test}_list_videos.txt   "name.mp4 label" per line, CRLF, last line may lack a newline
                                     (also looked for under root/annotations/)
  label_name.txt                     "id<TAB>name" per line
  videos_{train,val,test}/name.mp4   (or root/{split}/, root/videos/{split}/)
  pose source (optional)             an mmaction-style pickle or a folder of OpenPose JSON folders
```
Hidden test labels: the public ``test_list_videos.txt`` writes ``0`` for every clip. ``read_list`` returns
what the file says, mapping a missing label to ``-1``; ``MA52Dataset`` reports ``label = body_label = -1``
for every clip when ``hide_labels`` is True (default: ``split == "test"``), so placeholder zeros never
reach a metric.

Keypoint sources:
- mmaction/pyskl pose pickle: a list of dicts, or a dict whose ``"annotations"`` is that list; each with
  ``frame_dir`` (clip name without extension), ``label``, ``img_shape`` (h, w), ``total_frames``,
  ``keypoint [M, T, J, 2]`` and ``keypoint_score [M, T, J]`` (or ``keypoint [M, T, J, 3]``). With several
  people (M > 1) we take the one with the highest mean score over the clip.
- OpenPose JSON: ``<folder>/<clip name without extension>/*.json``, one file per frame
  (``mdn_fast.data.openpose_json``).
Pose frames are matched to video frames proportionally when the two counts differ. Keypoints go through
exactly the crop/resize of the frames (``mdn_fast.data.video``): they come out in 224x224 pixels.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .layouts import get_layout
# importing layouts_extra registers coco18_hands28 / coco17 / miga22
from .layouts_extra import HAND_BLOCKS, hand_groups_swapped, swap_hand_groups
from . import openpose_json
from .video import (apply_to_frames, apply_to_keypoints, count_frames, decode_frames, frame_map,
                    make_crop_plan, tsn_sample_indices)

NUM_CLASSES = 52
NUM_BODY_CLASSES = 7
BODY_NAMES = ("body", "head", "upper limb", "lower limb", "body-hand", "head-hand", "leg-hand")
#: Body class of each action id (facts.md): 0-4 body, 5-10 head, 11-23 upper limb, 24-31 lower limb,
#: 32-37 body-hand, 38-47 head-hand, 48-51 leg-hand.
BODY_OF_ACTION = tuple([0] * 5 + [1] * 6 + [2] * 13 + [3] * 8 + [4] * 6 + [5] * 10 + [6] * 4)
assert len(BODY_OF_ACTION) == NUM_CLASSES
MODALITIES = ("rgb+pose", "rgb", "pose")
SPLITS = ("train", "val", "test")


class AnnotationError(ValueError):
    """Malformed annotation file; the message names the file, the line, what was expected and found."""


def body_of_action(label: int) -> int:
    """Body class of an action id; -1 (hidden) maps to -1."""
    if label == -1:
        return -1
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label: expected an action id in 0..{NUM_CLASSES - 1} or -1, got {label}")
    return BODY_OF_ACTION[label]


def _lines(path: Path):
    """(line number, text) for each line, CRLF/LF/CR endings, final newline optional, BOM dropped."""
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file does not exist")
    text = path.read_bytes().decode("utf-8-sig")
    for n, line in enumerate(text.splitlines(), start=1):
        yield n, line


def read_list(path, num_classes: int = NUM_CLASSES) -> list[tuple[str, int]]:
    """``{split}_list_videos.txt`` -> ``[(name, label)]``; a missing label (hidden test) -> -1.

    Blank lines are skipped. Each other line must be ``name`` or ``name label`` with ``label`` an
    integer in ``0..num_classes-1`` or ``-1``; anything else raises ``AnnotationError`` naming the line.
    """
    path = Path(path)
    out, seen = [], {}
    for n, line in _lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2:
            raise AnnotationError(f"{path}, line {n}: expected 'name.mp4 label' (2 fields), found "
                                  f"{len(fields)} fields: {line.strip()!r}")
        name = fields[0]
        if len(fields) == 1:
            label = -1
        else:
            try:
                label = int(fields[1])
            except ValueError:
                raise AnnotationError(f"{path}, line {n}: expected an integer label, found {fields[1]!r}") from None
            if not (0 <= label < num_classes or label == -1):
                raise AnnotationError(f"{path}, line {n}: expected a label in 0..{num_classes - 1} (or -1 for "
                                      f"hidden), found {label}")
        if name in seen:
            raise AnnotationError(f"{path}, line {n}: clip {name!r} already listed on line {seen[name]}")
        seen[name] = n
        out.append((name, label))
    if not out:
        raise AnnotationError(f"{path}: no clips listed (expected 'name.mp4 label' lines)")
    return out


def read_label_names(path) -> list[str]:
    """``label_name.txt`` (``id<TAB>name``) -> names indexed by id; ids must be 0..N-1, each once."""
    path = Path(path)
    names: dict[int, tuple[str, int]] = {}
    for n, line in _lines(path):
        if not line.strip():
            continue
        parts = line.split("\t", 1) if "\t" in line else line.split(None, 1)
        if len(parts) != 2 or not parts[1].strip():
            raise AnnotationError(f"{path}, line {n}: expected 'id<TAB>name', found {line.strip()!r}")
        try:
            i = int(parts[0])
        except ValueError:
            raise AnnotationError(f"{path}, line {n}: expected an integer id, found {parts[0]!r}") from None
        if i in names:
            raise AnnotationError(f"{path}, line {n}: id {i} already defined on line {names[i][1]}")
        names[i] = (parts[1].strip(), n)
    if not names:
        raise AnnotationError(f"{path}: no 'id<TAB>name' lines")
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        raise AnnotationError(f"{path}: ids must be 0..{len(names) - 1}; missing {missing[:5]}, "
                              f"found ids up to {max(names)}")
    return [names[i][0] for i in range(len(names))]


# ------------------------------------------------------------------------------------------ pose sources
def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


class PosePickle:
    """An mmaction/pyskl-style pose pickle, indexed by clip name (validated at load)."""

    def __init__(self, path, layout):
        self.path = Path(path)
        self.layout = get_layout(layout)
        if not self.path.is_file():
            raise AnnotationError(f"{self.path}: pose pickle does not exist")
        with open(self.path, "rb") as f:
            try:
                obj = pickle.load(f)
            except Exception as e:
                raise AnnotationError(f"{self.path}: cannot unpickle ({type(e).__name__}: {e})") from None
        anns = obj.get("annotations") if isinstance(obj, dict) else obj
        if not isinstance(anns, (list, tuple)):
            raise AnnotationError(f"{self.path}: expected a list of annotation dicts (or a dict with an "
                                  f"'annotations' list), found {type(obj).__name__}")
        J = self.layout.num_joints
        self.entries: dict[str, dict] = {}
        for i, a in enumerate(anns):
            where = f"{self.path}: annotation {i}"
            if not isinstance(a, dict):
                raise AnnotationError(f"{where}: expected a dict, found {type(a).__name__}")
            miss = [k for k in ("frame_dir", "keypoint") if k not in a]
            if miss:
                raise AnnotationError(f"{where}: missing key(s) {miss}; has {sorted(a)}")
            where += f" (frame_dir {a['frame_dir']!r})"
            kp = np.asarray(a["keypoint"])
            if kp.ndim != 4 or kp.shape[2] != J or kp.shape[3] not in (2, 3) or kp.shape[0] < 1:
                raise AnnotationError(f"{where}: 'keypoint' has shape {tuple(kp.shape)}, expected [M, T, {J}, 2] "
                                      f"for layout {self.layout.name!r}")
            if kp.shape[3] == 2:
                if "keypoint_score" not in a:
                    raise AnnotationError(f"{where}: 'keypoint' is [M, T, J, 2] but 'keypoint_score' is missing")
                sc = np.asarray(a["keypoint_score"])
                if sc.shape != kp.shape[:3]:
                    raise AnnotationError(f"{where}: 'keypoint_score' has shape {tuple(sc.shape)}, expected "
                                          f"{tuple(kp.shape[:3])} (= keypoint's [M, T, J])")
            if "img_shape" in a and (len(tuple(a["img_shape"])) != 2):
                raise AnnotationError(f"{where}: 'img_shape' must be (height, width), found {a['img_shape']!r}")
            self.entries[str(a["frame_dir"])] = a

    def __contains__(self, name: str) -> bool:
        return _stem(name) in self.entries or name in self.entries

    def _entry(self, name: str) -> dict:
        a = self.entries.get(_stem(name), self.entries.get(name))
        if a is None:
            raise KeyError(f"{self.path}: no annotation with frame_dir {_stem(name)!r}")
        return a

    def clip(self, name: str) -> tuple[np.ndarray, tuple[int, int] | None]:
        """All frames of the best-scoring person: ``([T, J, 3] float32, img_shape or None)``."""
        a = self._entry(name)
        kp = np.asarray(a["keypoint"], dtype=np.float32)
        if kp.shape[3] == 3:
            full = kp
        else:
            full = np.concatenate([kp, np.asarray(a["keypoint_score"], np.float32)[..., None]], -1)
        best = int(np.argmax(full[..., 2].mean(axis=(1, 2)))) if full.shape[0] > 1 else 0
        out = np.nan_to_num(full[best], nan=0.0, posinf=0.0, neginf=0.0)
        shape = tuple(int(s) for s in a["img_shape"]) if "img_shape" in a else None
        return out, shape


class PoseJsonDir:
    """``<root>/<clip name without extension>/*.json`` (OpenPose per-frame output)."""

    def __init__(self, root, layout):
        self.root = Path(root)
        self.layout = get_layout(layout)
        if not self.root.is_dir():
            raise AnnotationError(f"{self.root}: OpenPose JSON root folder does not exist")

    def __contains__(self, name: str) -> bool:
        return (self.root / _stem(name)).is_dir()

    def num_frames(self, name: str) -> int:
        return len(openpose_json.frame_files(self.root / _stem(name)))

    def frames(self, name: str, indices) -> np.ndarray:
        return openpose_json.read_sequence(self.root / _stem(name), self.layout, indices)


def open_pose_source(path, layout):
    """A ``PosePickle`` for a file, a ``PoseJsonDir`` for a folder."""
    path = Path(path)
    if path.is_dir():
        return PoseJsonDir(path, layout)
    return PosePickle(path, layout)


# ------------------------------------------------------------------------------------------ dataset
def _first_existing(cands, what, is_dir=False):
    for c in cands:
        if (c.is_dir() if is_dir else c.is_file()):
            return c
    raise FileNotFoundError(f"{what}: none of these exist: {[str(c) for c in cands]}")


class MA52Dataset(torch.utils.data.Dataset):
    """MA-52 clips as ``{"frames": [T, 3, 224, 224], "keypoints": [T, J, 3], "label", "body_label"}``.

    ``label`` / ``body_label`` are Python ints as in ``SyntheticMicroActions``.
    ``frames`` (float32, ImageNet-normalised) is present for the rgb modalities; ``keypoints`` (float32,
    x, y in 224x224 crop pixels, confidence) whenever a pose source is available (required for the pose
    modalities; with ``"rgb"`` they give the entity boxes). ``label`` / ``body_label``
    (ints, -1 when hidden). T = ``num_segments`` (TSN sampling: random offset per segment when ``train``,
    segment centre otherwise). Random choices draw from torch's generator, so ``torch.manual_seed`` and
    DataLoader worker seeding make them reproducible.

    hand_order: for layouts with hand blocks (coco18_hands28), ``"auto"`` checks a pose pickle once
    (``hand_groups_swapped``) and swaps the blocks if the data put them the other way round;
    ``"as_is"`` trusts the layout; ``"swap"`` always swaps.
    """

    num_classes = NUM_CLASSES
    num_body_classes = NUM_BODY_CLASSES
    body_names = BODY_NAMES

    def __init__(self, root, split: str = "train", modality: str = "rgb+pose", layout: str = "coco18_hands28",
                 num_segments: int = 8, train: bool | None = None, *, pose=None, video_dir=None,
                 list_file=None, hide_labels: bool | None = None, hand_order: str = "auto",
                 short_side: int = 256, crop_size: int = 224):
        if modality not in MODALITIES:
            raise ValueError(f"modality: expected one of {MODALITIES}, got {modality!r}")
        if hand_order not in ("auto", "as_is", "swap"):
            raise ValueError(f"hand_order: expected 'auto', 'as_is' or 'swap', got {hand_order!r}")
        if num_segments < 1:
            raise ValueError(f"num_segments: expected >= 1, got {num_segments}")
        self.root = Path(root)
        self.split, self.modality = split, modality
        self._layout = get_layout(layout)
        self.layout = self._layout.name     # a name, as SyntheticMicroActions.layout
        self.num_segments = int(num_segments)
        self.train = (split == "train") if train is None else bool(train)
        self.hide_labels = (split == "test") if hide_labels is None else bool(hide_labels)
        self.short_side, self.crop_size = short_side, crop_size
        lst = Path(list_file) if list_file is not None else _first_existing(
            [self.root / f"{split}_list_videos.txt", self.root / "annotations" / f"{split}_list_videos.txt"],
            f"MA-52 list file for split {split!r}")
        self.list_file = lst
        self.items = read_list(lst)
        names_file = self.root / "label_name.txt"
        self.class_names = tuple(read_label_names(names_file)) if names_file.is_file() else None
        self.use_rgb = modality in ("rgb+pose", "rgb")
        self.video_dir = None
        if self.use_rgb or video_dir is not None:
            self.video_dir = Path(video_dir) if video_dir is not None else _first_existing(
                [self.root / f"videos_{split}", self.root / split, self.root / "videos" / split],
                f"MA-52 video folder for split {split!r}", is_dir=True)
        if pose is None:
            cands = [self.root / "pose" / f"{split}.pkl", self.root / f"pose_{split}.pkl",
                     self.root / "pose" / split, self.root / f"pose_{split}"]
            found = [c for c in cands if c.exists()]
            if not found and modality != "rgb":
                raise FileNotFoundError(f"MA-52 pose source for split {split!r} (modality {modality!r} needs "
                                        f"keypoints): none of {[str(c) for c in cands]} exist; pass pose=PATH")
            pose = found[0] if found else None
        self.pose = open_pose_source(pose, self._layout) if pose is not None else None
        self.swap_hands = hand_order == "swap"
        if hand_order == "auto" and isinstance(self.pose, PosePickle) and self._layout.name in HAND_BLOCKS:
            sample = [self.pose.clip(n)[0] for n in list(self.pose.entries)[:256]]
            self.swap_hands = bool(hand_groups_swapped(np.concatenate(sample), self._layout)) if sample else False

    def __len__(self) -> int:
        return len(self.items)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item()))

    def __getitem__(self, i: int) -> dict:
        name, label = self.items[i]
        rng = self._rng() if self.train else None
        out: dict = {}
        kp_all = None
        if self.use_rgb:
            vpath = self.video_dir / name
            n = count_frames(vpath)
            idx = tsn_sample_indices(n, self.num_segments, self.train, rng)
            frames = decode_frames(vpath, idx)
            h, w = frames.shape[1:3]
        else:
            frames = None
        if self.pose is not None:
            if name not in self.pose:
                raise KeyError(f"{self.list_file}: clip {name!r} has no keypoints in pose source "
                               f"{getattr(self.pose, 'path', getattr(self.pose, 'root', '?'))}")
            if isinstance(self.pose, PosePickle):
                seq, shape = self.pose.clip(name)
                n_pose = seq.shape[0]
            else:
                seq, shape, n_pose = None, None, self.pose.num_frames(name)
            if frames is None:
                idx = tsn_sample_indices(n_pose, self.num_segments, self.train, rng)
                pidx = idx
                if shape is None:  # JSON has no frame size: read it from the video header
                    if self.video_dir is None:
                        raise FileNotFoundError(f"clip {name!r}: OpenPose JSON carries no frame size; pass "
                                                f"video_dir so it can be read from the video")
                    shape = decode_frames(self.video_dir / name, [0]).shape[1:3]
                h, w = shape
            else:
                pidx = frame_map(n_pose, n, idx)
            kp_all = seq[pidx] if seq is not None else self.pose.frames(name, pidx)
            if self.swap_hands:
                kp_all = swap_hand_groups(kp_all, self._layout)
        plan = make_crop_plan(h, w, self.train, rng, short_side=self.short_side, out=self.crop_size)
        if frames is not None:
            out["frames"] = apply_to_frames(frames, plan)
        if kp_all is not None:
            out["keypoints"] = torch.from_numpy(apply_to_keypoints(kp_all, plan))
        hidden = self.hide_labels
        out["label"] = -1 if hidden else int(label)
        out["body_label"] = -1 if hidden else body_of_action(label)
        return out

    def names(self) -> list[str]:
        return [n for n, _ in self.items]
