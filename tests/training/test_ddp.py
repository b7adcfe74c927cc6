"""DistributedDataParallel on the CPU (gloo backend, two processes on a loopback port).

- Gradients: two ranks, each with half of a batch, through ``mdn_fast.training.distributed.wrap_model`` and
  ``mdn_fast.training.forward_loss``; DDP's averaged gradients equal one process's gradients on the
  concatenated batch, MAC term included (``MACLoss`` all-gathers the pooled path features, so its
  negatives are the global batch). Also ``gather_rows`` with uneven shards.
- ``torchrun --nproc_per_node 2 -m mdn_fast train``: runs, only rank 0 logs and writes, and the
  distributed per-epoch evaluation gives the numbers that a single-process ``mdn-fast eval`` of the
  saved checkpoint gives.
"""
import os
import re
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from mdn_fast.data.synthetic import SyntheticMicroActions
from mdn_fast.nn.micro_dualnet import MicroDualNet

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model():
    torch.manual_seed(0)
    return MicroDualNet(num_classes=12, num_body_classes=7, modality="pose", dim=16, heads=2, lambda_mac=1.0)


def _batch(B=6):
    ds = SyntheticMicroActions(B, seed=4, split="val")
    return {"keypoints": ds.keypoints, "label": ds.labels, "body_label": ds.body_labels}


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from mdn_fast.training import distributed as du
    from mdn_fast.training import forward_loss
    ctx = du.setup("cpu")
    try:
        assert ctx.distributed and ctx.rank == rank and torch.distributed.get_backend() == "gloo"
        model = _model()
        net = du.wrap_model(model, ctx)
        full = _batch()
        per = full["label"].shape[0] // world
        part = {k: v[rank * per:(rank + 1) * per] for k, v in full.items()}
        loss, _ = forward_loss(net, part, torch.device("cpu"))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        # uneven shards: rank r holds r + 2 rows of value 10 * r + row
        rows = torch.arange(rank + 2, dtype=torch.float32)[:, None].repeat(1, 3) + 10 * rank
        gathered = du.gather_rows(ctx, rows)
        sums = du.all_reduce_sum(ctx, 1.5, rank)
        torch.save({"grads": grads, "gathered": gathered, "sums": sums}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        du.cleanup(ctx)


def test_ddp_gradients_equal_single_process_on_concatenated_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    torch.set_num_threads(1)
    from mdn_fast.training import forward_loss
    model = _model()
    loss, _ = forward_loss(model, _batch(), torch.device("cpu"))
    loss.backward()
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    nonzero = 0
    for n, p in model.named_parameters():
        g0, g1 = r0["grads"][n], r1["grads"][n]
        assert torch.equal(g0, g1), n                                   # every rank holds the same average
        torch.testing.assert_close(g0, p.grad, rtol=0, atol=1e-6, msg=n)
        nonzero += int(p.grad.abs().max() > 1e-4)
    assert nonzero > 10                                                 # the comparison is not of zeros
    expect = torch.cat([torch.arange(2.)[:, None].repeat(1, 3), torch.arange(3.)[:, None].repeat(1, 3) + 10])
    assert torch.equal(r0["gathered"], expect) and torch.equal(r1["gathered"], expect)
    assert r0["sums"] == r1["sums"] == [3.0, 1.0]


def _metric(text, name):
    """The value of ``name`` on the last epoch line (not the "(chance Top-1 ...)" remark)."""
    line = re.findall(r"^epoch +\d+/\d+ .*$", text, re.M)[-1]
    return float(re.search(rf"{name} (\d+\.\d+)", line).group(1))


def test_torchrun_two_process_train(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "mdn_fast", "train", "--num-clips", "32", "--val-clips", "21",
           "--epochs", "2", "--batch-size", "8", "--dim", "16", "--heads", "2", "--no-progress", "--device", "cpu",
           "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout
    assert log.count("epoch  2/2") == 1 and "processes=2" in log          # rank 0 alone logs
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "checkpoint.pt", "last.pt"]
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["world_size"] == 2 and len(last["rng"]) == 2 and last["epoch"] == 2
    assert not torch.equal(last["rng"][0]["torch"], last["rng"][1]["torch"])  # per-rank augmentation streams
    from mdn_fast.training import evaluate_checkpoint
    m = evaluate_checkpoint(str(out / "checkpoint.pt"), log=lambda *a: None)
    assert m["num_clips"] == 21
    # distributed eval (uneven shards 11 + 10, gathered) == single-process eval of the same weights
    for key, name in (("top1", "Top-1"), ("top5", "Top-5"), ("f1_mean", "F1_mean")):
        assert round(100 * m[key], 2) == _metric(log, name), key
    assert last["history"][-1]["num_clips"] == 21
