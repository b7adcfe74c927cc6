"""iMiGUE challenge release (``{split}_data.npy`` + ``{split}_label.pkl``) on fixtures written here:
structure of the label pickle, zero-padded clips, TSN sampling within the unpadded length, hand-block
order detection, and error messages."""
import pickle

import numpy as np
import pytest
import torch

from mdn_fast.data.imigue import IMiGUEDataset, IMiGUEFormatError, read_data, read_labels, valid_length
from mdn_fast.skeleton.layouts import get_layout
from mdn_fast.skeleton.layouts_extra import HAND_BLOCKS

LENGTHS = [90, 45, 7, 60, 3, 88]
LABELS = [0, 31, 5, 12, 7, 20]


def make_release(root, split="train", swap=False, with_labels=True):
    """(N, 3, 90, 22, 1) with x = 1000 + frame (to read back which frame was sampled), y random,
    scores > 0, frames past the clip's length zero; hands near their wrists (or crossed if swap)."""
    rng = np.random.default_rng(0)
    lay = get_layout("miga22")
    N = len(LENGTHS)
    data = np.zeros((N, 3, 90, 22, 1), np.float32)
    rb, lb = HAND_BLOCKS["miga22"]
    for n, L in enumerate(LENGTHS):
        xy = rng.uniform(100, 600, (22, 2))
        xy[lay.role("r_wrist")] = (200, 500)
        xy[lay.role("l_wrist")] = (700, 500)
        for block, w in ((rb, (700, 500) if swap else (200, 500)), (lb, (200, 500) if swap else (700, 500))):
            xy[list(block)] = np.asarray(w) + rng.normal(0, 10, (5, 2))
        for t in range(L):
            data[n, 0, t, :, 0] = xy[:, 0] + 1000 * (t + 1)      # frame id readable from x
            data[n, 1, t, :, 0] = xy[:, 1]
            data[n, 2, t, :, 0] = rng.uniform(0.2, 1.0, 22)
        data[n, :, :L, 9, 0] = 0                                   # a missing joint (LEye) in every frame
    np.save(root / f"{split}_data.npy", data)
    if with_labels:
        names = [f"video{n:03d}_{k}" for n, k in enumerate(range(N))]
        with open(root / f"{split}_label.pkl", "wb") as f:
            pickle.dump((names, list(LABELS)), f)
    return data


def _frame_ids(kp):
    """Recover the sampled frame index from the x of a joint that is always present (neck)."""
    return np.floor(kp[:, 1, 0].numpy() / 1000).astype(int) - 1


def test_read_labels_and_data(tmp_path):
    make_release(tmp_path)
    names, labels = read_labels(tmp_path / "train_label.pkl")
    assert labels == LABELS and names[1] == "video001_1"
    arr = read_data(tmp_path / "train_data.npy")
    assert arr.shape == (6, 3, 90, 22, 1)
    assert [valid_length(arr[n, :, :, :, 0]) for n in range(6)] == LENGTHS
    with open(tmp_path / "d.pkl", "wb") as f:              # dict form accepted
        pickle.dump({"sample_name": ["a", "b"], "label": [3, 4]}, f)
    assert read_labels(tmp_path / "d.pkl") == (["a", "b"], [3, 4])


@pytest.mark.parametrize("obj,msg", [
    ({"names": [1]}, r"bad\.pkl: expected a pickled \(sample_names, labels\) pair, found a dict with keys"),
    ((["a"], [1], [2]), r"bad\.pkl: expected a pickled \(sample_names, labels\) pair, found a tuple of length 3"),
    ((["a", "b"], [1]), r"bad\.pkl: 2 sample names but 1 labels"),
    ((["a", "b"], [1, 32]), r"bad\.pkl: sample 1 \('b'\) has label 32, expected 0\.\.31"),
    ((["a"], ["x"]), r"bad\.pkl: labels must be integers"),
])
def test_label_errors(tmp_path, obj, msg):
    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump(obj, f)
    with pytest.raises(IMiGUEFormatError, match=msg):
        read_labels(tmp_path / "bad.pkl")


