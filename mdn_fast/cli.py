"""``mdn-fast`` command line (also ``python -m mdn_fast``):

- ``mdn-fast train [--dataset synthetic|ma52|imigue --root PATH] ...``: train, evaluate each epoch, write
  ``OUT/last.pt``, ``OUT/best.pt``, ``OUT/checkpoint.pt``. Multi-GPU / multi-node: launch it with
  ``torchrun --nproc_per_node N -m mdn_fast train ...`` (or ``torchrun ... $(which mdn-fast) train``).
- ``mdn-fast eval CHECKPOINT``: metrics on the val split of the checkpoint's dataset;
  ``--split test --prediction-csv PATH`` writes the MA-52 submission file for the hidden test split.
- ``mdn-fast report CHECKPOINT [--out DIR]``: PNG plots (routing weights per class and entity,
  confusion matrices, training curves).
- ``mdn-fast check-data --dataset ma52|imigue --root PATH``: scan a release (every list line, video, pose
  entry, label) and print what training would do with each finding; exit status 0 when every clip is
  usable, 1 otherwise.
- ``mdn-fast prepare-videos SRC DST [--short-side 256]``: re-encode a folder of videos once at a small
  short side (``mdn_fast.data.prepare_videos``); train/eval/check-data read them with
  ``--prepared-videos DST``. Exit status 1 (listing the files) when some could not be converted.
- ``mdn-fast export CHECKPOINT DIR [--overwrite]``: the checkpoint's model as a shareable folder
  (``config.json`` + ``model.safetensors``, no pickle) that ``MicroDualNet.from_pretrained(DIR)`` reads.
With no options ``mdn-fast train`` trains on the synthetic set (no downloads; CPU-friendly defaults).

The ``train`` options are built from ``TrainConfig``'s fields (type, help, choices from the field
metadata; an option left unset takes the ``--dataset``'s preset) and checked by ``TrainConfig`` alone.
A user error (bad option, missing data, refused checkpoint, diverged training) prints one
``mdn-fast COMMAND: error: ...`` message and exits non-zero; ``--debug`` shows the traceback instead.
Every size or count option is refused below its smallest meaningful value (argparse's exit status 2,
naming the option). Ctrl-C exits with status 130 (128 + SIGINT); ``train`` first saves ``OUT/last.pt``
(mid-epoch included) and prints the command that resumes.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import fields

from .training import ConfigError, TrainConfig, dataset_names, get_dataset
from .training.config import cli_flag, preset_values
from .data.prepare_videos import DEFAULT_CRF, DEFAULT_GOP, DEFAULT_PIX_FMT
from .training.extras import MissingExtraError
from .training.interrupt import EXIT_INTERRUPTED, TrainingInterrupted
from .training.precision import DTYPES

#: Exceptions that report a problem with the user's input or files, not a bug: one line, no traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError, MissingExtraError)
#: The TrainConfig fields that say where a dataset's files are (eval, report and check-data take them too).
DATA_OPTIONS = ("root", "lists", "videos", "pose", "prepared_videos")
#: Flags of ``eval`` / ``report`` named differently from the train option of the same field.
_EVAL_FLAGS = {"val_split": "--split"}
_TYPES = {"int": int, "float": float, "str": str}


def _at_least(low: int):
    """An argparse ``type``: an integer >= ``low`` (argparse names the option in its error)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected >= {low}, got {v}")
        return v
    parse.__name__ = f"integer >= {low}"
    return parse


def _default_help(name: str) -> str:
    """Help text for an option whose default depends on --dataset."""
    vals = {ds: "none" if v == "" else v for ds, v in preset_values(name).items()}
    if len(set(map(str, vals.values()))) == 1:
        return f"default {next(iter(vals.values()))}"
    return "default " + ", ".join(f"{v} ({ds})" for ds, v in vals.items())


