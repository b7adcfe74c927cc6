"""MA-52 (Micro-Action-52) readers and dataset.

Files, as the public release is downloaded (VUT-HFUT/Micro-Action), every part found by default:
```
root/
  {train,val,test}_list_videos.txt   "name.mp4 label" per line, CRLF, last line may lack a newline
                                     (at the root or under root/annotations/)
  label_name.txt                     "id<TAB>name" per line (root or annotations/)
  raw_videos/                        the clips: raw_videos/{split}/name.mp4 or raw_videos/name.mp4
                                     (also videos_{split}/, {split}/, videos/{split}/, videos/)
  MA-52_openpose_28kp/MA52_{split}.pkl   pose pickles (also MA52_{split}.pkl, pose/{split}.pkl,
                                     pose_{split}.pkl, or folders of OpenPose JSON: pose/{split}/<clip>/)
```
``MA52Dataset(lists=, videos=, pose=)`` overrides each part (a file, or a folder searched as above).
Clip names match with or without split prefixes and video extensions: the list's ``0003_01_0001.mp4``
is the pose pickle's ``frame_dir`` ``train/0003_01_0001`` (``clip_key``).

Hidden test labels: the public ``test_list_videos.txt`` writes ``0`` for every clip. ``read_list`` returns
what the file says, mapping a missing label to ``-1``; ``MA52Dataset`` reports ``label = body_label = -1``
for every clip when ``hide_labels`` is True (default: ``split == "test"``), so placeholder zeros never
reach a metric.

Keypoint sources:
- mmaction/pyskl pose pickle (read with the restricted unpickler ``mdn_fast.data.safe_pickle``: a crafted
  file cannot run code): a list of dicts, or a dict whose ``"annotations"`` is that list; each with
  ``frame_dir`` (clip name, maybe with a split prefix, without extension), ``label``, ``img_shape``
  (h, w), ``total_frames``, ``keypoint [M, T, J, 2]`` and ``keypoint_score [M, T, J]``. With several
  people (M > 1) we take the one with the highest mean score over the clip. A clip without detections
  (``keypoint`` of shape ``(0, T, J, 2)``, as pyskl writes it) loads as T frames of missing joints
  (every entity absent). ``keypoint [M, T, J, 3]`` is refused: pyskl stores 3-D keypoints (x, y, z) that
  way, not (x, y, score).
- OpenPose JSON: ``<folder>/<clip name without extension>/*.json``, one file per frame
  (``mdn_fast.data.openpose_json``).
Pose frames are matched to video frames proportionally when the two counts differ; keypoints are scaled
from the pickle's ``img_shape`` to the video's size when the two differ (resized videos). Keypoints go
through exactly the crop/resize of the frames (``mdn_fast.data.video``): they come out in 224x224 pixels.

Prepared videos (``mdn_fast.data.prepare_videos``, ``mdn-fast prepare-videos``): smaller twins of the
clips plus a manifest of each clip's original size. ``MA52Dataset(prepared=DIR)`` reads them (a video
folder that holds a manifest is read as prepared without it); "the video's size" above is then the
ORIGINAL size from the manifest: the crop plan is made for it (the same random draws, the same geometry
as with the original videos) and applied to the smaller frames with ``CropPlan.for_frames``.

Bad clips (a listed clip without pose entry, a malformed entry, a missing video file) are found when the
dataset is built: by default it refuses them with the file, line and reason (``mdn_fast.data.check``
scans a whole release, videos included); ``skip_bad_clips=True`` logs them and leaves them out. The rules
are the ones ``check-data`` applies (``parse_list``: labels ``0..51``, -1 only in the hidden test split;
``pose_entry_problem``: shapes, numeric arrays, ``img_shape``, ``total_frames``). A video that turns out
undecodable when a clip is read raises ``ClipReadError`` (a ``ValueError``: one line naming the list
line, the clip and the file, also when raised in a DataLoader worker).
"""
from __future__ import annotations

