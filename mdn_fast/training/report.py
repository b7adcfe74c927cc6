"""``mdn-fast report``: evaluate a checkpoint on its val split and write the plots of ``mdn_fast.training.plots``
(routing weights per class and entity, confusion matrices, training curves) and ``report.json``."""
from __future__ import annotations

import json
import os

import torch

from .plots import alpha_per_class, confusion_matrix, plot_confusion, plot_curves, plot_routing
from .evaluation import evaluate_checkpoint
from .extras import require_extra


def report_checkpoint(path: str, out: str | None = None, *, root=None, split=None, num_clips=None,
                      batch_size=None, device="auto", log=print, **data_options) -> list[str]:
    """Evaluate ``path`` on its dataset's val split and write the plots + ``report.json`` to ``out``
    (default ``<checkpoint folder>/report``). Returns the written paths. matplotlib (the ``[plots]``
    extra) is checked first, before the evaluation."""
    require_extra("plots", "mdn-fast report draws its plots with it")
    m, pred, spec, model, ckpt = evaluate_checkpoint(path, num_clips=num_clips, batch_size=batch_size, root=root,
                                                     split=split, device=device, log=log,
                                                     return_predictions=True, command="report", **data_options)
    out = out or os.path.join(os.path.dirname(os.path.abspath(path)), "report")
    os.makedirs(out, exist_ok=True)
    entities = list(model.entities)
    C = spec.num_classes
    per_class = alpha_per_class(pred["alpha"], pred["labels"], C)
    written = list(plot_routing(per_class, entities, os.path.join(out, "routing_per_class.png"),
                                os.path.join(out, "routing_mean.png"), spec.class_names,
                                mean=pred["alpha"].double().mean(0)))
    top1 = pred["logits"].argmax(1)
    written.append(plot_confusion(confusion_matrix(top1, pred["labels"], C), os.path.join(out, "confusion_actions.png"),
                                  spec.class_names, title="actions"))
    if spec.body_of_class is not None:
        table = torch.as_tensor(spec.body_of_class, dtype=torch.long)
        nb = int(table.max()) + 1
        written.append(plot_confusion(confusion_matrix(table[top1], table[pred["labels"]], nb),
                                      os.path.join(out, "confusion_body.png"), spec.body_names,
                                      title="body (from top-1 action)"))
    history = ckpt.get("history") or []
    if history:
        written.append(plot_curves(history, os.path.join(out, "curves.png")))
    else:
        log("no training history in the checkpoint: curves.png skipped")
    summary = {"checkpoint": os.path.abspath(path), "metrics": m, "entities": entities,
               "class_names": list(spec.class_names) if spec.class_names else None,
               "alpha_per_class": [[[[None if v != v else v for v in pair] for pair in blk] for blk in row]
                                   for row in per_class.tolist()]}
    jpath = os.path.join(out, "report.json")
    with open(jpath, "w") as f:
        json.dump(summary, f, indent=1)
    written.append(jpath)
    log("wrote " + ", ".join(os.path.basename(w) for w in written) + f" to {out}")
    return written
