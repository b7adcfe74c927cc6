"""Copies and workers (issue 11.6): layouts, the model and the datasets deep-copy and pickle (Layout used
to hold mappingproxy objects), ``AveragedModel`` wraps the model, and DataLoader workers started with
spawn and forkserver load a generated MA-52 release (pose) and an iMiGUE release."""
import copy
import multiprocessing as mp
import pickle

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from mdn_fast.data import get_layout, layout_names
from mdn_fast.data.imigue import IMiGUEDataset
from mdn_fast.data.ma52 import MA52Dataset
from mdn_fast.nn import MicroDualNet

from tests._ma52_release import make_release


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("ma52_pickling"))


@pytest.fixture(scope="module")
def imigue_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imigue_pickling")
    rng = np.random.default_rng(0)
    data = rng.uniform(1, 100, (4, 3, 90, 22, 1)).astype(np.float32)
    np.save(root / "train_data.npy", data)
    with open(root / "train_label.pkl", "wb") as f:
        pickle.dump(([f"v{i}_1" for i in range(4)], [0, 5, 31, 7]), f)
    return root


@pytest.mark.parametrize("name", layout_names())
def test_layouts_pickle_and_deepcopy(name):
    lay = get_layout(name)
    for other in (pickle.loads(pickle.dumps(lay)), copy.deepcopy(lay), copy.copy(lay)):
        assert other == lay and hash(other) == hash(lay)
        assert dict(other.entity_joints) == dict(lay.entity_joints) and dict(other.roles) == dict(lay.roles)
        assert other.entities == lay.entities
    with pytest.raises(TypeError, match="read-only"):
        lay.roles["x"] = 0            # still immutable
    with pytest.raises(TypeError, match="read-only"):
        lay.entity_joints.update(head=(0,))


def _model():
    torch.manual_seed(0)
    return MicroDualNet(num_classes=52, num_body_classes=7, modality="pose", layout="coco18_hands28",
                        dim=16, heads=2, backend="reference").eval()


def test_model_deepcopy_pickle_and_averaged_model():
    m = _model()
    g = torch.Generator().manual_seed(1)
    kp = torch.rand(2, 8, 28, 3, generator=g) * 100
    kp[..., 2] = 0.9
    with torch.no_grad():
        ref = m(keypoints=kp).logits
        for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            torch.testing.assert_close(other(keypoints=kp).logits, ref, rtol=0, atol=0)
        avg = AveragedModel(m)
        torch.testing.assert_close(avg(keypoints=kp).logits, ref, rtol=0, atol=0)
    avg.update_parameters(m)


def test_datasets_pickle_and_deepcopy(release, imigue_root):
    ds = MA52Dataset(release, "val", "pose")
    for other in (pickle.loads(pickle.dumps(ds)), copy.deepcopy(ds)):
        assert len(other) == len(ds)
        torch.testing.assert_close(other[1]["keypoints"], ds[1]["keypoints"])
    im = IMiGUEDataset(imigue_root, "train", train=False)
    blob = pickle.dumps(im)
    assert len(blob) < 100_000          # the memory-mapped array is re-opened, not copied (it is ~95 kB)
    other = pickle.loads(blob)
    assert isinstance(other.data, np.memmap)
    torch.testing.assert_close(other[2]["keypoints"], im[2]["keypoints"])
    assert other[2]["label"] == 31


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_dataloader_workers(release, imigue_root, method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"start method {method!r} not available here")
    ctx = mp.get_context(method)
    sets = [MA52Dataset(release, "train", "pose", train=False)]
    if method == "spawn":             # each worker start imports torch anew: one iMiGUE run is enough
        sets.append(IMiGUEDataset(imigue_root, "train", train=False))
    for ds in sets:
        loader = DataLoader(ds, batch_size=2, num_workers=1, multiprocessing_context=ctx, shuffle=False)
        batch = next(iter(loader))
        assert batch["keypoints"].shape[:2] == (2, 8) and batch["label"].shape == (2,)
        torch.testing.assert_close(batch["keypoints"][0], ds[0]["keypoints"])
