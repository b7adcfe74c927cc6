"""MA-52 prediction.csv: written from logits, read back, ranks checked against torch.topk and the body map."""
import numpy as np
import pytest
import torch

from mdn_fast.data.ma52 import BODY_OF_ACTION
from mdn_fast.data.prediction_csv import HEADER, body_from_actions, read_prediction_csv, write_prediction_csv


def _vids(n):
    return [f"test{i:04d}.mp4" for i in range(n)]


@pytest.mark.parametrize("seed", range(3))
def test_roundtrip_body_from_actions(tmp_path, seed):
    g = torch.Generator().manual_seed(seed)
    n = 13
    logits = torch.randn(n, 52, generator=g)
    path = write_prediction_csv(tmp_path / "prediction.csv", _vids(n), logits)
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(HEADER)
    assert HEADER == ["vid"] + [f"action_pred_{k}" for k in range(1, 6)] + [f"body_pred_{k}" for k in range(1, 6)]
    vids, act, body = read_prediction_csv(path)
    assert vids == _vids(n)
    np.testing.assert_array_equal(act, logits.topk(5, dim=1).indices.numpy())
    bmap = np.asarray(BODY_OF_ACTION)
    # the official evaluation script's rule: body_pred_k = body_of(action_pred_k), repeats included
    np.testing.assert_array_equal(body, bmap[act])
    for i, line in enumerate(text.splitlines()[1:]):
        cols = [int(c) for c in line.split(",")[1:]]
        assert cols[5:] == [BODY_OF_ACTION[a] for a in cols[:5]], (i, line)


def test_official_example_row_reads_and_rewrites_identically(tmp_path):
    """The official script's own file (repeated body ids) reads back, and our writer reproduces it."""
    p = tmp_path / "prediction.csv"
    rows = ["test0000.mp4,9,8,7,10,5,1,1,1,1,1", "test0001.mp4,40,3,45,24,50,5,0,5,3,6"]
    p.write_bytes(("\r\n".join([",".join(HEADER)] + rows)).encode())     # CRLF, no final newline
    vids, act, body = read_prediction_csv(p)
    assert vids == ["test0000.mp4", "test0001.mp4"]
    assert act.tolist() == [[9, 8, 7, 10, 5], [40, 3, 45, 24, 50]]
    assert body.tolist() == [[1, 1, 1, 1, 1], [5, 0, 5, 3, 6]]
    logits = np.zeros((2, 52))
    for i, a in enumerate(act):
        logits[i, a] = np.arange(5, 0, -1)                 # ranks the five actions in the file's order
    out = write_prediction_csv(tmp_path / "ours.csv", vids, logits)
    assert out.read_text().splitlines()[1:] == rows


def test_roundtrip_with_body_logits(tmp_path):
    g = torch.Generator().manual_seed(7)
    logits, blogits = torch.randn(4, 52, generator=g), torch.randn(4, 7, generator=g)
    path = write_prediction_csv(tmp_path / "p.csv", _vids(4), logits, blogits)
    _, act, body = read_prediction_csv(path)
    np.testing.assert_array_equal(body, blogits.topk(5, dim=1).indices.numpy())
    np.testing.assert_array_equal(act, logits.topk(5, dim=1).indices.numpy())


def test_ties_go_to_lower_id():
    logits = np.zeros((1, 52))
    logits[0, [40, 3]] = 1.0
    rank = np.argsort(-logits, axis=1, kind="stable")
    assert list(rank[0, :4]) == [3, 40, 0, 1]
    assert list(body_from_actions(rank[:, :5])[0]) == [0, 5, 0, 0, 0]


def test_write_errors(tmp_path):
    with pytest.raises(ValueError, match=r"action_logits: expected shape \[N, 52\], got \(3, 50\)"):
        write_prediction_csv(tmp_path / "p.csv", _vids(3), torch.randn(3, 50))
    with pytest.raises(ValueError, match="vids: 2 names but 3 rows"):
        write_prediction_csv(tmp_path / "p.csv", _vids(2), torch.randn(3, 52))
    with pytest.raises(ValueError, match=r"body_logits: expected shape \[N, 7\]"):
        write_prediction_csv(tmp_path / "p.csv", _vids(3), torch.randn(3, 52), torch.randn(3, 6))
    with pytest.raises(ValueError, match="non-finite"):
        write_prediction_csv(tmp_path / "p.csv", _vids(1), torch.full((1, 52), float("nan")))


@pytest.mark.parametrize("body,msg", [
    ("test0001.mp4,1,2,3,4,5,0,1,2,3\n", r"p\.csv, line 3: expected 11 columns, found 10"),
    ("test0001.mp4,1,2,3,4,x,0,1,2,3,4\n", r"p\.csv, line 3: expected integer class ids"),
    ("test0001.mp4,1,2,3,4,4,0,1,2,3,4\n", r"p\.csv, line 3: expected 5 distinct action ids"),
    ("test0001.mp4,1,2,3,4,5,0,1,2,3,7\n", r"p\.csv, line 3: expected 5 body ids in 0\.\.6, found \[0, 1, 2, 3, 7\]"),
    ("test0001.mp4,1,2,3,4,5,0,-1,2,3,4\n", r"p\.csv, line 3: expected 5 body ids in 0\.\.6"),
])
def test_read_errors_name_file_and_line(tmp_path, body, msg):
    p = tmp_path / "p.csv"
    p.write_text(",".join(HEADER) + "\ntest0000.mp4,1,2,3,4,5,0,1,2,3,4\n" + body)
    with pytest.raises(ValueError, match=msg):
        read_prediction_csv(p)
    p.write_text("id,pred_label_1,pred_label_2\n")
    with pytest.raises(ValueError, match=r"p\.csv, line 1: expected header vid,action_pred_1"):
        read_prediction_csv(p)
