"""Evaluation: predictions over a loader (sharded under torchrun), their metrics, the printed lines,
and ``mdn-fast eval`` of a checkpoint."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .. import checkpoint as ckpt_io
from . import distributed as dist_util
from .metrics import f1_scores, topk_accuracy
from .config import TrainConfig, config_from_checkpoint
from .extras import require_data_extras
from .loader import loader_options
from .model import load_checkpoint
from .precision import float_output, for_inference
from .registry import build_datasets, get_dataset
from .steps import batch_loss, forward_loss


@torch.no_grad()
def predict(model, loader, *, device=None, amp: bool = False, ctx=None, indices=None) -> dict:
    """Run ``model`` over ``loader``: ``{"logits" [N, C], "labels" [N], "alpha" [N, depth, K, 2],
    "loss_sum", "num_clips"}`` (CPU, float32; ``loss_sum`` NaN when some labels are hidden (-1)). Distributed: each rank passes its shard's ``indices``;
    the result (on every rank) is the whole set in index order."""
    net = dist_util.unwrap(model)
    device = device if device is not None else next(net.parameters()).device
    net.eval()
    logits, labels, alphas, loss_sum = [], [], [], 0.0
    for batch in loader:
        labelled = bool((batch["label"] >= 0).all())     # hidden labels (-1): logits only, no loss
        _, out = forward_loss(net, batch, device, amp, with_loss=False)
        out = float_output(out)                          # loss and metrics in fp32 (bf16 inference too)
        b = batch["label"].shape[0]
        loss_sum += float(batch_loss(net, out, batch, device)) * b if labelled else float("nan")
        logits.append(out.logits.cpu())
        labels.append(batch["label"].cpu())
        alphas.append(out.alpha.float().cpu())
    C = net.head.out_features
    K = len(net.entities)
    logits = torch.cat(logits) if logits else torch.zeros(0, C)
    labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    alphas = torch.cat(alphas) if alphas else torch.zeros(0, len(net.blocks), K, 2)
    ctx = ctx or dist_util.DistContext(device=device)
    if ctx.distributed:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if idx.numel() != labels.numel():
            raise ValueError(f"indices: {idx.numel()} given for {labels.numel()} evaluated clips")
        idx = dist_util.gather_rows(ctx, idx)
        order = torch.argsort(idx)
        logits = dist_util.gather_rows(ctx, logits)[order]
        labels = dist_util.gather_rows(ctx, labels)[order]
        alphas = dist_util.gather_rows(ctx, alphas)[order]
        (loss_sum,) = dist_util.all_reduce_sum(ctx, loss_sum)
    return {"logits": logits, "labels": labels, "alpha": alphas, "loss_sum": loss_sum,
            "num_clips": int(labels.numel())}


def summarize(pred: dict, body_of_class) -> dict:
    """Metrics of ``predict``'s output: Top-1, Top-5, F1_mean (None without body classes) and its
    parts, val loss, mean routing weights ``alpha [depth][K][2]``, clip count."""
    logits, labels, n = pred["logits"], pred["labels"], pred["num_clips"]
    if n == 0:
        raise ValueError("evaluation set: no clips")
    if (labels < 0).any():
        raise ValueError(f"evaluation set: {int((labels < 0).sum())} clips have hidden labels (-1)")
    m = {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5),
         "f1_mean": None, "f1_parts": {}, "val_loss": pred["loss_sum"] / n,
         "alpha": pred["alpha"].mean(0).tolist(), "num_clips": n}
    if body_of_class is not None:
        scores = f1_scores(logits, labels, body_of_class)
        m["f1_mean"] = scores["f1_mean"]
        m["f1_parts"] = {k: v for k, v in scores.items() if k != "f1_mean"}
    return m


def evaluate(model, loader, body_of_class, *, device=None, amp: bool = False, ctx=None, indices=None) -> dict:
    """``summarize(predict(...))``: Top-1, Top-5, F1_mean (with parts), mean loss, mean routing weights."""
    return summarize(predict(model, loader, device=device, amp=amp, ctx=ctx, indices=indices), body_of_class)


def routing_table(alpha, entities) -> str:
    """Routing weights per entity and block as text: ``entity  a_ST  a_TS``."""
    lines = []
    for d, blk in enumerate(alpha):
        lines.append(f"block {d}:  entity        a_ST   a_TS")
        for name, (a_st, a_ts) in zip(entities, blk):
            lean = "ST" if a_st > a_ts else "TS"
            lines.append(f"          {name:<12}  {a_st:.3f}  {a_ts:.3f}   (leans {lean})")
    return "\n".join(lines)


def format_metrics(m: dict) -> str:
    f1 = f"  F1_mean {100 * m['f1_mean']:.2f}" if m.get("f1_mean") is not None else ""
    return f"Top-1 {100 * m['top1']:.2f}  Top-5 {100 * m['top5']:.2f}{f1}  val loss {m['val_loss']:.4f}"


def evaluate_checkpoint(path: str, num_clips: int | None = None, batch_size: int | None = None, *,
                        dataset: str | None = None, root: str | None = None, split: str | None = None,
                        device: str = "auto", log=print, return_predictions: bool = False,
                        prediction_csv: str | None = None, dtype: str = "fp32", command: str = "eval",
                        **data_options):
    """Evaluate a checkpoint on the val split of the dataset it was trained on (synthetic: same seed and
    size unless ``num_clips`` is given; real data: ``root``/``split`` and ``data_options`` — ``lists``,
    ``videos``, ``pose``, ``skip_bad_clips`` — override the saved ones). With ``dataset`` naming another
    dataset, a model that does not fit it is refused (ValueError).

    ``dtype``: ``"fp32"`` or ``"bf16"`` (``mdn_fast.training.precision``: bf16 weights on CPU, autocast on
    CUDA; metrics in fp32 from the logits).
    ``prediction_csv``: also write the dataset's submission file (MA-52 ``prediction.csv``) there. A split
    whose labels are hidden (the MA-52 test split) is evaluated only then, and reports no metrics:
    ``{"hidden_labels": True, "num_clips", "alpha", "prediction_csv"}``.
    ``return_predictions``: ``(metrics, predict() output, spec, model, checkpoint)`` instead of metrics.
    ``command``: the ``mdn-fast`` command named on the first printed line (``report`` evaluates through here)."""
    if num_clips is not None and num_clips < 0:
        raise ValueError(f"num_clips: expected >= 0 (0 or None: as in training), got {num_clips}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1 (None: as in training), got {batch_size}")
    ckpt = ckpt_io.load(path)
    cfg = config_from_checkpoint(ckpt, root=root, val_split=split, **data_options)
    if dataset is not None and dataset != cfg.dataset:
        # the other dataset read as the model would read it (modality, frames), so that a model that
        # does not fit is refused for what it is rather than for a missing file of another modality
        mc = ckpt["model_config"]
        modality = mc.get("modality")
        cfg = TrainConfig.for_dataset(dataset, root=root, val_split=split, num_frames=mc.get("num_frames"),
                                      modality=modality if modality in get_dataset(dataset).modalities else None,
                                      **data_options)
    entry = get_dataset(cfg.dataset)
    if prediction_csv and entry.write_predictions is None:
        raise ValueError(f"--prediction-csv: --dataset {cfg.dataset} has no submission format (MA-52 has: "
                         f"prediction.csv)")
    require_data_extras(cfg)
    if num_clips:
        cfg.val_clips = num_clips
    _, val_set, spec = build_datasets(cfg, need_train=False, allow_hidden=bool(prediction_csv), split_flag="--split")
    model, ckpt = load_checkpoint(path, spec)
    dev = dist_util.resolve_device(device)
    model.to(dev)
    amp = for_inference(model, dev, dtype) or cfg.amp
    loader = DataLoader(val_set, batch_size=batch_size or cfg.eval_batch_size or max(cfg.batch_size, 64),
                        **loader_options(cfg.workers, dev))
    pred = predict(model, loader, device=dev, amp=amp)
    log(f"mdn-fast {command} {path}: dataset={cfg.dataset} modality={model.modality} split={cfg.val_split} "
        f"clips={pred['num_clips']}" + (f" dtype={dtype}" if dtype != "fp32" else ""))
    hidden = bool((pred["labels"] < 0).any())
    if hidden:   # placeholder labels: no metric is meaningful, so none is computed
        m = {"hidden_labels": True, "num_clips": pred["num_clips"], "alpha": pred["alpha"].mean(0).tolist()}
        log(f"labels of split {cfg.val_split!r} are hidden: no Top-1 / Top-5 / F1_mean here; submit the "
            f"prediction file to the benchmark's evaluation server for the scores")
    else:
        m = summarize(pred, spec.body_of_class)
        log(f"held-out: {format_metrics(m)}  (chance Top-1 {100 / spec.num_classes:.2f}%)")
    if prediction_csv:
        written = entry.write_predictions(prediction_csv, val_set, pred["logits"])
        m["prediction_csv"] = str(written)
        log(f"wrote {written} ({pred['num_clips']} clips of split {cfg.val_split!r})")
    log(f"learned routing weights (mean over the {cfg.val_split} clips):\n" + routing_table(m["alpha"], model.entities))
    if return_predictions:
        return m, pred, spec, model, ckpt
    return m
