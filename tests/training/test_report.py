"""``mdn-fast report`` and the plotting helpers: the aggregations behind the plots against plain loops,
and the report of a tiny checkpoint writes non-empty, readable PNGs (+ report.json)."""
import json

import pytest
import torch

pytest.importorskip("matplotlib")

from mdn_fast.cli import main
from mdn_fast.training.plots import alpha_per_class, confusion_matrix, plot_curves
from mdn_fast.training import TrainConfig, train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_alpha_per_class_matches_loop():
    g = torch.Generator().manual_seed(0)
    N, depth, K, C = 37, 2, 5, 6
    st = torch.rand(N, depth, K, generator=g)
    alpha = torch.stack([st, 1 - st], -1)
    labels = torch.randint(0, C - 1, (N,), generator=g)          # class C-1 never occurs
    got = alpha_per_class(alpha, labels, C)
    assert got.shape == (C, depth, K, 2)
    for c in range(C - 1):
        rows = [alpha[i] for i in range(N) if labels[i] == c]
        if rows:
            torch.testing.assert_close(got[c], torch.stack(rows).double().mean(0))
    assert torch.isnan(got[C - 1]).all()
    with pytest.raises(ValueError, match=r"alpha: expected \[N, depth, K, 2\]"):
        alpha_per_class(alpha[:3], labels, C)


def test_confusion_matrix_matches_loop():
    g = torch.Generator().manual_seed(1)
    pred, labels = torch.randint(0, 7, (50,), generator=g), torch.randint(0, 7, (50,), generator=g)
    cm = confusion_matrix(pred, labels, 7)
    ref = torch.zeros(7, 7, dtype=torch.long)
    for p, t in zip(pred.tolist(), labels.tolist()):
        ref[t, p] += 1
    assert torch.equal(cm, ref)


def test_plot_curves_needs_history(tmp_path):
    with pytest.raises(ValueError, match="history: empty"):
        plot_curves([], str(tmp_path / "c.png"))


def test_report_writes_pngs(tmp_path, capsys):
    import matplotlib.image as mpimg
    out = tmp_path / "run"
    train(TrainConfig(num_clips=32, val_clips=24, epochs=2, batch_size=8, dim=16, heads=2, depth=2, progress=False,
                      out=str(out)), log=lambda *a: None)
    rep = tmp_path / "rep"
    assert main(["report", str(out / "best.pt"), "--out", str(rep)]) == 0
    assert "wrote routing_per_class.png" in capsys.readouterr().out
    names = ["routing_per_class.png", "routing_mean.png", "confusion_actions.png", "confusion_body.png", "curves.png"]
    for n in names:
        data = (rep / n).read_bytes()
        assert len(data) > 5000 and data.startswith(PNG_MAGIC), n
        img = mpimg.imread(rep / n)
        assert img.shape[0] > 200 and img.shape[1] > 200 and img[..., :3].std() > 0.05, n   # not blank
    summary = json.loads((rep / "report.json").read_text())
    per_class = torch.tensor([[[p for p in blk] for blk in row] for row in summary["alpha_per_class"]],
                             dtype=torch.float64)                             # [C, depth, K, 2]
    assert per_class.shape == (12, 2, 6, 2)
    # the clip-weighted mean of the per-class weights is the overall mean the eval reports
    labels_count = torch.tensor([1.0] * 12) * 2                                  # 24 clips, 2 per class
    overall = (per_class * labels_count.view(-1, 1, 1, 1)).sum(0) / labels_count.sum()
    torch.testing.assert_close(overall, torch.tensor(summary["metrics"]["alpha"], dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)
    # default output folder: next to the checkpoint
    assert main(["report", str(out / "checkpoint.pt")]) == 0
    assert (out / "report" / "curves.png").stat().st_size > 5000
