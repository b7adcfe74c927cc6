"""iMiGUE micro-gestures: the MiGA challenge's processed skeleton release.

Files (per split; the challenge names them ``train`` and ``valid``, a test phase ``test``):
- ``{split}_data.npy``: float32 ``(N, 3, 90, 22, 1)`` = (clip, [x, y, score], frame, joint, person),
  joints in the ``miga22`` layout. Clips shorter than 90 frames are zero-padded at the end (the
  challenge converter writes the first ``length`` frames and leaves the rest 0).
- ``{split}_label.pkl``: ``pickle.dump((sample_names, labels))`` (read with the restricted unpickler
  ``mdn_fast.data.safe_pickle``: builtin containers, scalars and numpy arrays only) — a pair of equal-length lists, names
  like ``"<video>_<k>"`` and integer labels in 0..31 (the converter subtracts 1 from the 1-based
  gesture id and maps id 99 to class 31). Source: the challenge baseline's converter,
  github.com/mikecheninoulu/SMG classification/iMiGUE/stgcn_imigue/tools/imigue_gendata.py, and the
  MiGA-2023 winners' reader (github.com/VUT-HFUT/MiGA2023_Track1, tools/readlabel.py:
  ``sample_name, sample_label = pickle.load(f)``). A pickled dict ``{"sample_name": [...], "label":
  [...]}`` is accepted too; a test split may ship without labels (then labels are -1).
- Raw skeletons (OpenPose BODY_25 JSON per frame) are read by ``mdn_fast.data.openpose_json``
  (``read_sequence(folder, "miga22")`` builds this layout from BODY_25 + hand arrays).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..skeleton.layouts import get_layout
from ..skeleton.validate import as_integer
from . import safe_pickle
from ..skeleton.layouts_extra import hand_groups_swapped, swap_hand_groups
from .video_sampling import tsn_sample_indices

NUM_CLASSES = 32
NUM_JOINTS = 22


class IMiGUEFormatError(ValueError):
    """Malformed iMiGUE release file; the message names the file, what was expected and found."""




def read_labels(path, num_classes: int = NUM_CLASSES, *, hidden_ok: bool = False) -> tuple[list[str], list[int]]:
    """``{split}_label.pkl`` -> ``(sample_names, labels)``.

    Labels must be integers in ``0..num_classes-1`` (the release's ``gestureID - 1``); ``hidden_ok`` (a
    split whose labels are hidden, the test split) also accepts -1. A label that is not an integer
    (``1.7``, ``True``, ``"3"``) is refused, never rounded; so is -1 elsewhere (no class: training
    would fail on it at the first batch). Errors name the file and the first bad sample."""
    path = Path(path)
    if not path.is_file():
        raise IMiGUEFormatError(f"{path}: label file does not exist")
    try:
        obj = safe_pickle.load(path)    # restricted: a crafted label file cannot run code
    except safe_pickle.UnsafePickleError as e:
        raise IMiGUEFormatError(str(e)) from None
    except Exception as e:
        raise IMiGUEFormatError(f"{path}: cannot unpickle ({type(e).__name__}: {e}); expected a pickled "
                                f"(sample_names, labels) pair") from None
    if isinstance(obj, dict) and {"sample_name", "label"} <= set(obj):
        names, labels = obj["sample_name"], obj["label"]
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        names, labels = obj
    else:
        found = (f"a {type(obj).__name__} of length {len(obj)}" if isinstance(obj, (tuple, list))
                 else f"a dict with keys {sorted(obj)[:6]}" if isinstance(obj, dict) else type(obj).__name__)
        raise IMiGUEFormatError(f"{path}: expected a pickled (sample_names, labels) pair, found {found}")
    for what, seq in (("sample names", names), ("labels", labels)):
        if not isinstance(seq, (list, tuple, np.ndarray)) or np.ndim(seq) != 1:
            raise IMiGUEFormatError(f"{path}: expected {what} as a list, found {type(seq).__name__}"
                                    + (f" of shape {np.shape(seq)}" if isinstance(seq, np.ndarray) else ""))
    names = [str(n) for n in names]
    if len(names) != len(labels):
        raise IMiGUEFormatError(f"{path}: {len(names)} sample names but {len(labels)} labels")
    ints = [as_integer(l) for l in labels]
    bad = [k for k, l in enumerate(ints) if l is None]
    if bad:
        k = bad[0]
        raise IMiGUEFormatError(f"{path}: labels must be integers: sample {k} ({names[k]!r}) has label "
                                f"{labels[k]!r} ({type(labels[k]).__name__}), expected a class id 0..{num_classes - 1} "
                                f"({len(bad)} non-integer labels in all); the release stores integer labels "
                                f"(gestureID - 1)")
    bad = [k for k, l in enumerate(ints) if not (0 <= l < num_classes or (l == -1 and hidden_ok))]
    if bad:
        k = bad[0]
        hint = (" (-1 means hidden, which only the test split may be)" if ints[k] == -1 else "")
        raise IMiGUEFormatError(f"{path}: sample {k} ({names[k]!r}) has label {ints[k]}, expected "
                                f"0..{num_classes - 1}{hint} ({len(bad)} bad labels in all)")
    return names, ints


def read_data(path, mmap: bool = True) -> np.ndarray:
    """``{split}_data.npy`` -> ``(N, 3, T, 22, M)`` array (memory-mapped by default)."""
    path = Path(path)
    if not path.is_file():
        raise IMiGUEFormatError(f"{path}: data file does not exist")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:
        raise IMiGUEFormatError(f"{path}: cannot load as .npy ({type(e).__name__}: {e})") from None
    if arr.ndim != 5 or arr.shape[1] != 3 or arr.shape[3] != NUM_JOINTS or arr.shape[4] < 1 or arr.shape[2] < 1:
        raise IMiGUEFormatError(f"{path}: array has shape {tuple(arr.shape)}, expected (N, 3, frames, "
                                f"{NUM_JOINTS}, persons) = (clip, [x, y, score], frame, joint, person)")
    return arr


def valid_length(clip: np.ndarray) -> int:
    """Frames before the zero padding of one ``(3, T, V)`` clip (at least 1)."""
    nz = np.flatnonzero(np.abs(clip).reshape(clip.shape[0], clip.shape[1], -1).sum(axis=(0, 2)) > 0)
    return int(nz[-1]) + 1 if nz.size else 1


def _split_file(root: Path, split: str, suffix: str) -> Path:
    cands = [root / f"{split}{suffix}"]
    alias = {"val": "valid", "valid": "val"}.get(split)
    if alias:
        cands.append(root / f"{alias}{suffix}")
    for c in cands:
        if c.is_file():
            return c
    raise FileNotFoundError(f"iMiGUE split {split!r}: none of {[str(c) for c in cands]} exist")


class IMiGUEDataset(torch.utils.data.Dataset):
    """iMiGUE challenge skeletons as ``{"keypoints": [T, 22, 3], "label", "body_label"}``.

    keypoints: float32 (x, y in the release's pixel units, score), ``T = num_frames`` sampled TSN-style
    within the clip's unpadded length (random offset per segment when ``train``, centres otherwise);
    person 0. ``label`` int (-1 when the split has no labels); ``body_label`` is always -1 (iMiGUE has
    no body classes: ``num_body_classes`` is None). No ``frames``: the release carries no video.

    hand_order: ``"auto"`` checks the data once (``hand_groups_swapped`` on up to 512 clips) and swaps
    the hand blocks when they sit next to the other wrist; ``"as_is"``/``"swap"`` force it.
    """

    layout = "miga22"
    num_classes = NUM_CLASSES
    num_body_classes = None

    def __init__(self, root, split: str = "train", num_frames: int = 8, train: bool | None = None, *,
                 mmap: bool = True, hand_order: str = "auto"):
        if hand_order not in ("auto", "as_is", "swap"):
            raise ValueError(f"hand_order: expected 'auto', 'as_is' or 'swap', got {hand_order!r}")
        if num_frames < 1:
            raise ValueError(f"num_frames: expected >= 1, got {num_frames}")
        self.root = Path(root)
        self.split = split
        self._layout = get_layout(self.layout)
        self.num_frames = int(num_frames)
        self.train = (split == "train") if train is None else bool(train)
        self.data_path = _split_file(self.root, split, "_data.npy")
        self.mmap = bool(mmap)
        self.data = read_data(self.data_path, mmap=mmap)
        try:
            self.label_path = _split_file(self.root, split, "_label.pkl")
        except FileNotFoundError:
            self.label_path = None
        if self.label_path is not None:
            self.names, self.labels = read_labels(self.label_path, hidden_ok=split == "test")
            if len(self.labels) != self.data.shape[0]:
                raise IMiGUEFormatError(f"{self.label_path}: {len(self.labels)} labels but {self.data_path} holds "
                                        f"{self.data.shape[0]} clips")
        else:
            self.names = [f"{split}_{k}" for k in range(self.data.shape[0])]
            self.labels = [-1] * self.data.shape[0]
        self.swap_hands = hand_order == "swap"
        if hand_order == "auto":
            n = min(512, self.data.shape[0])
            kp = np.asarray(self.data[:n, :, :, :, 0]).transpose(0, 2, 3, 1)   # (n, T, V, 3)
            self.swap_hands = bool(hand_groups_swapped(kp, self._layout))

    def __getstate__(self):
        # A memory-mapped array would pickle its whole content (hundreds of MB per DataLoader worker under
        # spawn/forkserver); send the path and map the file again on the other side.
        state = dict(self.__dict__)
        if self.mmap:
            state["data"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.data is None:
            self.data = read_data(self.data_path, mmap=True)

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i: int) -> dict:
        clip = np.asarray(self.data[i, :, :, :, 0], dtype=np.float32)          # (3, T, V)
        n = valid_length(clip)
        rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,)).item())) if self.train else None
        idx = tsn_sample_indices(n, self.num_frames, self.train, rng)
        kp = np.ascontiguousarray(clip[:, idx].transpose(1, 2, 0))              # (T, V, 3)
        kp = np.nan_to_num(kp, nan=0.0, posinf=0.0, neginf=0.0)
        kp[~(kp[..., 2] > 0)] = 0.0                                             # missing joint -> (0, 0, 0)
        if self.swap_hands:
            kp = swap_hand_groups(kp, self._layout)
        return {"keypoints": torch.from_numpy(kp), "label": int(self.labels[i]), "body_label": -1}
