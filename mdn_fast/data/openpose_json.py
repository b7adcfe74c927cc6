"""OpenPose ``--write_json`` output: one JSON file per frame, one folder per clip (MA-52 and raw iMiGUE).

A frame file holds ``{"people": [{"pose_keypoints_2d": [x, y, c] * J, "hand_left_keypoints_2d":
[x, y, c] * 21, "hand_right_keypoints_2d": [...], ...}, ...]}``. We read ``people[0]`` (OpenPose's first
detection; our clips hold one subject). A frame with no people, or a missing joint, gives ``(0, 0, 0)``.

Assembling a layout from a frame (``read_frame(path, layout)``):
- ``body25``: ``pose_keypoints_2d`` with 25 joints.
- ``coco18_hands28``: ``pose_keypoints_2d`` with 28 joints as is; or 18 (COCO model) or 25 (BODY_25,
  mapped by ``COCO18_FROM_BODY25``) body joints plus the fingertips (thumb..little) of
  ``hand_left_keypoints_2d`` (points 18–22) then ``hand_right_keypoints_2d`` (23–27), the layout's order
  (zeros when the hand arrays are absent).
- ``miga22``: 22 joints as is; or BODY_25 (``MIGA22_FROM_BODY25``) plus right then left fingertips.
- ``coco17``: ``pose_keypoints_2d`` with 17 joints.
Any other registered layout: ``pose_keypoints_2d`` must hold exactly its joint count.

File names: OpenPose writes ``<video>_<frame:012d>_keypoints.json``; frames are ordered by the last
integer in the file name (lexical order when a name has none).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..skeleton.layouts import get_layout
from ..skeleton.layouts_extra import COCO18_FROM_BODY25, HAND_TIPS_21, MIGA22_FROM_BODY25


class OpenPoseFormatError(ValueError):
    """Malformed OpenPose JSON; the message names the file (and line/column for syntax errors)."""


def load_json(path) -> dict:
    """Parse one OpenPose frame file; syntax errors name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OpenPoseFormatError(f"{path}: file does not exist") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise OpenPoseFormatError(f"{path}, line {e.lineno}, column {e.colno}: invalid JSON ({e.msg}); "
                                  f"expected an OpenPose --write_json frame file (truncated write?)") from None
    if not isinstance(obj, dict) or "people" not in obj:
        found = f"keys {sorted(obj)[:8]}" if isinstance(obj, dict) else type(obj).__name__
        raise OpenPoseFormatError(f"{path}, line 1: expected a JSON object with a 'people' list, found {found}")
    if not isinstance(obj["people"], list):
        raise OpenPoseFormatError(f"{path}: 'people' must be a list, found {type(obj['people']).__name__}")
    return obj


def _points(person: dict, key: str, path, n_expected: tuple[int, ...] | None = None) -> np.ndarray | None:
    """``person[key]`` as ``[n, 3]`` float32; None when absent or empty."""
    vals = person.get(key)
    if vals is None or (isinstance(vals, list) and len(vals) == 0):
        return None
    if not isinstance(vals, list):
        raise OpenPoseFormatError(f"{path}: people[0].{key} must be a flat list of numbers, "
                                  f"found {type(vals).__name__}")
    if len(vals) % 3:
        raise OpenPoseFormatError(f"{path}: people[0].{key} has {len(vals)} values, expected a multiple of 3 "
                                  f"(x, y, confidence per joint)")
    try:
        arr = np.asarray(vals, dtype=np.float32).reshape(-1, 3)
    except (TypeError, ValueError):
        raise OpenPoseFormatError(f"{path}: people[0].{key} holds non-numeric values") from None
    if n_expected is not None and arr.shape[0] not in n_expected:
        raise OpenPoseFormatError(f"{path}: people[0].{key} has {arr.shape[0]} joints, expected "
                                  f"{' or '.join(map(str, n_expected))}")
    if not np.isfinite(arr).all():
        raise OpenPoseFormatError(f"{path}: people[0].{key} holds non-finite values")
    return arr


def _tips(hand: np.ndarray | None) -> np.ndarray:
    return np.zeros((5, 3), np.float32) if hand is None else hand[list(HAND_TIPS_21)]