def _add_train_options(t: argparse.ArgumentParser, names=None, *, suffix: str = "", show_default: bool = True) -> None:
    """One option per TrainConfig field (those in ``names``, default all); every default is None (unset:
    the dataset's preset, or the checkpoint's value, applies). ``suffix`` ends each help text."""
    for f in fields(TrainConfig):
        if names is not None and f.name not in names:
            continue
        meta = f.metadata
        help_ = meta["help"]() if callable(meta["help"]) else meta["help"]
        if meta["show_default"] and show_default:
            help_ = (help_ + "; " if help_ else "") + _default_help(f.name)
        help_ = (help_ + "; " if help_ and suffix else help_) + suffix
        kw = dict(dest=f.name, default=None, help=help_ or None)
        if f.type == "bool":   # a switch that sets the opposite of the field's default
            t.add_argument(cli_flag(f.name), action="store_const", const=not f.default, **kw)
            continue
        if f.type not in _TYPES:
            raise TypeError(f"TrainConfig.{f.name}: a CLI option is an int, float, str or bool field, got {f.type!r}")
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
        t.add_argument(cli_flag(f.name), type=_TYPES[f.type], choices=choices, metavar=meta["metavar"], **kw)


def _crf(text: str) -> int:
    """x264's constant rate factor: 0 (lossless) to 51."""
    v = _at_least(0)(text)
    if v > 51:
        raise argparse.ArgumentTypeError(f"expected 0..51 (x264's range), got {v}")
    return v


_crf.__name__ = "integer 0..51"


def _checkable() -> tuple:
    return tuple(n for n in dataset_names() if get_dataset(n).check is not None)


def _parser() -> argparse.ArgumentParser:
    """The parser; ``.commands`` holds its subparsers by command (an option error is reported by the
    command's own parser: ``mdn-fast eval: error: ...``)."""
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="on an error, show the Python traceback instead of one line")
    p = argparse.ArgumentParser(prog="mdn-fast", description="Micro-DualNet: train / evaluate / report "
                                "(synthetic micro-actions by default: no downloads, CPU-friendly).")
    p.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", parents=[debug], help="train; save OUT/last.pt, OUT/best.pt, OUT/checkpoint.pt",
                       description="Options left unset take the --dataset's preset (shown per dataset).")
    _add_train_options(t)

    e = sub.add_parser("eval", parents=[debug], help="evaluate a checkpoint on its dataset's val split; write "
                       "the submission file of the hidden test split")
    e.add_argument("checkpoint")
    e.add_argument("--num-clips", type=_at_least(1), default=None, help="evaluate the first N clips (default: as "
                   "in training)")
    e.add_argument("--batch-size", type=_at_least(1), default=None, help="default: as in training")
    e.add_argument("--dataset", choices=dataset_names(), default=None, help="default: the checkpoint's")
    _add_train_options(e, DATA_OPTIONS + ("skip_bad_clips",), suffix="default: as in the checkpoint",
                       show_default=False)
    e.add_argument("--split", default=None, help="split to evaluate (default: the checkpoint's val split); a "
                   "split with hidden labels (MA-52 test) needs --prediction-csv and reports no metrics")
    e.add_argument("--prediction-csv", default=None, metavar="PATH",
                   help="write the submission file (MA-52: prediction.csv, vid, action_pred_1..5, body_pred_1..5)")
    e.add_argument("--device", default="auto")
    e.add_argument("--dtype", choices=DTYPES, default="fp32", help="inference precision: bf16 = bf16 weights "
                   "on CPU (about 2x faster than fp32 there), autocast on CUDA; metrics in fp32 (default fp32)")

    r = sub.add_parser("report", parents=[debug], help="PNG plots of a checkpoint: routing weights, confusion, "
                       "curves (needs the [plots] extra: matplotlib)")
    r.add_argument("checkpoint")
    r.add_argument("--out", default=None, help="output folder (default: CHECKPOINT's folder/report)")
    _add_train_options(r, DATA_OPTIONS + ("skip_bad_clips",), suffix="default: as in the checkpoint",
                       show_default=False)
    r.add_argument("--split", default=None, help="split to evaluate (default: the checkpoint's val split)")
    r.add_argument("--num-clips", type=_at_least(1), default=None, help="evaluate the first N clips (default: as "
                   "in training)")
    r.add_argument("--batch-size", type=_at_least(1), default=None, help="default: as in training")
    r.add_argument("--device", default="auto")

    c = sub.add_parser("check-data", parents=[debug], help="scan a dataset release before training: every list "
                       "line, video, pose entry and label; exit status 0 when every clip is usable",
                       description="Prints each finding with its file, line and clip, and what training does "
                       "with it. Exit status 0: training can use every clip; 1: errors found (training refuses "
                       "those clips; train --skip-bad-clips leaves them out).")
    c.add_argument("--dataset", choices=_checkable(), required=True)
    _add_train_options(c, DATA_OPTIONS + ("modality",))
    c.add_argument("--split", action="append", default=None, dest="splits", metavar="SPLIT",
                   help="a split to check (repeat for several; default: train, val and test)")
    c.add_argument("--no-videos", action="store_true", help="check that the videos exist, without opening them")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.add_argument("--max-problems", type=_at_least(0), default=20, metavar="N", help="print the first N findings of "
                   "each severity (default 20)")
    v = sub.add_parser("prepare-videos", parents=[debug], help="re-encode videos once at a small short side "
                       "(~17x fewer pixels to decode); train with --prepared-videos DST",
                       description="Writes every video under SRC (recursively) to the same path under DST: "
                       "H.264, short side --short-side, same frames and frame rate, a keyframe every --gop "
                       "frames, plus DST/prepared_manifest.json (each clip's original size: keypoints stay in "
                       "original pixels). Resumable: run it again after an interruption, finished files are "
                       "kept. Exit status 1 when some files could not be converted (listed).")
    v.add_argument("src", help="folder holding the videos (e.g. MA-52's raw_videos/)")
    v.add_argument("dst", help="output folder (pass it to train/eval as --prepared-videos)")
    v.add_argument("--short-side", type=_at_least(16), default=256, help="short side of the outputs (default 256: the "
                   "crop plan's resize for 224 crops; keep it >= --image-size * 256 / 224)")
    v.add_argument("--workers", type=_at_least(1), default=None, help="processes (default: all cores)")
    v.add_argument("--gop", type=_at_least(1), default=DEFAULT_GOP, help=f"keyframe interval (default {DEFAULT_GOP})")
    v.add_argument("--crf", type=_crf, default=DEFAULT_CRF,
                   help=f"x264 quality, 0..51 (default {DEFAULT_CRF}; lower = better)")
    v.add_argument("--pix-fmt", choices=("yuv420p", "yuv444p"), default=DEFAULT_PIX_FMT,
                   help=f"default {DEFAULT_PIX_FMT}; yuv444p keeps full chroma, decodes ~40%% slower")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.commands = {"train": t, "eval": e, "report": r, "check-data": c, "prepare-videos": v}
    p.commands["export"] = _add_export(sub, debug)
    return p


