"""How long a training epoch waits for its data: the per-epoch line and the one-time warning that the
input pipeline, not the model, sets the pace.

``DataWait.timed(batches)`` wraps the loader's iterator: the time spent blocked in ``next()`` is the
data wait, the rest of the epoch the step time. Nothing is synchronised per step (a CUDA sync per step
would serialise the host and the device and change what is measured); ``stop()`` synchronises once at
the end of the epoch, so the step time includes the queued device work. The first batch of an epoch is
reported on its own: it includes the loader's start-up (worker processes forked) and is left out of the
bottleneck test.
"""
from __future__ import annotations

import time

import torch

#: Waiting for data more than this fraction of an epoch (first batch excluded) is a data-bound run.
DATA_BOUND_FRACTION = 0.25


class DataWait:
    """One epoch's data wait (``wait_s``, of which ``first_s`` for the first batch) and total (``total_s``)."""

    def __init__(self, device=None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.wait_s = self.first_s = self.total_s = 0.0
        self.steps = 0
        self._t0 = None

    def timed(self, batches):
        """Yield the batches of ``batches``, timing each ``next()``."""
        it = iter(batches)
        self._t0 = time.perf_counter()
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            dt = time.perf_counter() - t
            if self.steps == 0:
                self.first_s = dt
            self.wait_s += dt
            self.steps += 1
            yield batch

    def stop(self) -> "DataWait":
        """End of the epoch: wait for the device's queued work, then fix the total."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.total_s = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return self

    @property
    def step_s(self) -> float:
        return max(0.0, self.total_s - self.wait_s)

    @property
    def waiting(self) -> float:
        """Fraction of the epoch spent waiting for data."""
        return self.wait_s / self.total_s if self.total_s > 0 else 0.0

    def data_bound(self) -> bool:
        """Did the loader set the pace (waiting > ``DATA_BOUND_FRACTION`` of the epoch after the first batch)?"""
        rest = self.total_s - self.first_s
        return self.steps > 1 and rest > 0 and (self.wait_s - self.first_s) / rest > DATA_BOUND_FRACTION

    def line(self) -> str:
        per = 1e3 / max(1, self.steps)
        return (f"  data time {self.wait_s:.2f} s  step time {self.step_s:.2f} s  {100 * self.waiting:.0f}% waiting "
                f"for data  ({self.steps} step{'s' if self.steps != 1 else ''}: {self.wait_s * per:.0f} ms data + {self.step_s * per:.0f} ms step "
                f"each; first batch {self.first_s:.2f} s)")


class DataWaitLog:
    """Logs each epoch's ``DataWait.line()``, and once per run a warning naming the fixes when an epoch
    was data-bound. ``workers``: the loader's worker count; ``prepare_hint``: the dataset reads
    original videos that ``mdn-fast prepare-videos`` would shrink."""

    def __init__(self, log, workers: int, cores: int, prepare_hint: bool):
        self.log, self.workers, self.cores, self.prepare_hint = log, workers, cores, prepare_hint
        self.warned = False

    def __call__(self, meter: DataWait) -> None:
        self.log(meter.line())
        if meter.data_bound() and not self.warned:
            self.warned = True
            fixes = []
            if self.prepare_hint:
                fixes.append("decode smaller videos: `mdn-fast prepare-videos SRC DST --short-side 256` once, "
                             "then train with --prepared-videos DST")
            if self.workers < self.cores:
                fixes.append(f"more loader processes: --workers {self.cores} (now {self.workers}; "
                             f"{self.cores} cores; --workers -1 = one per core)")
            else:
                fixes.append(f"all {self.cores} cores already load data ({self.workers} workers): a machine with "
                             f"more cores per accelerator")
            self.log(f"warning: the data loader is the bottleneck: {100 * meter.waiting:.0f}% of the epoch was spent "
                     f"waiting for batches. Fixes: " + "; ".join(fixes) + ". (Printed once.)")
