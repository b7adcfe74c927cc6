"""SpatialEntityModule: boxes -> roi_align wiring, default regions, modality outputs, backbone weights."""
import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import roi_align

from mdn_fast.skeleton.boxes import entity_boxes, entity_mask
from mdn_fast.skeleton.layouts import ENTITIES
from mdn_fast.skeleton.pose_features import pose_features
from mdn_fast.nn.spatial_entity import DEFAULT_REGIONS, SpatialEntityModule

from tests._model_helpers import body25_keypoints, frames

T, S, D = 4, 64, 32


def _sem(modality="rgb", entities=ENTITIES, **kw):
    kw.setdefault("backbone", "resnet18")
    kw.setdefault("feature_stride", 8)
    kw.setdefault("roi_size", 3)
    return SpatialEntityModule(D, T, entities, "body25", modality, **kw)


class _Capture(nn.Module):
    """Stands in for roi_refine: records the ROIAlign output, returns a D-channel map."""

    def __init__(self, dim):
        super().__init__()
        self.dim, self.seen = dim, None

    def forward(self, r):
        self.seen = r
        return r.new_zeros(r.shape[0], self.dim, *r.shape[2:])


def test_boxes_from_keypoints_and_defaults():
    g = torch.Generator().manual_seed(0)
    sem = _sem()
    kp = body25_keypoints(2, T, S, g)
    kp[1, :, 2:5] = 0.0                                    # right arm never seen in clip 1 -> default box
    got = sem.boxes(kp, 2, S, S, "cpu")
    want, present = entity_boxes(kp, "body25", ENTITIES)
    k_rh = ENTITIES.index("right_hand")
    assert not present[1, :, k_rh].any()
    seen = present.any(1)
    for b in range(2):
        for k, e in enumerate(ENTITIES):
            if seen[b, k]:
                # keypoints are pixel-index units; roi_align(aligned=True) wants continuous ones: +0.5
                torch.testing.assert_close(got[b, :, k], want[b, :, k] + 0.5)
            else:
                default = torch.tensor(DEFAULT_REGIONS[e]) * S
                torch.testing.assert_close(got[b, :, k], default.expand(T, 4))
    no_kp = sem.boxes(None, 2, 48, S, "cpu")               # H=48, W=64: fractions scale per axis
    for k, e in enumerate(ENTITIES):
        x1, y1, x2, y2 = DEFAULT_REGIONS[e]
        torch.testing.assert_close(no_kp[:, :, k], torch.tensor([x1 * S, y1 * 48, x2 * S, y2 * 48]).expand(2, T, 4))


