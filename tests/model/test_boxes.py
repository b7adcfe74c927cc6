"""Entity boxes and masks from keypoints: the OpenPose hand/face rules and the extent rule on hand-computed
cases, against a plain-Python per-frame implementation on random keypoints, absent entities, thresholds,
and the input errors."""
import math

import pytest
import torch

from mdn_fast.data import ENTITIES, entity_boxes, entity_mask, get_layout
from mdn_fast.skeleton.boxes import MIN_ASPECT

L = get_layout("body25")
J = L.num_joints


def _frame(points):
    """One frame [25, 3]: the given {joint: (x, y)} at confidence 0.9, every other joint (0, 0, 0)."""
    kp = torch.zeros(J, 3)
    for j, (x, y) in points.items():
        kp[j] = torch.tensor([x, y, 0.9])
    return kp


def _box(kp, entity, **kw):
    boxes, present = entity_boxes(kp[None], L, (entity,), **kw)   # [T=1, J, 3] input
    return boxes[0, 0], bool(present[0, 0])


def test_hand_box_openpose_rule():
    # Left arm straight down: |wrist - elbow| = 10 > 0.9 * |elbow - shoulder| = 9.
    kp = _frame({5: (10, 10), 6: (10, 20), 7: (10, 30)})
    box, present = _box(kp, "left_hand")
    assert present
    torch.testing.assert_close(box, torch.tensor([2.5, 25.8, 17.5, 40.8]))
    # Upper arm dominates: side = 1.5 * 0.9 * 20 = 27, centre = wrist + 0.33 (wrist - elbow).
    kp = _frame({2: (0, 0), 3: (0, 20), 4: (6, 28)})
    box, present = _box(kp, "right_hand")
    cx, cy = 6 + 0.33 * 6, 28 + 0.33 * 8
    torch.testing.assert_close(box, torch.tensor([cx - 13.5, cy - 13.5, cx + 13.5, cy + 13.5]))
    assert present
    # The left hand is absent (its arm has no confident joints).
    assert not _box(kp, "left_hand")[1]


def test_confidence_threshold_is_strict():
    kp = _frame({5: (10, 10), 6: (10, 20), 7: (10, 30)})
    kp[7, 2] = 0.25
    assert not _box(kp, "left_hand")[1]
    assert _box(kp, "left_hand", conf_thr=0.2)[1]
    kp[7, 2] = 0.26
    assert _box(kp, "left_hand")[1]


def test_face_box_mean_of_valid_estimates():
    pts = {0: (50, 40), 1: (50, 60), 15: (45, 38), 16: (55, 38), 17: (40, 40), 18: (60, 40)}
    box, present = _box(_frame(pts), "face")
    # (neck-nose: centre (50, 50), side 40), (eyes: (50, 38), 30), (ears: (50, 40), 40).
    cx, cy, side = 50.0, (50 + 38 + 40) / 3, (40 + 30 + 40) / 3
    assert present
    torch.testing.assert_close(box, torch.tensor([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]))
    # Without a neck or ears only the eye estimate is valid.
    kp = _frame({j: p for j, p in pts.items() if j not in (1, 17)})
    box, present = _box(kp, "face")
    assert present
    torch.testing.assert_close(box, torch.tensor([35.0, 23.0, 65.0, 53.0]))
    # One eye and one ear: no valid estimate.
    assert not _box(_frame({0: (50, 40), 15: (45, 38), 18: (60, 40)}), "face")[1]


def test_extent_box_margin_and_min_side():
    pts = {1: (50, 60), 2: (40, 62), 5: (60, 62), 8: (50, 100), 9: (45, 100), 12: (55, 100)}
    box, present = _box(_frame(pts), "torso")
    assert present
    torch.testing.assert_close(box, torch.tensor([36.0, 56.0, 64.0, 104.0]))   # margin 0.1 * 40 = 4
    box, _ = _box(_frame(pts), "torso", margin=0.0)
    torch.testing.assert_close(box, torch.tensor([40.0, 60.0, 60.0, 100.0]))
    # Two hips on a horizontal line: height = MIN_ASPECT * width, centred.
    box, present = _box(_frame({9: (20, 50), 12: (40, 50)}), "lower_body")
    w = 20 + 2 * 2.0
    h = MIN_ASPECT * w
    assert present
    torch.testing.assert_close(box, torch.tensor([18.0, 50 - h / 2, 42.0, 50 + h / 2]))
    # Two coincident joints: the min_size floor.
    box, present = _box(_frame({9: (30, 30), 12: (30, 30)}), "lower_body", min_size=4.0)
    assert present
    torch.testing.assert_close(box, torch.tensor([28.0, 28.0, 32.0, 32.0]))