import codecs
import logging
from pathlib import Path

import numpy as np
import torch

from ..skeleton.layouts import get_layout
from ..skeleton.validate import as_integer
# importing layouts_extra registers coco18_hands28 / coco17 / miga22
from ..skeleton.layouts_extra import HAND_BLOCKS, hand_groups_swapped, swap_hand_groups
from . import openpose_json, safe_pickle
from .prepare_videos import resolve_prepared
from .video import (ClipReadError, VideoReadError, apply_to_frames, apply_to_keypoints, decode_sampled, frame_map,
                    make_crop_plan, tsn_sample_indices, video_frame_size)

NUM_CLASSES = 52
NUM_BODY_CLASSES = 7
BODY_NAMES = ("body", "head", "upper limb", "lower limb", "body-hand", "head-hand", "leg-hand")
#: Body class of each action id (facts.md): 0-4 body, 5-10 head, 11-23 upper limb, 24-31 lower limb,
#: 32-37 body-hand, 38-47 head-hand, 48-51 leg-hand.
BODY_OF_ACTION = tuple([0] * 5 + [1] * 6 + [2] * 13 + [3] * 8 + [4] * 6 + [5] * 10 + [6] * 4)
assert len(BODY_OF_ACTION) == NUM_CLASSES
MODALITIES = ("rgb+pose", "rgb", "pose")
SPLITS = ("train", "val", "test")
#: Extensions ``clip_key`` strips from a clip name.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
log = logging.getLogger(__name__)


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
    """``(line number, text, problem)`` for each line: CRLF/LF/CR endings, final newline optional, UTF-8
    BOM dropped. Each line is decoded on its own: one that is not UTF-8 gives its text with the bad
    bytes replaced and ``problem`` saying where (None for a good line), so a reader names the line and
    the lines after it are still read."""
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file does not exist")
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise AnnotationError(f"{path}: the file is UTF-16 text; save it as UTF-8 (or ASCII)")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    for n, raw in enumerate(data.splitlines(), start=1):
        try:
            yield n, raw.decode("utf-8"), None
        except UnicodeDecodeError as e:
            yield n, raw.decode("utf-8", "replace"), (
                f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); save the file as UTF-8")


def parse_list(path, num_classes: int = NUM_CLASSES, *, hidden_ok: bool = True
               ) -> list[tuple[int, str | None, int, str | None]]:
    """Every non-blank line of a list file as ``(line number, name, label, problem)``; ``problem`` is
    None for a good line, else why the line is unusable (``name``/``label`` then best effort). Used by
    ``read_list`` (which raises on the first problem) and by ``mdn_fast.data.check`` (which reports all),
    so the dataset and ``check-data`` apply the same rules.

    Labels: integers in ``0..num_classes-1``; ``hidden_ok`` (a split whose labels are hidden, the test
    split) also accepts ``-1`` or no label (read as -1). Elsewhere -1 is no class: training would fail
    on it at the first batch, so it is a bad line."""
    path = Path(path)
    out, seen = [], {}
    for n, line, bad_text in _lines(path):
        fields = line.split()
        if not fields:
            continue
        name, label, problem = fields[0], -1, bad_text
        if problem is not None:
            pass
        elif len(fields) > 2:
            problem = (f"expected 'name.mp4 label' (2 fields), found {len(fields)} fields: {line.strip()!r}")
        elif len(fields) == 2:
            try:
                label = int(fields[1])
            except ValueError:
                problem = f"expected an integer label, found {fields[1]!r}"
            else:
                if not (0 <= label < num_classes or (label == -1 and hidden_ok)):
                    problem = (f"expected a label in 0..{num_classes - 1} (or -1 for hidden), found {label}"
                               if hidden_ok or label != -1 else
                               f"expected a label in 0..{num_classes - 1}, found -1 (-1 means hidden, which "
                               f"only the test split may be); give the clip its class id or remove the line")
        elif not hidden_ok:
            problem = (f"expected 'name.mp4 label', found no label (only the hidden test split may omit "
                       f"labels); add the clip's class id (0..{num_classes - 1})")
        if problem is None and name in seen:
            problem = f"clip {name!r} already listed on line {seen[name]}"
        seen.setdefault(name, n)
        out.append((n, name, label, problem))
    return out


