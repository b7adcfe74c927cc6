"""Per-entity pose features: normalisation to the body's centre and scale, confidences, velocities,
zeroed low-confidence joints, padding, and invariance to where and how large the subject is."""
import pytest
import torch

from mdn_fast.data import ENTITIES, POSE_FEATURE_DIM, entity_joint_counts, get_layout, pose_features
from mdn_fast.skeleton.pose_features import body_centre_scale

L = get_layout("body25")
J = L.num_joints
K = len(ENTITIES)


def _random_clip(B=2, T=5, seed=0, missing=0.15):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(B, T, J, 3, generator=g) * torch.tensor([160.0, 120.0, 1.0])
    kp[..., 2] = 0.3 + 0.7 * kp[..., 2]
    kp[torch.rand(B, T, J, generator=g) < missing] = 0.0
    return kp


def test_counts_and_shapes():
    counts = entity_joint_counts("body25")
    assert counts == (6, 5, 3, 3, 6, 12)
    assert entity_joint_counts(L, ("face", "left_hand")) == (5, 3)
    kp = _random_clip()
    f = pose_features(kp, "body25")
    assert f.shape == (2, 5, K, 12, POSE_FEATURE_DIM) and f.dtype == torch.float32
    assert torch.isfinite(f).all()
    # Padding rows are zero.
    for k, n in enumerate(counts):
        assert (f[:, :, k, n:] == 0).all()
    # Unbatched input, entity subsets.
    torch.testing.assert_close(pose_features(kp[1], "body25"), f[1])
    sub = pose_features(kp, "body25", ("right_hand", "face"))
    assert sub.shape == (2, 5, 2, 5, POSE_FEATURE_DIM)
    torch.testing.assert_close(sub[:, :, 0, :3], f[:, :, ENTITIES.index("right_hand"), :3])
    torch.testing.assert_close(sub[:, :, 1], f[:, :, ENTITIES.index("face"), :5])


def test_hand_computed_normalisation_and_velocity():
    T = 3
    kp = torch.zeros(1, T, J, 3)
    kp[0, :, 1] = torch.tensor([50.0, 40.0, 0.9])       # neck
    kp[0, :, 8] = torch.tensor([50.0, 80.0, 0.8])       # mid-hip: torso length 40
    kp[0, :, 0] = torch.tensor([50.0, 20.0, 0.7])       # nose
    kp[0, 1, 0, 0] = 54.0                               # nose moves right by 4 px = 0.1 torso
    kp[0, 2, 0] = 0.0                                   # then is lost
    f = pose_features(kp, "body25")
    head = f[0, :, ENTITIES.index("head")]              # joints (0, 1, 15, 16, 17, 18)
    nose, neck = head[:, 0], head[:, 1]
    torch.testing.assert_close(nose[0], torch.tensor([0.0, -0.5, 0.7, 0.0, 0.0]))
    torch.testing.assert_close(nose[1], torch.tensor([0.1, -0.5, 0.7, 0.1, 0.0]))
    torch.testing.assert_close(nose[2], torch.zeros(5))   # missing: all zero, no velocity jump
    torch.testing.assert_close(neck, torch.tensor([[0.0, 0.0, 0.9, 0.0, 0.0]] * T))
    torso = f[0, :, ENTITIES.index("torso")]             # joints (1, 2, 5, 8, 9, 12)
    torch.testing.assert_close(torso[:, 3], torch.tensor([[0.0, 1.0, 0.8, 0.0, 0.0]] * T))
    assert (torso[:, 1:3] == 0).all() and (torso[:, 4:] == 0).all()


def test_low_confidence_joints_are_zeroed():
    kp = _random_clip(missing=0.0)
    kp[0, 2, 4, 2] = 0.2                                 # right wrist below the threshold
    f = pose_features(kp, "body25")
    rh = ENTITIES.index("right_hand")                    # joints (2, 3, 4)
    assert (f[0, 2, rh, 2] == 0).all()
    assert (f[0, 3, rh, 2, 3:] == 0).all()               # no velocity into the next frame either
    assert (f[0, 3, rh, 2, :3] != 0).any()
    f_low = pose_features(kp, "body25", conf_thr=0.1)
    assert (f_low[0, 2, rh, 2, :3] != 0).all()


