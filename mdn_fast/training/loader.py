"""DataLoader settings of training and evaluation, chosen from measurements (the input-pipeline
benchmark, ``benchmarks/test_input_pipeline.py``, on MA-52-like clips):

- ``workers=-1``: one worker per core (divided among the processes of a node under torchrun). Decoding
  and cropping dominate the input pipeline of the rgb modalities and scale with the cores; a core left
  without a worker is throughput lost. The MA-52 preset uses it.
- ``persistent_workers=True``: the first batch took 0.5-6.7 s at every start of a loader (worker
  processes forked, datasets re-opened) - once per epoch per loader without it.
- ``prefetch_factor=4`` batches per worker queued ahead (the only value measured; PyTorch's default is 2),
  so a slow clip (a long video) does not stall the step.
- ``pin_memory`` only on CUDA (page-locked staging of host-to-device copies; useless on a CPU run).
"""
from __future__ import annotations

import os

import torch

PREFETCH_FACTOR = 4


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        return os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    """``--workers``: -1 -> every core shared by this node's processes (``LOCAL_WORLD_SIZE``); else as given."""
    if workers >= 0:
        return int(workers)
    per_node = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, available_cores() // per_node)


def loader_options(workers: int, device: torch.device) -> dict:
    """``DataLoader`` keyword arguments for ``--workers`` on ``device`` (see the module docstring)."""
    n = resolve_workers(workers)
    opts = dict(num_workers=n, pin_memory=torch.device(device).type == "cuda")
    if n > 0:   # both options are refused by DataLoader without worker processes
        opts.update(persistent_workers=True, prefetch_factor=PREFETCH_FACTOR)
    return opts