def read_list(path, num_classes: int = NUM_CLASSES, *, with_lines: bool = False, hidden_ok: bool = True
              ) -> list[tuple]:
    """``{split}_list_videos.txt`` -> ``[(name, label)]`` (``[(name, label, line)]`` with ``with_lines``);
    a missing label (hidden test) -> -1.

    Blank lines are skipped. Each other line must be ``name`` or ``name label`` with ``label`` an
    integer in ``0..num_classes-1`` or ``-1`` (``-1`` and ``name`` alone only with ``hidden_ok``); anything
    else (a line that is not UTF-8 included) raises ``AnnotationError`` naming the line (``parse_list``).
    """
    path = Path(path)
    out = []
    for n, name, label, problem in parse_list(path, num_classes, hidden_ok=hidden_ok):
        if problem is not None:
            raise AnnotationError(f"{path}, line {n}: {problem}")
        out.append((name, label, n) if with_lines else (name, label))
    if not out:
        raise AnnotationError(f"{path}: no clips listed (expected 'name.mp4 label' lines)")
    return out


def read_label_names(path) -> list[str]:
    """``label_name.txt`` (``id<TAB>name``) -> names indexed by id; ids must be 0..N-1, each once."""
    path = Path(path)
    names: dict[int, tuple[str, int]] = {}
    for n, line, bad_text in _lines(path):
        if bad_text is not None:
            raise AnnotationError(f"{path}, line {n}: {bad_text}")
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
def clip_key(name) -> str:
    """A clip's name without folders and video extension: ``"train/0003_01_0001"``,
    ``"0003_01_0001.mp4"`` and ``"raw_videos/train/0003_01_0001.mp4"`` all give ``"0003_01_0001"``."""
    base = str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    return stem if dot and stem and f".{ext.lower()}" in VIDEO_EXTENSIONS else base


def _prefix(name) -> str:
    """The folder part of a name (``"train"`` for ``"train/0003_01_0001"``), "" when none."""
    n = str(name).replace("\\", "/").rstrip("/")
    return n.rsplit("/", 1)[0] if "/" in n else ""


#: Bounds of the pose-pickle fields that size an allocation: ``total_frames`` of a clip without
#: detections (T frames of missing joints are made from it) and ``img_shape`` (a video frame's side).
MAX_POSE_FRAMES = 100_000
MAX_IMAGE_SIDE = 65_536


def _what(v) -> str:
    """A short description of a value for a message: its type, and dtype/shape for an array."""
    if isinstance(v, np.ndarray):
        return f"an array of dtype {v.dtype}, shape {tuple(v.shape)}"
    return f"a {type(v).__name__}" + (f" {v!r}" if isinstance(v, (str, bytes, int, float)) and len(repr(v)) < 40 else "")


def _numeric_array(a, key: str):
    """``(array, None)`` for a numeric (int/float) field, else ``(None, why)``."""
    v = a[key]
    try:
        arr = np.asarray(v)
    except Exception as e:  # ragged lists and the like
        return None, f"{key!r} is not an array ({type(e).__name__}: {e})"
    if arr.dtype.kind in "fiu":
        return arr, None
    if isinstance(v, np.ndarray) and v.dtype.kind != "O":
        found = f"an array of dtype {v.dtype}"
    elif isinstance(v, (list, tuple, np.ndarray)):
        kinds = sorted({type(x).__name__ for x in arr.reshape(-1)[:1000]})
        found = f"{'an array' if isinstance(v, np.ndarray) else 'a list'} of {'/'.join(kinds) or 'no'} values"
    else:
        found = _what(v)
    return None, f"{key!r} holds {found}, expected numbers"


