"""``mdn-fast`` command line (also ``python -m mdn_fast``):

- ``mdn-fast train [--dataset synthetic|ma52|imigue --root PATH] ...``: train, evaluate each epoch, write
  ``OUT/last.pt``, ``OUT/best.pt``, ``OUT/checkpoint.pt``. Multi-GPU / multi-node: launch it with
  ``torchrun --nproc_per_node N -m mdn_fast train ...`` (or ``torchrun ... $(which mdn-fast) train``).
- ``mdn-fast eval CHECKPOINT``: metrics on the val split of the checkpoint's dataset.
- ``mdn-fast report CHECKPOINT [--out DIR]``: PNG plots (routing weights per class and entity,
  confusion matrices, training curves).
With no options ``mdn-fast train`` trains on the synthetic set (no downloads; CPU-friendly defaults).

The ``train`` options are built from ``TrainConfig``'s fields (type, help, choices from the field
metadata; an option left unset takes the ``--dataset``'s preset) and checked by ``TrainConfig`` alone.
A user error (bad option, missing data, refused checkpoint, diverged training) prints one
``mdn-fast COMMAND: error: ...`` message and exits non-zero; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from .training import ConfigError, TrainConfig, dataset_names
from .training.config import cli_flag, preset_values

#: Exceptions that report a problem with the user's input or files, not a bug: one line, no traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError)
_TYPES = {"int": int, "float": float, "str": str}


def _default_help(name: str) -> str:
    """Help text for an option whose default depends on --dataset."""
    vals = {ds: "none" if v == "" else v for ds, v in preset_values(name).items()}
    if len(set(map(str, vals.values()))) == 1:
        return f"default {next(iter(vals.values()))}"
    return "default " + ", ".join(f"{v} ({ds})" for ds, v in vals.items())


def _add_train_options(t: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field; every default is None (unset: the dataset's preset applies)."""
    for f in fields(TrainConfig):
        meta = f.metadata
        help_ = meta["help"]() if callable(meta["help"]) else meta["help"]
        if meta["show_default"]:
            help_ = (help_ + "; " if help_ else "") + _default_help(f.name)
        kw = dict(dest=f.name, default=None, help=help_ or None)
        if f.type == "bool":   # a switch that sets the opposite of the field's default
            t.add_argument(cli_flag(f.name), action="store_const", const=not f.default, **kw)
            continue
        if f.type not in _TYPES:
            raise TypeError(f"TrainConfig.{f.name}: a CLI option is an int, float, str or bool field, got {f.type!r}")
        choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
        t.add_argument(cli_flag(f.name), type=_TYPES[f.type], choices=choices, metavar=meta["metavar"], **kw)


def _parser() -> argparse.ArgumentParser:
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

    e = sub.add_parser("eval", parents=[debug], help="evaluate a checkpoint on its dataset's val split")
    e.add_argument("checkpoint")
    e.add_argument("--num-clips", type=int, default=None, help="val clips (default: as in training)")
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--dataset", choices=dataset_names(), default=None, help="default: the checkpoint's")
    e.add_argument("--root", default=None, help="data folder (default: the checkpoint's)")
    e.add_argument("--split", default=None, help="split to evaluate (default: the checkpoint's val split)")
    e.add_argument("--device", default="auto")

    r = sub.add_parser("report", parents=[debug], help="PNG plots of a checkpoint: routing weights, confusion, "
                       "curves")
    r.add_argument("checkpoint")
    r.add_argument("--out", default=None, help="output folder (default: CHECKPOINT's folder/report)")
    r.add_argument("--root", default=None, help="data folder (default: the checkpoint's)")
    r.add_argument("--split", default=None, help="split to evaluate (default: the checkpoint's val split)")
    r.add_argument("--num-clips", type=int, default=None)
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--device", default="auto")
    return p


def _run(args) -> None:
    if args.command == "train":
        from .training import train
        given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
        train(TrainConfig.for_dataset(given.pop("dataset") or TrainConfig.dataset, **given))
    elif args.command == "eval":
        from .training import evaluate_checkpoint
        evaluate_checkpoint(args.checkpoint, num_clips=args.num_clips, batch_size=args.batch_size,
                            dataset=args.dataset, root=args.root, split=args.split, device=args.device)
    else:
        from .training.report import report_checkpoint
        report_checkpoint(args.checkpoint, out=args.out, root=args.root, split=args.split,
                          num_clips=args.num_clips, batch_size=args.batch_size, device=args.device)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _run(args)
    except ConfigError as e:          # an option out of range: reported like argparse's own errors (exit 2)
        if args.debug:
            raise
        parser.error(e.flag_message())
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"mdn-fast {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
