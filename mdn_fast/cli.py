"""``mdn-fast`` command line: ``mdn-fast train`` (synthetic micro-actions by default) and
``mdn-fast eval CHECKPOINT``. Also ``python -m mdn_fast``."""
from __future__ import annotations

import argparse
import sys

from .train import TrainConfig

_D = TrainConfig()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mdn-fast", description="Micro-DualNet: train / evaluate on the "
                                "synthetic micro-action set (no downloads; CPU-friendly defaults).")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on the synthetic set, save OUT/checkpoint.pt",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--modality", choices=("pose", "rgb", "rgb+pose"), default=_D.modality)
    t.add_argument("--epochs", type=int, default=_D.epochs)
    t.add_argument("--batch-size", type=int, default=_D.batch_size)
    t.add_argument("--lr", type=float, default=_D.lr)
    t.add_argument("--weight-decay", type=float, default=_D.weight_decay)
    t.add_argument("--dim", type=int, default=_D.dim)
    t.add_argument("--heads", type=int, default=_D.heads)
    t.add_argument("--depth", type=int, default=_D.depth)
    t.add_argument("--lambda-mac", type=float, default=_D.lambda_mac)
    t.add_argument("--backend", choices=("auto", "reference", "triton", "cpp"), default=_D.backend)
    t.add_argument("--backbone", default=_D.backbone, help="torchvision ResNet for rgb modalities")
    t.add_argument("--num-clips", type=int, default=_D.num_clips, help="training clips")
    t.add_argument("--val-clips", type=int, default=_D.val_clips, help="0: max(64, num_clips // 4)")
    t.add_argument("--num-frames", type=int, default=_D.num_frames)
    t.add_argument("--image-size", type=int, default=_D.image_size, help="rendered frame side (rgb)")
    t.add_argument("--seed", type=int, default=_D.seed)
    t.add_argument("--threads", type=int, default=_D.threads,
                   help="torch CPU threads (0: 1 for pose, torch's default for rgb)")
    t.add_argument("--out", default=_D.out, help="output folder for checkpoint.pt")
    t.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    e = sub.add_parser("eval", help="evaluate a checkpoint on the synthetic val split")
    e.add_argument("checkpoint")
    e.add_argument("--num-clips", type=int, default=None, help="val clips (default: as in training)")
    e.add_argument("--batch-size", type=int, default=None)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        from .train import train
        for name in ("epochs", "batch_size", "num_clips", "dim", "depth", "heads", "num_frames", "image_size"):
            if getattr(args, name) < 1:
                _parser().error(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
        cfg = TrainConfig(modality=args.modality, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          weight_decay=args.weight_decay, dim=args.dim, heads=args.heads, depth=args.depth,
                          lambda_mac=args.lambda_mac, backend=args.backend, backbone=args.backbone,
                          num_clips=args.num_clips, val_clips=args.val_clips, num_frames=args.num_frames,
                          image_size=args.image_size, seed=args.seed, threads=args.threads, out=args.out,
                          progress=not args.no_progress)
        train(cfg)
    else:
        from .train import evaluate_checkpoint
        evaluate_checkpoint(args.checkpoint, num_clips=args.num_clips, batch_size=args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