def pose_entry_problem(a, num_joints: int) -> str | None:
    """Why one pose-pickle annotation cannot be used (None when it can). The rules, shared by the dataset
    and ``check-data`` (both call this): ``keypoint`` a numeric array ``[M, T, J, 2]`` (C = 3 refused:
    pyskl's 3-D keypoints) and ``keypoint_score`` a numeric array ``[M, T, J]``; ``img_shape`` (when
    present) two positive integers ``(height, width)`` up to ``MAX_IMAGE_SIDE``; ``total_frames`` (when
    present) a non-negative integer equal to T, and for a clip without frames (T = 0) the frame count in
    ``1..MAX_POSE_FRAMES``. A clip without detections (``keypoint`` of shape ``(0, T, J, 2)``) is usable
    (all joints missing)."""
    if not isinstance(a, dict):
        return f"expected a dict, found {type(a).__name__}"
    miss = [k for k in ("frame_dir", "keypoint") if k not in a]
    if miss:
        return f"missing key(s) {miss}; has {sorted(map(str, a))}"
    try:
        kp = np.asarray(a["keypoint"])
    except Exception as e:  # ragged lists and the like
        return f"'keypoint' is not an array ({type(e).__name__}: {e})"
    J = num_joints
    if kp.ndim != 4 or kp.shape[2] != J or kp.shape[3] not in (2, 3):
        return f"'keypoint' has shape {tuple(kp.shape)}, expected [M, T, {J}, 2]"
    if kp.dtype.kind not in "fiu":
        return f"'keypoint' has dtype {kp.dtype}, expected numbers"
    if kp.shape[3] == 3:
        extra = "" if "keypoint_score" not in a else " ('keypoint_score' is present too)"
        return (f"'keypoint' has shape {tuple(kp.shape)}: 3 coordinates per joint{extra}. pyskl stores 3-D "
                f"keypoints (x, y, z) this way (e.g. NTU), not (x, y, score); MA-52 needs 2-D keypoints "
                f"[M, T, {J}, 2] with 'keypoint_score' [M, T, {J}]. If the third channel really is a "
                f"confidence, store keypoint[..., :2] and keypoint_score = keypoint[..., 2]")
    if "keypoint_score" not in a:
        return "'keypoint' is [M, T, J, 2] but 'keypoint_score' is missing"
    sc, why = _numeric_array(a, "keypoint_score")
    if why is not None:
        return f"{why} of shape {tuple(kp.shape[:3])} (= keypoint's [M, T, J]: one confidence per joint)"
    if sc.shape != kp.shape[:3]:
        return (f"'keypoint_score' has shape {tuple(sc.shape)}, expected {tuple(kp.shape[:3])} "
                f"(= keypoint's [M, T, J])")
    if "img_shape" in a:
        v = a["img_shape"]
        try:
            hw = [as_integer(x) for x in v] if not isinstance(v, (str, bytes, dict)) else None
        except TypeError:
            hw = None
        if hw is None or len(hw) != 2 or any(x is None or not 0 < x <= MAX_IMAGE_SIDE for x in hw):
            return (f"'img_shape' must be (height, width), two integers in 1..{MAX_IMAGE_SIDE} (the frame size "
                    f"the keypoints are in), found {v!r}")
    T = kp.shape[1]
    if a.get("total_frames") is not None:
        tf = as_integer(a["total_frames"])
        if tf is None or tf < 0:
            return f"'total_frames' must be a non-negative integer (the clip's frame count), found {_what(a['total_frames'])}"
        if T > 0 and tf != T:
            return (f"'total_frames' is {tf} but 'keypoint' holds {T} frames (pyskl writes total_frames = "
                    f"keypoint.shape[1]); fix total_frames or the arrays")
        if T == 0 and not 0 < tf <= MAX_POSE_FRAMES:
            return (f"'keypoint' has no frames (T = 0) and 'total_frames' is {tf}, expected a frame count in "
                    f"1..{MAX_POSE_FRAMES:,}")
    elif T == 0:
        return "'keypoint' has no frames (T = 0) and 'total_frames' gives none either"
    return None


