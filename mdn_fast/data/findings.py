"""What a data check finds: ``Problem`` (one finding: severity, file, line, clip, message, what training
does with it), ``SplitReport`` (a split's files and tallies) and ``Report`` (all of it, printable).
``mdn_fast.data.check`` (check-data) builds them; the MA-52 clip screen (``mdn_fast.data.ma52_screen``)
writes its findings as ``Problem`` records, so the dataset's refusals carry the same records."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

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


def problem(severity, split, file, line, clip, message, action) -> Problem:
    """A ``Problem``; ``action`` an ``ACTIONS`` key (or the text itself)."""
    return Problem(severity, split, str(file), line, clip, message, ACTIONS.get(action, action))


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
        self.problems.append(problem(severity, split, file, line, clip, message, action))

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


def progress_bar(it, total, desc, progress):
    """``it`` with a tqdm bar when ``progress`` (tqdm imported only then)."""
    if not progress:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, total=total, desc=desc, leave=False)