def assemble(person: dict | None, layout, path="<json>") -> np.ndarray:
    """One person's JSON dict -> ``[J, 3]`` for ``layout`` (zeros when ``person`` is None)."""
    layout = get_layout(layout)
    J = layout.num_joints
    if person is None:
        return np.zeros((J, 3), np.float32)
    if not isinstance(person, dict):
        raise OpenPoseFormatError(f"{path}: people[0] must be an object, found {type(person).__name__}")
    name = layout.name
    if name == "coco18_hands28":
        pose = _points(person, "pose_keypoints_2d", path, (18, 25, 28))
        if pose is None:
            return np.zeros((J, 3), np.float32)
        if pose.shape[0] == 28:
            return pose
        body = pose if pose.shape[0] == 18 else pose[list(COCO18_FROM_BODY25)]
        right = _tips(_points(person, "hand_right_keypoints_2d", path, (21,)))
        left = _tips(_points(person, "hand_left_keypoints_2d", path, (21,)))
        return np.concatenate([body, left, right])     # the layout's order: left block 18-22, right 23-27
    if name == "miga22":
        pose = _points(person, "pose_keypoints_2d", path, (22, 25))
        if pose is None:
            return np.zeros((J, 3), np.float32)
        if pose.shape[0] == 22:
            return pose
        right = _tips(_points(person, "hand_right_keypoints_2d", path, (21,)))
        left = _tips(_points(person, "hand_left_keypoints_2d", path, (21,)))
        return np.concatenate([pose[list(MIGA22_FROM_BODY25)], right, left])
    pose = _points(person, "pose_keypoints_2d", path, (J,))
    if pose is None:
        return np.zeros((J, 3), np.float32)
    return pose


def read_frame(path, layout="body25") -> np.ndarray:
    """One frame file -> float32 ``[J, 3]`` (x, y, confidence) of ``people[0]`` in ``layout``."""
    obj = load_json(path)
    person = obj["people"][0] if obj["people"] else None
    return assemble(person, layout, path)


_INT = re.compile(r"(\d+)")


def frame_files(folder) -> list[Path]:
    """The ``*.json`` files of a clip folder in frame order (by the last integer in the name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OpenPoseFormatError(f"{folder}: OpenPose JSON folder does not exist")
    files = [p for p in folder.iterdir() if p.suffix == ".json"]
    if not files:
        raise OpenPoseFormatError(f"{folder}: no *.json frame files in the folder")

    def key(p: Path):
        nums = _INT.findall(p.stem)
        return (0, int(nums[-1]), p.name) if nums else (1, 0, p.name)

    return sorted(files, key=key)


def read_sequence(folder, layout="body25", indices=None) -> np.ndarray:
    """A clip folder -> float32 ``[T, J, 3]``: all frames, or only ``indices`` (positions in frame order)."""
    files = frame_files(folder)
    if indices is None:
        chosen = files
    else:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(files)):
            raise IndexError(f"{folder}: frame index {int(idx.max() if idx.max() >= len(files) else idx.min())} "
                             f"outside the {len(files)} JSON frames")
        chosen = [files[int(i)] for i in idx]
    cache: dict[Path, np.ndarray] = {}
    out = []
    for p in chosen:
        if p not in cache:
            cache[p] = read_frame(p, layout)
        out.append(cache[p])
    return np.stack(out).astype(np.float32, copy=False)


def write_frame(path, keypoints, hands: tuple | None = None) -> None:
    """Write one OpenPose-style frame file (used by tests and converters).

    keypoints: ``[J, 3]`` array for ``people[0].pose_keypoints_2d``, or None for a frame with no people;
    hands: optional ``(left [21, 3], right [21, 3])``.
    """
    people = []
    if keypoints is not None:
        person = {"person_id": [-1], "pose_keypoints_2d": np.asarray(keypoints, float).reshape(-1).tolist()}
        if hands is not None:
            person["hand_left_keypoints_2d"] = np.asarray(hands[0], float).reshape(-1).tolist()
            person["hand_right_keypoints_2d"] = np.asarray(hands[1], float).reshape(-1).tolist()
        people.append(person)
    Path(path).write_text(json.dumps({"version": 1.3, "people": people}))