class PosePickle:
    """An mmaction/pyskl-style pose pickle, indexed by clip name (read with ``safe_pickle``).

    ``entries``: frame_dir (as written) -> annotation; ``problems``: frame_dir -> why its annotation is
    unusable (``pose_entry_problem``, prefixed with the file and index). A file that is not such a pickle
    at all raises ``AnnotationError``; a bad entry only makes that clip bad (the dataset decides).
    """

    def __init__(self, path, layout):
        self.path = Path(path)
        self.layout = get_layout(layout)
        if not self.path.is_file():
            raise AnnotationError(f"{self.path}: pose pickle does not exist")
        try:
            obj = safe_pickle.load(self.path)
        except safe_pickle.UnsafePickleError as e:
            raise AnnotationError(str(e)) from None
        except Exception as e:
            raise AnnotationError(f"{self.path}: cannot unpickle ({type(e).__name__}: {e})") from None
        anns = obj.get("annotations") if isinstance(obj, dict) else obj
        if not isinstance(anns, (list, tuple)):
            raise AnnotationError(f"{self.path}: expected a list of annotation dicts (or a dict with an "
                                  f"'annotations' list), found {type(obj).__name__}")
        J = self.layout.num_joints
        self.entries: dict[str, dict] = {}
        self.problems: dict[str, str] = {}
        self.index: dict[str, int] = {}
        self._by_key: dict[str, list[str]] = {}
        for i, a in enumerate(anns):
            if not isinstance(a, dict) or "frame_dir" not in a:
                what = f"a {type(a).__name__}" if not isinstance(a, dict) else f"a dict with keys {sorted(map(str, a))}"
                raise AnnotationError(f"{self.path}: annotation {i}: expected a dict with 'frame_dir' and "
                                      f"'keypoint', found {what}")
            fd = str(a["frame_dir"])
            where = f"{self.path}: annotation {i} (frame_dir {fd!r})"
            if fd in self.entries:
                self.problems[fd] = f"{where}: frame_dir already used by annotation {self.index[fd]}"
                continue
            self.entries[fd], self.index[fd] = a, i
            self._by_key.setdefault(clip_key(fd), []).append(fd)
            problem = pose_entry_problem(a, J)
            if problem is not None:
                self.problems[fd] = f"{where}: {problem} for layout {self.layout.name!r}"

    def find(self, name, split: str | None = None) -> str | None:
        """The ``frame_dir`` of clip ``name`` (with or without split prefix / extension), None if absent."""
        name = str(name)
        if name in self.entries:
            return name
        cands = self._by_key.get(clip_key(name), [])
        if len(cands) > 1:   # the same clip name under several prefixes: the list's or the split's decides
            for pref in (_prefix(name), split):
                same = [c for c in cands if pref and _prefix(c) == pref]
                if len(same) == 1:
                    return same[0]
            raise AnnotationError(f"{self.path}: clip {name!r} matches several frame_dirs {cands}; give the "
                                  f"list names their split prefix or use one pose file per split")
        return cands[0] if cands else None

    def __contains__(self, name) -> bool:
        return self.find(name) is not None

    def problem(self, name, split: str | None = None) -> str | None:
        """Why clip ``name`` cannot be used (no entry, or a bad one); None when it can."""
        fd = self.find(name, split)
        if fd is None:
            return f"no annotation with frame_dir {clip_key(name)!r} (with or without split prefix) in {self.path}"
        return self.problems.get(fd)

    def _entry(self, name, split=None) -> dict:
        fd = self.find(name, split)
        if fd is None:
            raise KeyError(f"{self.path}: no annotation with frame_dir {clip_key(name)!r}")
        if fd in self.problems:
            raise AnnotationError(self.problems[fd])
        return self.entries[fd]

    def clip(self, name, split: str | None = None) -> tuple[np.ndarray, tuple[int, int] | None]:
        """All frames of the best-scoring person: ``([T, J, 3] float32, img_shape or None)``; a clip
        without detections gives T frames of missing joints (zeros)."""
        a = self._entry(name, split)
        kp = np.asarray(a["keypoint"], dtype=np.float32)
        shape = tuple(int(s) for s in a["img_shape"]) if "img_shape" in a else None
        if kp.shape[0] == 0:
            T = kp.shape[1] or int(a.get("total_frames", 0) or 0)
            return np.zeros((max(T, 1), self.layout.num_joints, 3), np.float32), shape
        full = np.concatenate([kp, np.asarray(a["keypoint_score"], np.float32)[..., None]], -1)
        best = int(np.argmax(np.nan_to_num(full[..., 2]).mean(axis=(1, 2)))) if full.shape[0] > 1 else 0
        out = np.nan_to_num(full[best], nan=0.0, posinf=0.0, neginf=0.0)
        return out, shape


