"""MA-52 keypoint sources: mmaction/pyskl pose pickles (``PosePickle``) and folders of OpenPose JSON
(``PoseJsonDir``), and the rules for one pose-pickle annotation (``pose_entry_problem``), shared by the
dataset and ``check-data``.

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
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..skeleton.layouts import get_layout
from ..skeleton.validate import as_integer
from ..skeleton import layouts_extra  # noqa: F401  registers coco18_hands28 / coco17 / miga22
from . import openpose_json, safe_pickle
from .ma52_annotations import AnnotationError, clip_key, clip_prefix

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
            for pref in (clip_prefix(name), split):
                same = [c for c in cands if pref and clip_prefix(c) == pref]
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
        for c in (self.root / clip_key(name), self.root / clip_prefix(name) / clip_key(name)):
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

