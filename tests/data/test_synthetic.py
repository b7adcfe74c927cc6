"""Synthetic micro-action dataset: determinism, splits, shapes, labels, rendering, and that the classes
carry the signal they claim (motion classes move, position classes hold)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mdn_fast.data import (BODY_NAMES, BODY_OF_CLASS, CLASS_NAMES, ENTITIES, RHYTHM_PAIRS, SyntheticMicroActions,
                           entity_mask, get_layout, pose_features)
from mdn_fast.data.synthetic import IMAGENET_MEAN, IMAGENET_STD, _EDGE_COLOURS

L = get_layout("body25")


def test_same_seed_bit_identical_different_seed_differs():
    a = SyntheticMicroActions(40, seed=3)
    b = SyntheticMicroActions(40, seed=3)
    c = SyntheticMicroActions(40, seed=4)
    assert torch.equal(a.keypoints, b.keypoints) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.keypoints, c.keypoints)
    ra = SyntheticMicroActions(6, seed=3, render=True, image_size=32)
    rb = SyntheticMicroActions(6, seed=3, render=True, image_size=32, cache=False)
    assert torch.equal(ra[5]["frames"], rb[5]["frames"])
    assert torch.equal(ra[5]["frames"], ra[5]["frames"])   # cached copy identical


def test_splits_are_disjoint():
    tr = SyntheticMicroActions(60, seed=0, split="train")
    va = SyntheticMicroActions(60, seed=0, split="val")
    flat_tr, flat_va = tr.keypoints.flatten(1), va.keypoints.flatten(1)
    # No clip of one split equals (or nearly equals) a clip of the other.
    assert torch.cdist(flat_tr, flat_va).min() > 1.0
    with pytest.raises(ValueError, match="split: expected one of"):
        SyntheticMicroActions(10, split="test")


def test_item_shapes_dtypes_and_collate():
    T, S = 6, 40
    ds = SyntheticMicroActions(30, num_frames=T, render=True, image_size=S)
    item = ds[7]
    assert item["keypoints"].shape == (T, 25, 3) and item["keypoints"].dtype == torch.float32
    assert isinstance(item["label"], int) and isinstance(item["body_label"], int)
    assert item["frames"].shape == (T, 3, S, S) and item["frames"].dtype == torch.float32
    assert len(ds) == 30 and ds[-1]["label"] == ds[29]["label"]
    with pytest.raises(IndexError):
        ds[30]
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["keypoints"].shape == (4, T, 25, 3) and batch["frames"].shape == (4, T, 3, S, S)
    assert batch["label"].dtype == torch.int64
    assert "frames" not in SyntheticMicroActions(5)[0]


def test_labels_cover_classes_and_body_map():
    assert len(BODY_OF_CLASS) == len(CLASS_NAMES) == SyntheticMicroActions.num_classes
    assert set(BODY_OF_CLASS) == set(range(len(BODY_NAMES)))
    ds = SyntheticMicroActions(50, seed=1)
    assert set(ds.labels.tolist()) == set(range(len(CLASS_NAMES)))
    counts = torch.bincount(ds.labels, minlength=len(CLASS_NAMES))
    assert counts.max() - counts.min() <= 1   # balanced
    assert torch.equal(ds.body_labels, torch.tensor(BODY_OF_CLASS)[ds.labels])
    for a, b in RHYTHM_PAIRS:
        assert BODY_OF_CLASS[a] == BODY_OF_CLASS[b]


def test_keypoints_follow_openpose_conventions():
    S = 48
    ds = SyntheticMicroActions(120, image_size=S, seed=2)
    kp = ds.keypoints
    assert torch.isfinite(kp).all()
    missing = kp[..., 2] == 0
    assert missing.any() and (kp[missing] == 0).all()                       # missing joints are (0, 0, 0)
    seen = kp[~missing]
    assert (seen[:, :2] >= 0).all() and (seen[:, :2] <= S - 1).all()       # inside the frame
    assert (seen[:, 2] <= 1).all()
    clean = SyntheticMicroActions(120, image_size=S, seed=2, drop_prob=0.0, entity_drop_prob=0.0)
    assert (clean.keypoints[..., 2] == 0).float().mean() < missing.float().mean()
    # Entities are detected most of the time, but not always.
    present = entity_mask(kp, L).float().mean(dim=(0, 1))
    assert (present > 0.6).all() and (present < 1.0).any()


def test_render_draws_the_skeleton():
    S = 48
    ds = SyntheticMicroActions(4, render=True, image_size=S, seed=5)
    item = ds[2]
    frames = item["frames"]
    assert torch.isfinite(frames).all()
    img = ds.frames_uint8(2)
    assert img.shape == (ds.num_frames, S, S, 3) and img.dtype == np.uint8
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(frames * std + mean, torch.from_numpy(img).permute(0, 3, 1, 2).float() / 255)
    palette = {tuple(c) for c in _EDGE_COLOURS.tolist()}
    kp = item["keypoints"]
    checked = 0
    for t in range(ds.num_frames):
        x, y, c = kp[t, 1].tolist()                 # the neck starts several edges
        if c > 0.25 and any(kp[t, j, 2] > 0.25 for j in (0, 2, 5, 8)):
            assert tuple(img[t, round(y), round(x)].tolist()) in palette
            checked += 1
    assert checked > 0
    # Frames differ over time (the subject moves) and from a blank background.
    assert len({tuple(p) for p in img.reshape(-1, 3).tolist()} & palette) >= 3


def _mean_speed(ds, cls, entity, joint_slot):
    f = pose_features(ds.keypoints[ds.labels == cls], L)
    v = f[:, 1:, ENTITIES.index(entity), joint_slot, 3:].norm(dim=-1)
    ok = f[:, 1:, ENTITIES.index(entity), joint_slot, 2] > 0
    return float(v[ok].mean())


def test_classes_carry_their_signal():
    ds = SyntheticMicroActions(360, seed=0)
    c = {name: i for i, name in enumerate(CLASS_NAMES)}
    nose = 0    # slot of the nose in the head entity
    knee = 1    # slot of the right knee in lower_body (9, 10, ...)
    assert _mean_speed(ds, c["nodding"], "head", nose) > 1.5 * _mean_speed(ds, c["head_tilted"], "head", nose)
    assert _mean_speed(ds, c["leg_shaking"], "lower_body", knee) > 1.5 * _mean_speed(ds, c["arms_crossed"], "lower_body", knee)
    wrist = 2   # wrist slot of a hand entity (shoulder, elbow, wrist)
    rub = max(_mean_speed(ds, c["rubbing_face"], h, wrist) for h in ("left_hand", "right_hand"))
    still = max(_mean_speed(ds, c["touching_face"], h, wrist) for h in ("left_hand", "right_hand"))
    assert rub > 1.5 * still
    # Same hand position on average for a rhythm pair: the per-clip mean wrist height is close.
    f = pose_features(ds.keypoints, L)
    def wrist_y(cls):
        sel = f[ds.labels == cls][:, :, [ENTITIES.index("left_hand"), ENTITIES.index("right_hand")], wrist]
        y, ok = sel[..., 1], sel[..., 2] > 0
        return float(y[ok].min()), float(y[ok].max()), float(y[ok].mean())
    lo_s, hi_s, m_s = wrist_y(c["tapping_thigh_slow"])
    lo_f, hi_f, m_f = wrist_y(c["tapping_thigh_fast"])
    assert abs(m_s - m_f) < 0.1 * (hi_s - lo_s)


def test_argument_errors():
    with pytest.raises(ValueError, match="num_clips"):
        SyntheticMicroActions(0)
    with pytest.raises(ValueError, match="num_frames"):
        SyntheticMicroActions(10, num_frames=1)
    with pytest.raises(ValueError, match="drop_prob"):
        SyntheticMicroActions(10, drop_prob=1.5)
    with pytest.raises(ValueError, match="seed"):
        SyntheticMicroActions(10, seed=-1)
