"""Training and evaluation of ``mdn-fast train`` / ``eval`` / ``report``.

- ``config``: ``TrainConfig``, every option with its help, limits and choices (the CLI is built from it).
- ``registry``: ``DatasetEntry`` / ``register_dataset`` (one entry per dataset: preset, spec, how to open
  a split, its labels), ``build_datasets``; ``datasets``: the built-in synthetic, ma52, imigue entries.
- ``loop``: ``train(cfg)``; ``steps``: forward + loss, LR schedule, seeding; ``run_state``: what a run
  carries between epochs, its checkpoints and resume; ``model``: model kwargs, ``load_checkpoint``;
  ``evaluation``: predictions, metrics, ``evaluate_checkpoint``; ``report``: ``mdn-fast report``.
"""
from . import datasets  # noqa: F401  (registers the built-in datasets)
from .config import ConfigError, TrainConfig, config_from_checkpoint
from .evaluation import evaluate, evaluate_checkpoint, format_metrics, predict, routing_table, summarize
from .loop import train
from .model import load_checkpoint, model_config
from .registry import (DatasetEntry, DatasetSpec, build_datasets, dataset_names, get_dataset, register_dataset,
                       unregister_dataset)
from .steps import autocast, forward_loss, lr_factor, make_scheduler, seed_everything

__all__ = ["ConfigError", "TrainConfig", "config_from_checkpoint", "evaluate", "evaluate_checkpoint",
           "format_metrics", "predict", "routing_table", "summarize", "train", "load_checkpoint", "model_config",
           "DatasetEntry", "DatasetSpec", "build_datasets", "dataset_names", "get_dataset", "register_dataset",
           "unregister_dataset", "autocast", "forward_loss", "lr_factor", "make_scheduler", "seed_everything"]
