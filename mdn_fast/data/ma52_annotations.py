"""MA-52 annotation files: the ``{split}_list_videos.txt`` lists, ``label_name.txt``, the label sets
(52 actions, 7 body classes) and clip names (``clip_key``).

Hidden test labels: the public ``test_list_videos.txt`` writes ``0`` for every clip. ``read_list`` returns
what the file says, mapping a missing label to ``-1``. ``parse_list`` holds the list rules once for the
dataset and ``check-data`` (labels ``0..51``, -1 only in the hidden test split).
"""
from __future__ import annotations

import codecs
from pathlib import Path

NUM_CLASSES = 52
NUM_BODY_CLASSES = 7
#: Keypoint layout of the release's pose pickles (facts.md): COCO-18 body and face, then 2 x 14 hand points.
LAYOUT = "coco18_hands28"
BODY_NAMES = ("body", "head", "upper limb", "lower limb", "body-hand", "head-hand", "leg-hand")
#: Body class of each action id (facts.md): 0-4 body, 5-10 head, 11-23 upper limb, 24-31 lower limb,
#: 32-37 body-hand, 38-47 head-hand, 48-51 leg-hand.
BODY_OF_ACTION = tuple([0] * 5 + [1] * 6 + [2] * 13 + [3] * 8 + [4] * 6 + [5] * 10 + [6] * 4)
assert len(BODY_OF_ACTION) == NUM_CLASSES
SPLITS = ("train", "val", "test")
#: Extensions ``clip_key`` strips from a clip name.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


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
    out = listed_clips(path, parse_list(path, num_classes, hidden_ok=hidden_ok))
    return out if with_lines else [(name, label) for name, label, _ in out]


def listed_clips(path, parsed) -> list[tuple[str, int, int]]:
    """``[(name, label, line)]`` of ``parse_list``'s result ``parsed`` for ``path``, refusing the whole
    file on its first bad line (``AnnotationError`` naming the line) or when it lists no clip: a dataset
    reads a list only when every line is good (``check-data`` reports each bad line instead)."""
    out = []
    for n, name, label, problem in parsed:
        if problem is not None:
            raise AnnotationError(f"{path}, line {n}: {problem}")
        out.append((name, label, n))
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


def clip_key(name) -> str:
    """A clip's name without folders and video extension: ``"train/0003_01_0001"``,
    ``"0003_01_0001.mp4"`` and ``"raw_videos/train/0003_01_0001.mp4"`` all give ``"0003_01_0001"``."""
    base = str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    return stem if dot and stem and f".{ext.lower()}" in VIDEO_EXTENSIONS else base


def clip_prefix(name) -> str:
    """The folder part of a name (``"train"`` for ``"train/0003_01_0001"``), "" when none."""
    n = str(name).replace("\\", "/").rstrip("/")
    return n.rsplit("/", 1)[0] if "/" in n else ""