def _data_options(args) -> dict:
    """eval/report's overrides of the checkpoint's data options other than --root (None: as saved)."""
    return {k: getattr(args, k) for k in ("lists", "videos", "pose", "prepared_videos", "skip_bad_clips")}


def _run(args) -> int:
    if args.command == "train":
        from .training import train
        given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
        train(TrainConfig.for_dataset(given.pop("dataset") or TrainConfig.dataset, **given))
    elif args.command == "eval":
        from .training import evaluate_checkpoint
        evaluate_checkpoint(args.checkpoint, num_clips=args.num_clips, batch_size=args.batch_size,
                            dataset=args.dataset, root=args.root, split=args.split, device=args.device,
                            prediction_csv=args.prediction_csv, dtype=args.dtype, **_data_options(args))
    elif args.command == "report":
        from .training.report import report_checkpoint
        report_checkpoint(args.checkpoint, out=args.out, root=args.root, split=args.split,
                          num_clips=args.num_clips, batch_size=args.batch_size, device=args.device,
                          **_data_options(args))
    elif args.command == "prepare-videos":
        return _prepare_videos(args)
    elif args.command == "export":
        return _export(args)
    else:
        return _check_data(args)
    return 0


def _prepare_videos(args) -> int:
    """``mdn-fast prepare-videos``: the report on stdout; 0 when every video was converted, else 1."""
    from .data.prepare_videos import prepare_videos
    rep = prepare_videos(args.src, args.dst, args.short_side, workers=args.workers, progress=not args.no_progress,
                         gop=args.gop, crf=args.crf, pix_fmt=args.pix_fmt)
    print(f"mdn-fast prepare-videos: {rep.encoded} encoded, {rep.skipped} already done, {len(rep.failed)} failed "
          f"in {rep.seconds:.1f} s; manifest {rep.manifest}")
    for rel, err in sorted(rep.failed.items()):
        print(f"  failed: {rel}: {err}")
    if rep.failed:
        print(f"{len(rep.failed)} videos were not converted: training refuses those clips (check-data lists them); "
              f"fix or remove them and run the same command again (it resumes)")
        return 1
    print(f"train with: --prepared-videos {args.dst}")
    return 0


