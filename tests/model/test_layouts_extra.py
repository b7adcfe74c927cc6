"""coco18_hands28 / coco17 / miga22: registry entries, joint orders against BODY_25, entity sets, the boxes
they feed, and the hand-block order check."""
import numpy as np
import pytest
import torch

from mdn_fast.skeleton.boxes import entity_boxes
from mdn_fast.skeleton.layouts import ENTITIES, get_layout
from mdn_fast.skeleton.layouts_extra import (COCO18_FROM_BODY25, HAND_BLOCKS, MIGA22_FROM_BODY25,
                                         hand_groups_swapped, swap_hand_groups)

EXPECTED = {"coco18_hands28": (28, ENTITIES), "coco17": (17, ENTITIES), "miga22": (22, ENTITIES[:5])}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registered_sizes_and_entities(name):
    lay = get_layout(name)
    J, ents = EXPECTED[name]
    assert lay.num_joints == J
    assert lay.entities == ents
    assert len(set(lay.joint_names)) == J
    # every joint belongs to some entity or is at least a role (nothing silently unused on the body)
    used = set().union(*lay.entity_joints.values()) | set(lay.roles.values())
    assert used == set(range(J))


def test_miga22_has_no_lower_body():
    lay = get_layout("miga22")
    with pytest.raises(ValueError, match="lower_body"):
        lay.check_entities(ENTITIES)


@pytest.mark.parametrize("name,table", [("coco18_hands28", COCO18_FROM_BODY25), ("miga22", MIGA22_FROM_BODY25)])
def test_body_joints_match_body25(name, table):
    b25, lay = get_layout("body25"), get_layout(name)
    for i, j in enumerate(table):
        assert lay.joint_names[i] == b25.joint_names[j]


def _role_side_consistent(lay):
    for role, j in lay.roles.items():
        nm = lay.joint_names[j].lower()
        if role.startswith("l_"):
            assert nm.startswith("l") and not nm.startswith("right"), (role, nm)
        if role.startswith("r_"):
            assert nm.startswith("r") and not nm.startswith("left"), (role, nm)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_roles_sides_match_names(name):
    _role_side_consistent(get_layout(name))


@pytest.mark.parametrize("name", sorted(HAND_BLOCKS))
def test_hand_blocks_are_fingertips_in_their_hand_entity(name):
    lay = get_layout(name)
    right, left = HAND_BLOCKS[name]
    assert set(right) <= set(lay.entity_joints["right_hand"])
    assert set(left) <= set(lay.entity_joints["left_hand"])
    assert [lay.joint_names[j][1:] for j in right] == ["ThumbTip", "IndexTip", "MiddleTip", "RingTip", "LittleTip"]
    assert all(lay.joint_names[j].startswith("R") for j in right)
    assert all(lay.joint_names[j].startswith("L") for j in left)


def test_coco18_hands28_matches_public_ma52_config():
    """The public MA-52 28-keypoint configuration links points 18-22 to COCO-18 joint 7 (LWrist) and
    23-27 to joint 4 (RWrist): the layout's names, entities, roles, skeleton and hand blocks agree."""
    lay = get_layout("coco18_hands28")
    assert lay.role("l_wrist") == 7 and lay.role("r_wrist") == 4
    assert lay.joint_names[7] == "LWrist" and lay.joint_names[4] == "RWrist"
    assert all(lay.joint_names[j].startswith("L") for j in range(18, 23))
    assert all(lay.joint_names[j].startswith("R") for j in range(23, 28))
    assert set(range(18, 23)) <= set(lay.entity_joints["left_hand"])
    assert set(range(23, 28)) <= set(lay.entity_joints["right_hand"])
    assert {(7, j) for j in range(18, 23)} | {(4, j) for j in range(23, 28)} <= set(lay.skeleton)
    assert HAND_BLOCKS["coco18_hands28"] == (tuple(range(23, 28)), tuple(range(18, 23)))   # (right, left)
    # data drawn as the public config says (18-22 around joint 7) is in the layout's order: no swap
    rng = np.random.default_rng(5)
    kp = np.zeros((10, 28, 3))
    kp[..., :2] = rng.uniform(100, 500, (10, 28, 2))
    kp[..., 2] = 0.9
    kp[:, 7, :2], kp[:, 4, :2] = (450, 350), (150, 350)
    kp[:, 18:23, :2] = kp[:, 7:8, :2] + rng.normal(0, 10, (10, 5, 2))
    kp[:, 23:28, :2] = kp[:, 4:5, :2] + rng.normal(0, 10, (10, 5, 2))
    assert hand_groups_swapped(kp, lay) is False


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_boxes_from_random_people(name):
    lay = get_layout(name)
    g = torch.Generator().manual_seed(3)
    kp = torch.rand(2, 5, lay.num_joints, 3, generator=g) * 200
    kp[..., 2] = 0.9
    boxes, present = entity_boxes(kp, lay, lay.entities)
    assert boxes.shape == (2, 5, len(lay.entities), 4) and present.all()
    assert torch.isfinite(boxes).all() and (boxes[..., 2:] > boxes[..., :2]).all()
    kp[..., 2] = 0.0                                   # nobody: nothing present
    assert not entity_boxes(kp, lay, lay.entities)[1].any()


def _person(rng, lay, swap=False):
    """Random upper body with fingertips scattered around their wrist (or the other one if swap)."""
    kp = np.zeros((lay.num_joints, 3))
    kp[:, :2] = rng.uniform(100, 500, (lay.num_joints, 2))
    kp[:, 2] = rng.uniform(0.3, 1.0, lay.num_joints)
    kp[lay.role("r_wrist"), :2] = rng.uniform([100, 300], [200, 400])
    kp[lay.role("l_wrist"), :2] = rng.uniform([400, 300], [500, 400])
    right, left = HAND_BLOCKS[lay.name]
    rw, lw = kp[lay.role("r_wrist"), :2], kp[lay.role("l_wrist"), :2]
    for block, w in ((right, lw if swap else rw), (left, rw if swap else lw)):
        kp[list(block), :2] = w + rng.normal(0, 15, (5, 2))
    return kp


@pytest.mark.parametrize("name", sorted(HAND_BLOCKS))
def test_hand_order_check(name):
    lay = get_layout(name)
    rng = np.random.default_rng(7)
    straight = np.stack([_person(rng, lay) for _ in range(12)])
    crossed = np.stack([_person(rng, lay, swap=True) for _ in range(12)])
    assert hand_groups_swapped(straight, lay) is False
    assert hand_groups_swapped(crossed, lay) is True
    fixed = swap_hand_groups(crossed, lay)
    assert hand_groups_swapped(fixed, lay) is False
    np.testing.assert_array_equal(swap_hand_groups(fixed, lay), crossed)   # an involution
    none = straight.copy()
    none[..., 2] = 0
    assert hand_groups_swapped(none, lay) is None
    assert hand_groups_swapped(straight[:, :17], "coco17") is None      # no hand blocks
    with pytest.raises(ValueError, match="no hand blocks"):
        swap_hand_groups(straight[:, :17], "coco17")
