"""The data-wait meter (time blocked in next(loader) vs the rest of the epoch), its line, the one-time
bottleneck warning, and the DataLoader settings (issue 12.4). A fake clock: no timed asserts."""
import pytest
import torch

import mdn_fast.training.data_wait as dw
from mdn_fast.training.data_wait import DataWait, DataWaitLog
from mdn_fast.training.loader import PREFETCH_FACTOR, available_cores, loader_options, resolve_workers


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _epoch(monkeypatch, load_s, step_s, steps=4, first_s=None):
    """Run a DataWait over ``steps`` batches, each taking ``load_s`` to load (``first_s`` the first) and
    ``step_s`` to process, on a fake clock."""
    clock = FakeClock()
    monkeypatch.setattr(dw.time, "perf_counter", clock)

    def batches():
        for i in range(steps):
            clock.t += first_s if (i == 0 and first_s is not None) else load_s
            yield i

    meter = DataWait("cpu")
    got = []
    for b in meter.timed(batches()):
        got.append(b)
        clock.t += step_s
    meter.stop()
    assert got == list(range(steps))
    return meter


def test_meter_splits_wait_and_step(monkeypatch):
    m = _epoch(monkeypatch, load_s=0.1, step_s=0.3, steps=4, first_s=2.0)
    assert m.steps == 4
    assert m.wait_s == pytest.approx(2.3) and m.first_s == pytest.approx(2.0)
    assert m.total_s == pytest.approx(3.5) and m.step_s == pytest.approx(1.2)
    assert m.waiting == pytest.approx(2.3 / 3.5)
    assert not m.data_bound()          # the first batch (loader start-up) alone does not count
    line = m.line()
    assert "data time 2.30 s  step time 1.20 s  66% waiting for data" in line
    assert "(4 steps: 575 ms data + 300 ms step each; first batch 2.00 s)" in line


def test_warning_once_and_fixes(monkeypatch):
    logged = []
    log = DataWaitLog(logged.append, workers=2, cores=16, prepare_hint=True)
    log(_epoch(monkeypatch, load_s=0.05, step_s=0.3))       # compute-bound: the line only
    assert len(logged) == 1 and "warning" not in logged[0]
    slow = _epoch(monkeypatch, load_s=0.5, step_s=0.1)
    assert slow.data_bound()
    log(slow)
    assert len(logged) == 3 and logged[2].startswith("warning: the data loader is the bottleneck: 83% of the epoch")
    assert "mdn-fast prepare-videos" in logged[2] and "--prepared-videos" in logged[2]
    assert "--workers 16 (now 2; 16 cores" in logged[2]
    log(slow)                                                   # once per run
    assert len(logged) == 4 and "warning" not in logged[3]
    # prepared videos, every core a worker: neither fix named as such
    other = []
    DataWaitLog(other.append, workers=16, cores=16, prepare_hint=False)(slow)
    assert "prepare-videos" not in other[1] and "all 16 cores already load data" in other[1]


def test_loader_options(monkeypatch):
    assert loader_options(0, torch.device("cpu")) == dict(num_workers=0, pin_memory=False)
    assert loader_options(3, torch.device("cpu")) == dict(num_workers=3, pin_memory=False, persistent_workers=True,
                                                          prefetch_factor=PREFETCH_FACTOR)
    assert loader_options(2, torch.device("cuda"))["pin_memory"] is True
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_workers(-1) == available_cores() >= 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(4 * available_cores()))
    assert resolve_workers(-1) == 1                      # never 0 workers for "every core"
    # the loader accepts them
    loader = torch.utils.data.DataLoader(list(range(4)), batch_size=2, **loader_options(1, torch.device("cpu")))
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3]] and loader.persistent_workers