def _add_export(sub, debug) -> argparse.ArgumentParser:
    x = sub.add_parser("export", parents=[debug], help="write a checkpoint's model as a shareable folder: "
                       "config.json + model.safetensors (MicroDualNet.from_pretrained(DIR) reads it)",
                       description="Reads a checkpoint of mdn-fast train (weights_only) and writes DIR/config.json "
                       "(the architecture), DIR/model.safetensors (the weights; no pickle) and DIR/README.md (a "
                       "model card: dataset, epoch, metrics, class names). Upload DIR to a Hugging Face hub repo "
                       "to share it; MicroDualNet.from_pretrained takes the folder or the repo id.")
    x.add_argument("checkpoint", help="OUT/checkpoint.pt, OUT/best.pt or OUT/last.pt")
    x.add_argument("dir", help="output folder (created; refused when it exists and is not empty)")
    x.add_argument("--overwrite", action="store_true", help="write into a non-empty DIR, replacing its config.json, "
                   "model.safetensors and README.md (other files are kept)")
    return x


def _export(args) -> int:
    """``mdn-fast export``: the folder written, and how to load it, on stdout."""
    from .pretrained import export_checkpoint
    out, model = export_checkpoint(args.checkpoint, args.dir, overwrite=args.overwrite)
    n = sum(p.numel() for p in model.parameters())
    print(f"mdn-fast export: wrote {out} (config.json, model.safetensors, README.md): modality={model.modality} "
          f"dim={model.dim} classes={model.config['num_classes']}, {n:,} parameters")
    print(f"load with: mdn_fast.MicroDualNet.from_pretrained({out!r})")
    return 0


def _check_data(args) -> int:
    """``mdn-fast check-data``: the report on stdout; 0 when every clip is usable, else 1."""
    cfg = TrainConfig.for_dataset(args.dataset, root=args.root, lists=args.lists, videos=args.videos,
                                  pose=args.pose, prepared_videos=args.prepared_videos, modality=args.modality)
    if not os.path.isdir(cfg.root):
        raise FileNotFoundError(f"--root {cfg.root!r}: no such folder (--dataset {cfg.dataset})")
    rep = get_dataset(cfg.dataset).check(cfg, tuple(args.splits) if args.splits else None,
                                         not args.no_videos, not args.no_progress)
    print(rep.format(max_problems=args.max_problems))
    return 0 if rep.ok else 1


def _resume_command(args, out: str) -> str:
    """The ``mdn-fast train`` line that resumes an interrupted run: the options given, ``--out OUT`` and
    ``--resume auto``."""
    parts = ["mdn-fast", "train"]
    for f in fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is None or f.name in ("resume", "out"):
            continue
        if f.type == "bool":
            parts.append(cli_flag(f.name))
        else:
            parts += [cli_flag(f.name), str(v)]
    parts += ["--out", out, "--resume", "auto"]
    return shlex.join(parts)


def _interrupted(args, e: KeyboardInterrupt) -> int:
    """Ctrl-C: what was saved and how to continue, on stderr; exit status 130."""
    if args.command == "train" and isinstance(e, TrainingInterrupted):
        if e.main:
            how = ""
            if e.resumable:
                launcher = (" (launched as before: torchrun ... -m mdn_fast train ...)"
                            if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else "")
                how = f"\nresume with: {_resume_command(args, e.out)}{launcher}"
            print(f"mdn-fast train: {e}{how}", file=sys.stderr)
    elif args.command == "train":
        print("mdn-fast train: interrupted (Ctrl-C) before training started: nothing was saved", file=sys.stderr)
    elif args.command == "prepare-videos":
        print("mdn-fast prepare-videos: interrupted (Ctrl-C); finished files are kept: run the same command "
              "again to continue", file=sys.stderr)
    else:
        print(f"mdn-fast {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
    return EXIT_INTERRUPTED


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt as e:     # Ctrl-C: not an error; the status a shell gives a SIGINT
        if args.debug:
            raise
        return _interrupted(args, e)
    except ConfigError as e:          # an option out of range: reported like argparse's own errors (exit 2)
        if args.debug:
            raise
        flag = _EVAL_FLAGS.get(e.field) if args.command != "train" else None
        parser.commands[args.command].error(f"{flag}: {e.problem}" if flag else e.flag_message())
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"mdn-fast {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