def test_roi_align_wiring_matches_per_frame_call():
    """ROI features of token (b, t, k) come from frame b*T+t of the feature map and box (b, t, k)."""
    g = torch.Generator().manual_seed(1)
    sem = _sem().eval()
    sem.roi_refine = cap = _Capture(D)
    kp, fr = body25_keypoints(2, T, S, g), frames(2, T, S, g)
    with torch.no_grad():
        sem(fr, kp)
        fmap = sem.trunk(fr.flatten(0, 1))
    assert fmap.shape[-2:] == (S // 8, S // 8)
    boxes = sem.boxes(kp, 2, S, S, "cpu")
    per_frame = [boxes[b, t] for b in range(2) for t in range(T)]   # list form: one [K, 4] per image
    want = roi_align(fmap, per_frame, output_size=3, spatial_scale=1 / 8, sampling_ratio=-1, aligned=True)
    torch.testing.assert_close(cap.seen, want)


def test_roi_of_one_feature_cell_is_that_cell():
    """spatial_scale and aligned=True: the continuous pixel box of feature cell (i, j) pools exactly it."""
    sem = _sem(roi_size=1, feature_stride=8)
    sem.roi_refine = cap = _Capture(D)
    fmap = torch.randn(2 * T, 5, 8, 8)
    boxes = torch.zeros(2, T, len(ENTITIES), 4)
    cells = torch.randint(0, 8, (2, T, len(ENTITIES), 2))
    boxes[..., 0], boxes[..., 1] = cells[..., 1] * 8.0, cells[..., 0] * 8.0
    boxes[..., 2], boxes[..., 3] = boxes[..., 0] + 8, boxes[..., 1] + 8
    sem.roi_features(fmap, boxes)
    r = cap.seen.view(2, T, len(ENTITIES), 5)
    for b in range(2):
        for t in range(T):
            for k in range(len(ENTITIES)):
                i, j = cells[b, t, k]
                torch.testing.assert_close(r[b, t, k], fmap[b * T + t, :, i, j])


@pytest.mark.parametrize("modality", ["rgb+pose", "rgb", "pose"])
def test_modality_outputs(modality):
    g = torch.Generator().manual_seed(2)
    sem = _sem(modality)
    kp, fr = body25_keypoints(3, T, S, g, drop=0.3), frames(3, T, S, g)
    tokens, f_cnn, mask = sem(fr if modality != "pose" else None, kp)
    assert tokens.shape == (3, T, len(ENTITIES), D) and torch.isfinite(tokens).all()
    assert (f_cnn is None) == (modality == "pose")
    if f_cnn is not None:
        assert f_cnn.shape == (3, D)
    assert mask.dtype == torch.bool and torch.equal(mask, entity_mask(kp, "body25", ENTITIES))
    assert sem.uses_rgb == (modality != "pose") and sem.uses_pose == (modality != "rgb")


def test_rgb_without_keypoints_all_present_and_given_mask_kept():
    g = torch.Generator().manual_seed(3)
    sem = _sem("rgb", entities=("face", "torso"))
    tokens, f_cnn, mask = sem(frames(2, T, S, g))
    assert tokens.shape == (2, T, 2, D) and mask.all()
    given = torch.rand(2, T, 2, generator=g) > 0.5
    assert torch.equal(sem(frames(2, T, S, g), entity_mask=given)[2], given)


def test_pose_mlp_is_per_entity():
    """Entity k's pose token depends on entity k's joints only (own weights, no mixing)."""
    g = torch.Generator().manual_seed(4)
    sem = _sem("pose")
    f = pose_features(body25_keypoints(2, T, S, g), "body25", ENTITIES).flatten(-2)
    base = sem.pose_mlp(f)
    f2 = f.clone()
    f2[:, :, 2] += torch.randn(f2[:, :, 2].shape, generator=g)
    out = sem.pose_mlp(f2)
    changed = (out - base).abs().amax(dim=(0, 1, 3)) > 0
    assert changed.tolist() == [k == 2 for k in range(len(ENTITIES))]
    assert sem.pose_mlp.w1.shape == (len(ENTITIES), sem.jmax * 5, D)


def test_tsm_inside_backbone_and_stride():
    sem = _sem("rgb", feature_stride=32)
    from mdn_fast.nn.tsm import TemporalShift
    assert sum(isinstance(m, TemporalShift) for m in sem.backbone.modules()) == 8
    assert sem.trunk(torch.randn(T, 3, S, S)).shape[-2:] == (2, 2)


def test_backbone_weights_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="backbone_weights.*nope.pt"):
        _sem(backbone_weights=path)


def test_backbone_weights_mismatch_and_load(tmp_path):
    wrong = tmp_path / "r34.pt"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), wrong)
    with pytest.raises(ValueError, match=r"backbone_weights: .*r34.pt.* does not match torchvision resnet18"):
        _sem(backbone_weights=wrong)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="backbone_weights: cannot read"):
        _sem(backbone_weights=junk)
    right = tmp_path / "r18.pt"
    ref = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": ref.state_dict()}, right)
    sem = _sem(backbone_weights=right)
    torch.testing.assert_close(sem.backbone.layer2[0].conv1.conv.weight, ref.layer2[0].conv1.weight)
    torch.testing.assert_close(sem.backbone.bn1.running_var, ref.bn1.running_var)


def test_bad_constructor_args():
    with pytest.raises(ValueError, match="modality: expected one of"):
        _sem("depth")
    with pytest.raises(ValueError, match="backbone: expected one of .*resnet18"):
        _sem(backbone="vgg16")
    with pytest.raises(ValueError, match="feature_stride"):
        _sem(feature_stride=4)
