"""Where the parts of an MA-52 release are: found once, in one ``MA52Release``, for the dataset and
``check-data``.

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
``lists`` / ``videos`` / ``pose`` override each part (a file, or a folder searched as above); ``prepared``
names the prepared copy of the videos (``mdn_fast.data.prepare_videos.resolve_prepared``).

``MA52Release(root, lists=, videos=, pose=, prepared=)`` finds each part when first asked and keeps it:
per split (``release.split(name)``) the list file and its parsed lines, the video folder and its prepared
manifest, the pose source, opened once (a pose pickle is unpickled once however many readers ask). A part
that is not there raises when asked (``FileNotFoundError`` / ``AnnotationError`` naming the candidates),
so the dataset refuses and ``check-data`` reports from the same search.
"""
from __future__ import annotations

from pathlib import Path

from .ma52_annotations import AnnotationError, parse_list
from .ma52_pose import open_pose_source
from .prepare_videos import resolve_prepared

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


def label_names_candidates(root: Path, lists=None) -> list[Path]:
    """Where ``label_name.txt`` may be: the root, ``annotations/``, and the ``lists`` folder when given."""
    cands = [root / "label_name.txt", root / "annotations" / "label_name.txt"]
    if lists is not None and Path(lists).is_dir():
        cands.append(Path(lists) / "label_name.txt")
    return cands


class MA52Release:
    """One MA-52 release: ``root`` and the overrides ``lists`` / ``videos`` / ``pose`` / ``prepared`` (as
    ``MA52Dataset`` takes them), each part found once (module docstring). ``split(name)`` gives a split's
    parts (``MA52Split``); ``names_file`` is ``label_name.txt`` (None when there is none)."""

    def __init__(self, root, *, lists=None, videos=None, pose=None, prepared=None):
        self.root = Path(root)
        self.lists, self.videos, self.pose, self.prepared = (
            None if p is None else Path(p) for p in (lists, videos, pose, prepared))
        self._splits: dict[str, MA52Split] = {}
        self._pose_sources: dict = {}       # (path, layout name) -> source or the error opening it raised
        self._names_file = ...              # Ellipsis: not looked for yet (None: looked, none found)

    @property
    def names_file(self) -> Path | None:
        if self._names_file is ...:
            self._names_file = next((c for c in label_names_candidates(self.root, self.lists) if c.is_file()), None)
        return self._names_file

    def split(self, name: str) -> "MA52Split":
        if name not in self._splits:
            self._splits[name] = MA52Split(self, name)
        return self._splits[name]

    def open_pose(self, path: Path, layout):
        """The pose source at ``path`` for ``layout``, opened the first time it is asked for (a pickle
        shared by several splits is read once); a file that cannot be read raises the same error again."""
        key = (Path(path), getattr(layout, "name", layout))
        if key not in self._pose_sources:
            try:
                self._pose_sources[key] = open_pose_source(path, layout)
            except AnnotationError as e:
                self._pose_sources[key] = e
        got = self._pose_sources[key]
        if isinstance(got, AnnotationError):
            raise got
        return got

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={str(v)!r}" for k, v in (("lists", self.lists), ("videos", self.videos),
                                                       ("pose", self.pose), ("prepared", self.prepared)) if v)
        return f"MA52Release({str(self.root)!r}{', ' + parts if parts else ''})"


class MA52Split:
    """The parts of one split of a release, each found when first asked for and kept."""

    def __init__(self, release: MA52Release, name: str):
        self.release, self.name = release, name
        self._list_file: Path | None = None
        self._lines: dict[bool, list] = {}
        self._videos: dict = {}
        self._pose_path = ...               # Ellipsis: not looked for yet (None: none found)

    @property
    def list_file(self) -> Path:
        """``{split}_list_videos.txt`` (``FileNotFoundError`` naming the candidates)."""
        if self._list_file is None:
            r = self.release
            self._list_file = find_list_file(r.root, self.name, r.lists)
        return self._list_file

    def lines(self, hidden_ok: bool) -> list[tuple[int, str | None, int, str | None]]:
        """``parse_list`` of the list file: every non-blank line as ``(line, name, label, problem)``;
        ``hidden_ok``: labels may be hidden (-1 / none), as in the test split."""
        if hidden_ok not in self._lines:
            self._lines[hidden_ok] = parse_list(self.list_file, hidden_ok=hidden_ok)
        return self._lines[hidden_ok]

    def video_parts(self, first_clip: str | None):
        """``(video folder, prepared manifest or None)``: the folder that holds ``first_clip`` among the
        candidates, then its prepared copy when the release names one (``resolve_prepared``)."""
        if first_clip not in self._videos:
            r = self.release
            found = find_video_dir(r.root, self.name, r.videos, first_clip=first_clip)
            self._videos[first_clip] = resolve_prepared(found, r.prepared, root=r.root)
        return self._videos[first_clip]

    @property
    def pose_path(self) -> Path | None:
        """The pose pickle or OpenPose JSON folder of the split, None when none is found
        (``AnnotationError`` when the ``pose`` given does not exist)."""
        if self._pose_path is ...:
            r = self.release
            self._pose_path = find_pose_source(r.root, self.name, r.pose)
        return self._pose_path

    def no_pose_reason(self) -> str:
        """Where a pose source was looked for, for the refusal when the modality needs one and none exists."""
        return f"none of {[str(c) for c in pose_candidates(self.release.root, self.name)]} exist"

    def pose_source(self, layout):
        """The opened pose source (``PosePickle`` / ``PoseJsonDir``), None when the split has none."""
        p = self.pose_path
        return None if p is None else self.release.open_pose(p, layout)