class PoseJsonDir:
    """``<root>/<clip name without extension>/*.json`` (OpenPose per-frame output)."""

    def __init__(self, root, layout):
        self.root = Path(root)
        self.layout = get_layout(layout)
        if not self.root.is_dir():
            raise AnnotationError(f"{self.root}: OpenPose JSON root folder does not exist")

    def _dir(self, name) -> Path:
        for c in (self.root / clip_key(name), self.root / _prefix(name) / clip_key(name)):
            if c.is_dir():
                return c
        return self.root / clip_key(name)

    def __contains__(self, name) -> bool:
        return self._dir(name).is_dir()

    def problem(self, name, split: str | None = None) -> str | None:
        d = self._dir(name)
        if not d.is_dir():
            return f"no OpenPose JSON folder {str(d)!r}"
        try:
            openpose_json.frame_files(d)
        except openpose_json.OpenPoseFormatError as e:
            return str(e)
        return None

    def num_frames(self, name) -> int:
        return len(openpose_json.frame_files(self._dir(name)))

    def frames(self, name, indices) -> np.ndarray:
        return openpose_json.read_sequence(self._dir(name), self.layout, indices)


def open_pose_source(path, layout):
    """A ``PosePickle`` for a file, a ``PoseJsonDir`` for a folder."""
    path = Path(path)
    if path.is_dir():
        return PoseJsonDir(path, layout)
    return PosePickle(path, layout)


# ------------------------------------------------------------------------------------------ release layout
def list_candidates(root: Path, split: str) -> list[Path]:
    f = f"{split}_list_videos.txt"
    return [root / f, root / "annotations" / f]


def video_dir_candidates(root: Path, split: str) -> list[Path]:
    return [root / "raw_videos" / split, root / "raw_videos", root / f"videos_{split}", root / split,
            root / "videos" / split, root / "videos"]


def pose_candidates(root: Path, split: str) -> list[Path]:
    """Pose pickles first (the release's name first), then OpenPose JSON folders."""
    files = [root / "MA-52_openpose_28kp" / f"MA52_{split}.pkl", root / f"MA52_{split}.pkl",
             root / "pose" / f"{split}.pkl", root / f"pose_{split}.pkl", root / f"{split}.pkl"]
    return files + [root / "pose" / split, root / f"pose_{split}"]


def find_list_file(root, split, lists=None) -> Path:
    """The list file of ``split``: ``lists`` (a file, or a folder searched like the root), else the root."""
    if lists is not None:
        lists = Path(lists)
        if lists.is_file():
            return lists
        return _first_existing(list_candidates(lists, split), f"MA-52 list file for split {split!r} (lists={str(lists)!r})")
    return _first_existing(list_candidates(Path(root), split), f"MA-52 list file for split {split!r}")