def test_data_errors(tmp_path):
    np.save(tmp_path / "x_data.npy", np.zeros((2, 3, 90, 25, 1), np.float32))
    with pytest.raises(IMiGUEFormatError, match=r"x_data\.npy: array has shape \(2, 3, 90, 25, 1\), expected "
                                                r"\(N, 3, frames, 22, persons\)"):
        read_data(tmp_path / "x_data.npy")
    (tmp_path / "t_data.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(IMiGUEFormatError, match=r"t_data\.npy: cannot load as \.npy"):
        read_data(tmp_path / "t_data.npy")
    with pytest.raises(IMiGUEFormatError, match=r"none_data\.npy: data file does not exist"):
        read_data(tmp_path / "none_data.npy")
    make_release(tmp_path, "train")
    with open(tmp_path / "train_label.pkl", "wb") as f:
        pickle.dump((["a"], [1]), f)
    with pytest.raises(IMiGUEFormatError, match=r"train_label\.pkl: 1 labels but .*train_data\.npy holds 6 clips"):
        IMiGUEDataset(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="iMiGUE split 'test'"):
        IMiGUEDataset(tmp_path, "test")


def test_dataset_eval_sampling(tmp_path):
    make_release(tmp_path, "valid")
    ds = IMiGUEDataset(tmp_path, "val", num_frames=8)          # 'val' finds the challenge's 'valid'
    assert len(ds) == 6 and not ds.train and ds.layout == "miga22" and ds.num_body_classes is None
    for n, L in enumerate(LENGTHS):
        item = ds[n]
        kp = item["keypoints"]
        assert kp.shape == (8, 22, 3) and kp.dtype == torch.float32
        assert item["label"] == LABELS[n] and item["body_label"] == -1
        np.testing.assert_array_equal(_frame_ids(kp), np.floor((np.arange(8) + 0.5) * L / 8).astype(int))
        assert (kp[:, 9] == 0).all()                            # missing joint stays zero
        assert (kp[:, 1, 2] > 0).all()                          # never a padded frame


def test_dataset_train_sampling_random_within_length(tmp_path):
    make_release(tmp_path, "train")
    torch.manual_seed(0)
    ds = IMiGUEDataset(tmp_path, "train", num_frames=8)
    assert ds.train
    seen = set()
    for _ in range(5):
        for n, L in enumerate(LENGTHS):
            ids = _frame_ids(ds[n]["keypoints"])
            assert ids.min() >= 0 and ids.max() < L and (np.diff(ids) >= 0).all()
            seen.add((n, tuple(ids)))
    assert len({s for s in seen if s[0] == 0}) > 1              # training draws differ
    torch.manual_seed(0)
    again = IMiGUEDataset(tmp_path, "train", num_frames=8)[0]["keypoints"]
    torch.manual_seed(0)
    assert torch.equal(again, IMiGUEDataset(tmp_path, "train", num_frames=8)[0]["keypoints"])


def test_dataset_without_labels(tmp_path):
    make_release(tmp_path, "test", with_labels=False)
    ds = IMiGUEDataset(tmp_path, "test")
    assert ds[0]["label"] == -1


@pytest.mark.parametrize("swap", [False, True])
def test_hand_order_auto(tmp_path, swap):
    data = make_release(tmp_path, "train", swap=swap)
    ds = IMiGUEDataset(tmp_path, "train", train=False)
    assert ds.swap_hands is swap
    kp = ds[0]["keypoints"]
    rb, lb = HAND_BLOCKS["miga22"]
    lay = get_layout("miga22")
    # after the reader's fix-up the right block always sits by the right wrist
    d_r = (kp[:, list(rb), 0] - kp[:, lay.role("r_wrist"), None, 0]).abs().mean()   # wrists differ in x
    assert float(d_r) < 60
    as_is = IMiGUEDataset(tmp_path, "train", train=False, hand_order="as_is")[0]["keypoints"]
    raw = np.asarray(data[0, :, :, :, 0]).transpose(1, 2, 0)[np.floor((np.arange(8) + .5) * 90 / 8).astype(int)]
    raw[~(raw[..., 2] > 0)] = 0
    np.testing.assert_allclose(as_is.numpy(), raw)
