"""``mdn-fast`` command line (also ``python -m mdn_fast``):

- ``mdn-fast train [--dataset synthetic|ma52|imigue --root PATH] ...``: train, evaluate each epoch, write
  ``OUT/last.pt``, ``OUT/best.pt``, ``OUT/checkpoint.pt``. Multi-GPU / multi-node: launch it with
  ``torchrun --nproc_per_node N -m mdn_fast train ...`` (or ``torchrun ... $(which mdn-fast) train``).
- ``mdn-fast eval CHECKPOINT``: metrics on the val split of the checkpoint's dataset.
- ``mdn-fast report CHECKPOINT [--out DIR]``: PNG plots (routing weights per class and entity,
  confusion matrices, training curves).
With no options ``mdn-fast train`` trains on the synthetic set (no downloads; CPU-friendly defaults).
"""
from __future__ import annotations

import argparse
import sys

from .ops._backends import VALID as VALID_BACKENDS
from .train import DATASETS, PRESETS, TrainConfig

_D = TrainConfig()


def _default(name):
    """Help text for an option whose default depends on --dataset."""
    vals = {ds: PRESETS[ds].get(name, getattr(_D, name)) for ds in DATASETS}
    vals = {ds: "none" if v == "" else v for ds, v in vals.items()}
    if len(set(map(str, vals.values()))) == 1:
        return f"default {vals['synthetic']}"
    return "default " + ", ".join(f"{v} ({ds})" for ds, v in vals.items())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mdn-fast", description="Micro-DualNet: train / evaluate / report "
                                "(synthetic micro-actions by default: no downloads, CPU-friendly).")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train; save OUT/last.pt, OUT/best.pt, OUT/checkpoint.pt",
                       description="Options left unset take the --dataset's preset (shown per dataset).")
    t.add_argument("--dataset", choices=DATASETS, default="synthetic")
    t.add_argument("--root", default=None, help="data folder (required for ma52 / imigue)")
    t.add_argument("--val-split", default=None, help="split evaluated each epoch (default val; iMiGUE's "
                   "'valid' is found as 'val')")

    def opt(flag, typ, help_=""):
        name = flag[2:].replace("-", "_")
        t.add_argument(flag, type=typ, default=None, help=(help_ + "; " if help_ else "") + _default(name))

    t.add_argument("--modality", choices=("pose", "rgb", "rgb+pose"), default=None, help=_default("modality"))
    opt("--epochs", int)
    opt("--batch-size", int, "global batch (split over torchrun processes)")
    opt("--lr", float, "peak learning rate (AdamW)")
    opt("--weight-decay", float)
    opt("--warmup-epochs", float, "linear warm-up, then cosine decay to 1%% of --lr")
    opt("--grad-clip", float, "max gradient norm, 0 = off")
    t.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA or CPU)")
    opt("--dim", int)
    opt("--heads", int)
    opt("--depth", int)
    opt("--lambda-mac", float)
    t.add_argument("--backend", choices=VALID_BACKENDS, default=None, help="default auto")
    opt("--backbone", str, "torchvision ResNet for rgb modalities")
    opt("--backbone-weights", str, "local ResNet state-dict file (ImageNet init); never downloaded")
    opt("--num-clips", int, "training clips (real data: 0 = all, N = first N)")
    opt("--val-clips", int, "synthetic: 0 = max(64, num_clips // 4); real data: 0 = all")
    opt("--num-frames", int)
    opt("--image-size", int, "synthetic frame side / MA-52 crop side")
    opt("--seed", int)
    opt("--threads", int, "torch CPU threads (0: 1 for pose, torch's default for rgb)")
    opt("--workers", int, "DataLoader worker processes")
    opt("--eval-batch-size", int, "0 = max(per-process batch, 64)")
    t.add_argument("--device", default=None, help="auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda")
    opt("--out", str, "output folder")
    t.add_argument("--resume", default=None, metavar="PATH|auto",
                   help="continue from a last.pt/best.pt; 'auto' = OUT/last.pt if present")
    opt("--stop-after", int, "stop after N epochs of this invocation (0 = run to --epochs); resume later")
    t.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")

    e = sub.add_parser("eval", help="evaluate a checkpoint on its dataset's val split")
    e.add_argument("checkpoint")
    e.add_argument("--num-clips", type=int, default=None, help="val clips (default: as in training)")
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--dataset", choices=DATASETS, default=None, help="default: the checkpoint's")
    e.add_argument("--root", default=None, help="data folder (default: the checkpoint's)")
    e.add_argument("--split", default=None, help="split to evaluate (default: the checkpoint's val split)")
    e.add_argument("--device", default="auto")

    r = sub.add_parser("report", help="PNG plots of a checkpoint: routing weights, confusion, curves")
    r.add_argument("checkpoint")
    r.add_argument("--out", default=None, help="output folder (default: CHECKPOINT's folder/report)")
    r.add_argument("--root", default=None, help="data folder (default: the checkpoint's)")
    r.add_argument("--split", default=None, help="split to evaluate (default: the checkpoint's val split)")
    r.add_argument("--num-clips", type=int, default=None)
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--device", default="auto")
    return p


_TRAIN_FIELDS = ("root", "val_split", "modality", "epochs", "batch_size", "lr", "weight_decay", "warmup_epochs",
                 "grad_clip", "dim", "heads", "depth", "lambda_mac", "backend", "backbone", "backbone_weights",
                 "num_clips", "val_clips", "num_frames", "image_size", "seed", "threads", "workers",
                 "eval_batch_size", "device", "out", "resume", "stop_after")


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        from .train import train
        for name in ("epochs", "batch_size", "dim", "depth", "heads", "num_frames", "image_size"):
            v = getattr(args, name)
            if v is not None and v < 1:
                parser.error(f"--{name.replace('_', '-')}: expected >= 1, got {v}")
        for name in ("num_clips", "val_clips", "grad_clip", "warmup_epochs", "workers", "stop_after", "threads",
                     "eval_batch_size"):
            v = getattr(args, name)
            if v is not None and v < 0:
                parser.error(f"--{name.replace('_', '-')}: expected >= 0, got {v}")
        if args.dataset == "synthetic" and args.num_clips == 0:
            parser.error("--num-clips: expected >= 1 for the synthetic set, got 0")
        if args.dataset != "synthetic" and not args.root:
            parser.error(f"--root: required for --dataset {args.dataset} (the folder holding the data; see "
                         f"docs/training.md)")
        given = {k: getattr(args, k) for k in _TRAIN_FIELDS}
        cfg = TrainConfig.for_dataset(args.dataset, amp=args.amp or None, progress=not args.no_progress, **given)
        train(cfg)
    elif args.command == "eval":
        from .train import evaluate_checkpoint
        evaluate_checkpoint(args.checkpoint, num_clips=args.num_clips, batch_size=args.batch_size,
                            dataset=args.dataset, root=args.root, split=args.split, device=args.device)
    else:
        from .plots import report_checkpoint
        report_checkpoint(args.checkpoint, out=args.out, root=args.root, split=args.split,
                          num_clips=args.num_clips, batch_size=args.batch_size, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