def test_extent_needs_min_joints():
    kp = _frame({9: (30, 30)})
    assert not _box(kp, "lower_body")[1]
    box, present = _box(kp, "lower_body", min_joints=1)
    assert present
    assert (box[2:] - box[:2] > 0).all()


def _slow_boxes(kp, conf_thr=0.25, margin=0.1, min_joints=2, min_size=4.0):
    """Plain-Python per-frame rules for one frame [J, 3] -> {entity: (box list or None)}."""
    ok = [float(c) > conf_thr for c in kp[:, 2]]
    pt = [(float(x), float(y)) for x, y in kp[:, :2]]
    dist = lambda a, b: math.hypot(pt[a][0] - pt[b][0], pt[a][1] - pt[b][1])  # noqa: E731
    out = {}
    for e in ENTITIES:
        rule = L.box_rule(e)
        if rule == "openpose_hand":
            s, el, w = (L.role(r) for r in L.hand_arm_roles[e])
            if not (ok[s] and ok[el] and ok[w]):
                out[e] = None
                continue
            side = 1.5 * max(dist(w, el), 0.9 * dist(el, s))
            c = (pt[w][0] + 0.33 * (pt[w][0] - pt[el][0]), pt[w][1] + 0.33 * (pt[w][1] - pt[el][1]))
            box = [c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2]
        elif rule == "openpose_face":
            ests = []
            for a, b, f in (("neck", "nose", 2), ("l_eye", "r_eye", 3), ("l_ear", "r_ear", 2)):
                a, b = L.role(a), L.role(b)
                if ok[a] and ok[b]:
                    ests.append(((pt[a][0] + pt[b][0]) / 2, (pt[a][1] + pt[b][1]) / 2, f * dist(a, b)))
            if not ests:
                out[e] = None
                continue
            cx, cy, side = (sum(v) / len(ests) for v in zip(*ests))
            box = [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
        else:
            js = [j for j in L.entity_joints[e] if ok[j]]
            if len(js) < min_joints:
                out[e] = None
                continue
            xs, ys = [pt[j][0] for j in js], [pt[j][1] for j in js]
            m = margin * max(max(xs) - min(xs), max(ys) - min(ys))
            box = [min(xs) - m, min(ys) - m, max(xs) + m, max(ys) + m]
        w, h = box[2] - box[0], box[3] - box[1]
        floor = max(min_size, MIN_ASPECT * max(w, h))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        w, h = max(w, floor), max(h, floor)
        out[e] = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    return out


def test_matches_per_frame_rules_on_random_keypoints():
    g = torch.Generator().manual_seed(1)
    B, T = 3, 5
    kp = torch.rand(B, T, J, 3, generator=g) * torch.tensor([120.0, 90.0, 1.0])
    kp[torch.rand(B, T, J, generator=g) < 0.2] = 0.0   # OpenPose-style missing joints
    boxes, present = entity_boxes(kp, "body25")
    assert boxes.shape == (B, T, len(ENTITIES), 4) and present.shape == (B, T, len(ENTITIES))
    assert boxes.dtype == torch.float32 and present.dtype == torch.bool
    assert torch.isfinite(boxes).all()
    n_present = 0
    for b in range(B):
        for t in range(T):
            slow = _slow_boxes(kp[b, t])
            for k, e in enumerate(ENTITIES):
                assert bool(present[b, t, k]) == (slow[e] is not None), (b, t, e)
                if slow[e] is not None:
                    n_present += 1
                    torch.testing.assert_close(boxes[b, t, k], torch.tensor(slow[e]), rtol=1e-5, atol=1e-4)
    assert 0 < n_present < B * T * len(ENTITIES)   # both branches exercised
    torch.testing.assert_close(entity_mask(kp, "body25"), present, rtol=0, atol=0)


def test_absent_frames_take_nearest_present_box():
    a = _frame({9: (10, 10), 12: (30, 10)})
    b = _frame({9: (50, 60), 12: (70, 65)})
    none = _frame({})
    kp = torch.stack([torch.stack([none, a, none, b, none]), torch.stack([none] * 5)])   # [2, 5, J, 3]
    boxes, present = entity_boxes(kp, L, ("lower_body",))
    assert present[0, :, 0].tolist() == [False, True, False, True, False]
    assert not present[1].any()
    box_a, box_b = boxes[0, 1, 0], boxes[0, 3, 0]
    assert not torch.equal(box_a, box_b)
    torch.testing.assert_close(boxes[0, 0, 0], box_a)   # before the first present frame: the next one
    torch.testing.assert_close(boxes[0, 2, 0], box_a)   # a gap: the previous one
    torch.testing.assert_close(boxes[0, 4, 0], box_b)
    assert torch.equal(boxes[1], torch.zeros(5, 1, 4))   # never present: zeros


def test_unbatched_input_and_entity_subset():
    g = torch.Generator().manual_seed(2)
    kp = torch.rand(2, 4, J, 3, generator=g) * torch.tensor([64.0, 64.0, 1.0])
    boxes, present = entity_boxes(kp, "body25")
    b1, p1 = entity_boxes(kp[1], "body25")
    assert b1.shape == (4, len(ENTITIES), 4) and p1.shape == (4, len(ENTITIES))
    torch.testing.assert_close(b1, boxes[1])
    assert torch.equal(p1, present[1])
    sub = ("torso", "face")
    bs, ps = entity_boxes(kp, "body25", sub)
    idx = [ENTITIES.index(e) for e in sub]
    assert torch.equal(ps, present[..., idx])
    # The filled boxes of absent frames depend on the clip, not on the other entities.
    torch.testing.assert_close(bs, boxes[..., idx, :])
    assert entity_mask(kp[0], "body25").shape == (4, len(ENTITIES))
    # float64 stays float64.
    assert entity_boxes(kp.double(), "body25")[0].dtype == torch.float64


def test_nonfinite_joint_is_a_missing_joint():
    """No value check inside (it would sync the host in the model's forward): a NaN/Inf joint gives
    exactly the boxes and presence of a missing (0, 0, 0) joint."""
    kp = torch.rand(2, 3, J, 3) * 50
    kp[..., 2] = 0.5 + 0.5 * torch.rand(2, 3, J)
    bad = kp.clone()
    bad[1, 2, 7, 0] = float("nan")                     # LWrist x
    bad[0, 1, 1, 2] = float("inf")                     # Neck confidence
    bad[0, 0, 15, 1] = float("-inf")                   # REye y
    missing = kp.clone()
    for idx in ((1, 2, 7), (0, 1, 1), (0, 0, 15)):
        missing[idx] = 0.0
    got, want = entity_boxes(bad, "body25"), entity_boxes(missing, "body25")
    assert torch.isfinite(got[0]).all()
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert not torch.equal(want[1], entity_boxes(kp, "body25")[1])   # the dropped joints mattered


def test_value_check_names_clip_frame_joint_and_fix():
    from mdn_fast.skeleton.validate import check_keypoint_values
    kp = torch.rand(2, 3, J, 3) * 50
    check_keypoint_values(kp, "body25")                # finite: passes
    kp[1, 2, 7, 0] = float("nan")
    with pytest.raises(ValueError, match=r"keypoints: non-finite .* clip 1, frame 2, joint 7 \(LWrist\).*\(0, 0, 0\)"):
        check_keypoint_values(kp, "body25")
    kp = torch.rand(3, J, 3) * 50
    kp[0, 4, 2] = float("inf")
    with pytest.raises(ValueError, match=r"frame 0 of clip_0042.json, joint 4 \(RWrist\)"):
        check_keypoint_values(kp.numpy(), "body25", source="clip_0042.json")


def test_input_errors():
    with pytest.raises(ValueError, match=r"keypoints: expected shape \[B, T, 25, 3\].*got \(2, 4, 18, 3\)"):
        entity_boxes(torch.rand(2, 4, 18, 3), "body25")
    with pytest.raises(ValueError, match=r"keypoints: expected shape"):
        entity_boxes(torch.rand(4, J, 2), "body25")
    with pytest.raises(ValueError, match=r"keypoints: expected a floating dtype.*\.float\(\)"):
        entity_boxes(torch.randint(0, 50, (2, 4, J, 3)), "body25")
    with pytest.raises(TypeError, match="keypoints: expected a torch.Tensor"):
        entity_boxes([[0.0] * 3] * J, "body25")
    with pytest.raises(ValueError, match="unknown keypoint layout"):
        entity_boxes(torch.rand(2, 4, J, 3), "coco99")
    with pytest.raises(ValueError, match="entities: layout 'body25' cannot provide"):
        entity_boxes(torch.rand(2, 4, J, 3), "body25", ("head", "tail"))
    with pytest.raises(ValueError, match="margin"):
        entity_boxes(torch.rand(2, 4, J, 3), "body25", margin=-1.0)