def test_centre_and_scale_fallbacks_and_median():
    T = 3
    kp = torch.zeros(1, T, J, 3)
    kp[0, :, 2] = torch.tensor([36.0, 42.0, 0.9])        # shoulders only: width 28 -> 28 / 0.7 = 40
    kp[0, :, 5] = torch.tensor([64.0, 42.0, 0.9])
    centre, scale = body_centre_scale(kp, L)
    torch.testing.assert_close(centre, torch.tensor([[50.0, 42.0]]))
    torch.testing.assert_close(scale, torch.tensor([40.0]))
    # A neck and mid-hip take priority; one outlier frame does not move the per-clip median.
    kp[0, :, 1] = torch.tensor([[50.0, 40.0, 0.9], [50.0, 40.0, 0.9], [90.0, 10.0, 0.9]])
    kp[0, :, 8] = torch.tensor([[50.0, 70.0, 0.9], [50.0, 70.0, 0.9], [50.0, 70.0, 0.9]])
    centre, scale = body_centre_scale(kp, L)
    torch.testing.assert_close(centre, torch.tensor([[50.0, 40.0]]))
    torch.testing.assert_close(scale, torch.tensor([30.0]))
    # No confident joint at all: centre 0, scale 1, features all zero.
    empty = torch.zeros(1, T, J, 3)
    centre, scale = body_centre_scale(empty, L)
    assert torch.equal(centre, torch.zeros(1, 2)) and torch.equal(scale, torch.ones(1))
    assert (pose_features(empty, L) == 0).all()


def test_invariant_to_subject_position_and_size():
    kp = _random_clip(B=3, T=7, seed=3)
    moved = kp.clone()
    present = kp[..., 2:] > 0
    moved[..., :2] = torch.where(present, kp[..., :2] * 2.5 + torch.tensor([31.0, -17.0]), kp[..., :2])
    torch.testing.assert_close(pose_features(moved, L), pose_features(kp, L), rtol=1e-4, atol=1e-5)


def test_per_clip_centre_scale_against_direct_computation():
    kp = _random_clip(B=2, T=7, seed=4, missing=0.0)     # neck and mid-hip always confident
    f = pose_features(kp, L)
    for b in range(2):
        c = kp[b, :, 1, :2].median(dim=0).values
        s = (kp[b, :, 1, :2] - kp[b, :, 8, :2]).norm(dim=-1).median()
        expect = (kp[b, :, list(L.entity_joints["lower_body"]), :2] - c) / s
        expect = torch.where(kp[b, :, list(L.entity_joints["lower_body"]), 2:] > 0.25, expect, torch.zeros_like(expect))
        torch.testing.assert_close(f[b, :, ENTITIES.index("lower_body"), :, :2], expect, rtol=1e-5, atol=1e-5)
        vel = f[b, 1:, ENTITIES.index("lower_body"), :, 3:]
        both = (kp[b, 1:, list(L.entity_joints["lower_body"]), 2:] > 0.25) & (kp[b, :-1, list(L.entity_joints["lower_body"]), 2:] > 0.25)
        torch.testing.assert_close(vel, torch.where(both, expect[1:] - expect[:-1], torch.zeros_like(vel)),
                                   rtol=1e-5, atol=1e-5)
        assert (f[b, 0, ..., 3:] == 0).all()


def test_errors():
    kp = _random_clip()
    bad, missing = kp.clone(), kp.clone()
    bad[0, 1, 3, 1] = float("nan")                     # a non-finite joint is a missing one (no value check:
    missing[0, 1, 3] = 0.0                             # the model's forward must not sync the host)
    assert torch.equal(pose_features(bad, "body25"), pose_features(missing, "body25"))
    with pytest.raises(ValueError, match="cannot provide"):
        pose_features(_random_clip(), "body25", ("head", "wings"))