def find_video_dir(root, split, videos=None, first_clip: str | None = None) -> Path:
    """The folder holding the clips of ``split``: among the candidate folders (under ``videos`` when
    given, else the root), the first that holds ``first_clip``, else the first that exists."""
    base = Path(videos) if videos is not None else Path(root)
    cands = ([base / split, base / f"videos_{split}", base] if videos is not None
             else video_dir_candidates(base, split))
    existing = [c for c in cands if c.is_dir()]
    if not existing:
        raise FileNotFoundError(f"MA-52 video folder for split {split!r}: none of these exist: "
                                f"{[str(c) for c in cands]}" + ("" if videos is not None else "; pass videos=PATH"))
    if first_clip is not None:
        for c in existing:
            if resolve_video(c, first_clip).is_file():
                return c
    return existing[0]


def resolve_video(video_dir: Path, name) -> Path:
    """The file of clip ``name`` under ``video_dir`` (``name`` as listed, else its last component)."""
    p = Path(video_dir) / str(name)
    if p.is_file():
        return p
    alt = Path(video_dir) / str(name).replace("\\", "/").rsplit("/", 1)[-1]
    return alt if alt.is_file() else p


def find_pose_source(root, split, pose=None) -> Path | None:
    """The pose source of ``split``: ``pose`` (a pickle, a folder holding the release's pickles, or an
    OpenPose JSON folder), else the candidates under the root; None when nothing is found."""
    if pose is not None:
        pose = Path(pose)
        if pose.is_dir():
            inner = [c for c in pose_candidates(pose, split)[:5] if c.is_file()]
            return inner[0] if inner else pose
        if not pose.exists():
            raise AnnotationError(f"{pose}: pose pickle does not exist")
        return pose
    found = [c for c in pose_candidates(Path(root), split) if c.exists()]
    return found[0] if found else None


def _first_existing(cands, what, is_dir=False):
    for c in cands:
        if (c.is_dir() if is_dir else c.is_file()):
            return c
    raise FileNotFoundError(f"{what}: none of these exist: {[str(c) for c in cands]}")


