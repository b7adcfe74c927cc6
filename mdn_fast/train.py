"""Import path kept for scripts written against the first releases: the training code now lives in
``mdn_fast.training`` (config, dataset registry, loop, evaluation); these are the same objects."""
from .training import (DatasetSpec, TrainConfig, autocast, build_datasets, config_from_checkpoint,  # noqa: F401
                       evaluate, evaluate_checkpoint, format_metrics, forward_loss, load_checkpoint, lr_factor,
                       make_scheduler, model_config, predict, routing_table, seed_everything, summarize, train)