# ------------------------------------------------------------------------------------------ dataset
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
    video file is missing is refused by default (``AnnotationError`` naming the list file, line and
    reason); True logs it and leaves it out (``bad_clips`` holds ``(name, line, reason)``). ``exclude``:
    clip names to leave out (e.g. the bad clips of a ``mdn_fast.data.check`` report, video decoding
    failures included).
    """

    num_classes = NUM_CLASSES
    num_body_classes = NUM_BODY_CLASSES
    body_names = BODY_NAMES

    def __init__(self, root, split: str = "train", modality: str = "rgb+pose", layout: str = "coco18_hands28",
                 num_segments: int = 8, train: bool | None = None, *, pose=None, videos=None, lists=None,
                 video_dir=None, list_file=None, hide_labels: bool | None = None, hand_order: str = "auto",
                 short_side: int = 256, crop_size: int = 224, skip_bad_clips: bool = False, exclude=(),
                 prepared=None):
        if modality not in MODALITIES:
            raise ValueError(f"modality: expected one of {MODALITIES}, got {modality!r}")
        if hand_order not in ("auto", "as_is", "swap"):
            raise ValueError(f"hand_order: expected 'auto', 'as_is' or 'swap', got {hand_order!r}")
        if num_segments < 1:
            raise ValueError(f"num_segments: expected >= 1, got {num_segments}")
        for new, old, a, b in (("lists", "list_file", lists, list_file), ("videos", "video_dir", videos, video_dir)):
            if a is not None and b is not None:
                raise ValueError(f"{new}/{old}: give one of them ({old} is the older name of {new})")
        lists = lists if lists is not None else list_file
        videos = videos if videos is not None else video_dir
        self.root = Path(root)
        self.split, self.modality = split, modality
        self._layout = get_layout(layout)
        self.layout = self._layout.name     # a name, as SyntheticMicroActions.layout
        self.num_segments = int(num_segments)
        self.train = (split == "train") if train is None else bool(train)
        self.hide_labels = (split == "test") if hide_labels is None else bool(hide_labels)
        self.short_side, self.crop_size = short_side, crop_size
        self.list_file = find_list_file(self.root, split, lists)
        # -1 / no label only where labels are hidden: anywhere else it is no class (IndexError in the loss)
        entries = read_list(self.list_file, with_lines=True, hidden_ok=self.hide_labels)
        names_file = _first_existing_or_none([self.root / "label_name.txt", self.root / "annotations" / "label_name.txt"]
                                             + ([Path(lists) / "label_name.txt"] if lists is not None
                                                and Path(lists).is_dir() else []))
        self.class_names = tuple(read_label_names(names_file)) if names_file is not None else None
        self.class_names_file = names_file      # where they come from (named when they do not fit the classes)
        self.use_rgb = modality in ("rgb+pose", "rgb")
        self.video_dir, self.prepared = None, None
        if self.use_rgb or videos is not None or prepared is not None:
            self.video_dir = find_video_dir(self.root, split, videos, first_clip=entries[0][0])
            self.video_dir, self.prepared = resolve_prepared(self.video_dir, prepared, root=self.root)
        pose_path = find_pose_source(self.root, split, pose)
        if pose_path is None and modality != "rgb":
            raise FileNotFoundError(
                f"MA-52 pose source for split {split!r} (modality {modality!r} needs keypoints): none of "
                f"{[str(c) for c in pose_candidates(self.root, split)]} exist; pass pose=PATH")
        self.pose = open_pose_source(pose_path, self._layout) if pose_path is not None else None

        # Bad clips: found now (cheap checks), refused or left out, never a crash in a worker mid-epoch.
        excluded = {clip_key(n) for n in exclude}
        self.bad_clips: list[tuple[str, int, str]] = []
        keep = []
        # the original size of a prepared clip is read for its frames, or for OpenPose JSON (no img_shape)
        needs_size = self.use_rgb or (self.pose is not None and not isinstance(self.pose, PosePickle))
        for name, label, line in entries:
            if clip_key(name) in excluded:
                continue
            reason = self.pose.problem(name, split) if self.pose is not None else None
            if reason is None and self.use_rgb and not resolve_video(self.video_dir, name).is_file():
                reason = f"video file {str(resolve_video(self.video_dir, name))!r} does not exist"
            if (reason is None and self.prepared is not None and needs_size
                    and resolve_video(self.video_dir, name).is_file()):
                try:   # a prepared clip without manifest entry: its keypoints could not be mapped
                    self.original_size(name)
                except KeyError as e:
                    reason = e.args[0]
            if reason is None:
                keep.append((name, label, line))
            else:
                self.bad_clips.append((name, line, reason))
        if self.bad_clips:
            name, line, reason = self.bad_clips[0]
            summary = (f"{self.list_file}: {len(self.bad_clips)} of {len(entries)} listed clips cannot be used; "
                       f"first: line {line}, clip {name!r}: {reason}")
            if not keep:
                hint = ""
                if isinstance(self.pose, PosePickle) and all("no annotation" in r for _, _, r in self.bad_clips):
                    hint = (f" (no listed clip is in {self.pose.path}: list names look like {entries[0][0]!r}, "
                            f"frame_dirs like {next(iter(self.pose.entries), None)!r}; wrong split or file?)")
                raise AnnotationError(summary + hint)
            if not skip_bad_clips:
                raise AnnotationError(summary + ". Run mdn_fast.data.check.check_dataset (mdn-fast check-data) "
                                      "for the full list, or pass skip_bad_clips=True to leave them out")
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


def _first_existing_or_none(cands):
    return next((c for c in cands if c.is_file()), None)
