"""Keypoint-layout registry: lookup, errors, BODY_25 entity joints, adding a layout as data."""
import pytest

from mdn_fast.data import ENTITIES, Layout, get_layout, layout_names, register_layout
from mdn_fast.skeleton import layouts as layouts_mod


def test_body25_registered_with_openpose_order():
    lay = get_layout("body25")
    assert "body25" in layout_names()
    assert lay.num_joints == 25
    assert lay.joint_names[:9] == ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow",
                                   "LWrist", "MidHip")
    assert lay.joint_names[15:19] == ("REye", "LEye", "REar", "LEar")
    assert lay.joint_names[24] == "RHeel"
    # Roles point at the joints with those names.
    for role, name in [("nose", "Nose"), ("neck", "Neck"), ("l_wrist", "LWrist"), ("r_elbow", "RElbow"),
                       ("l_ear", "LEar"), ("mid_hip", "MidHip"), ("r_heel", "RHeel")]:
        assert lay.joint_names[lay.role(role)] == name


def test_body25_entity_joints():
    lay = get_layout("body25")
    assert lay.entities == ENTITIES
    assert set(lay.entity_joints["head"]) == {0, 1, 15, 16, 17, 18}
    assert set(lay.entity_joints["face"]) == {0, 15, 16, 17, 18}
    assert set(lay.entity_joints["left_hand"]) == {5, 6, 7}
    assert set(lay.entity_joints["right_hand"]) == {2, 3, 4}
    assert set(lay.entity_joints["torso"]) == {1, 2, 5, 8, 9, 12}
    assert set(lay.entity_joints["lower_body"]) == set(range(9, 15)) | set(range(19, 25))
    assert lay.box_rule("face") == "openpose_face"
    assert lay.box_rule("left_hand") == "openpose_hand"
    assert lay.box_rule("torso") == "extent"
    # Hand rules read the arm of the same side (subject's left = OpenPose "L").
    assert [lay.joint_names[lay.role(r)] for r in lay.hand_arm_roles["left_hand"]] == ["LShoulder", "LElbow", "LWrist"]
    for a, b in lay.skeleton:
        assert 0 <= a < 25 and 0 <= b < 25


def test_unknown_layout_lists_registered_names():
    with pytest.raises(ValueError, match=r"unknown keypoint layout 'body_99'.*body25"):
        get_layout("body_99")


def test_layout_passes_through_and_is_immutable():
    lay = get_layout("body25")
    assert get_layout(lay) is lay
    with pytest.raises(TypeError):
        lay.entity_joints["head"] = (0,)
    with pytest.raises(Exception):
        lay.name = "other"
    hash(lay)  # usable as a dict key / cache key


def test_check_entities_refuses_what_a_layout_cannot_provide(monkeypatch):
    monkeypatch.setattr(layouts_mod, "_REGISTRY", dict(layouts_mod._REGISTRY))
    upper = register_layout(Layout(
        name="upper_only", joint_names=("nose", "neck", "rs", "ls"),
        entity_joints={"head": (0, 1), "torso": (1, 2, 3)}, roles={"nose": 0, "neck": 1},
        skeleton=((0, 1), (1, 2), (1, 3)), center_joints=((1,),), scale_pairs=((2, 3, 1.4),)))
    assert get_layout("upper_only") is upper
    assert upper.entities == ("head", "torso")
    with pytest.raises(ValueError, match=r"cannot provide \['lower_body'\].*supports \['head', 'torso'\]"):
        upper.check_entities(("head", "lower_body"))
    with pytest.raises(TypeError, match="entities"):
        upper.check_entities("head")
    with pytest.raises(ValueError, match="already registered"):
        register_layout(upper)
    with pytest.raises(ValueError, match="no joint with role 'l_wrist'"):
        upper.role("l_wrist")


def test_layout_validation_errors():
    with pytest.raises(ValueError, match="outside 0..1"):
        Layout(name="bad", joint_names=("a", "b"), entity_joints={"head": (0, 5)})
    with pytest.raises(ValueError, match="needs roles"):
        Layout(name="bad", joint_names=("a", "b"), entity_joints={"face": (0, 1)}, box_rules={"face": "openpose_face"})
    with pytest.raises(ValueError, match="not one of"):
        Layout(name="bad", joint_names=("a", "b"), entity_joints={"head": (0, 1)}, box_rules={"head": "circle"})
    with pytest.raises(ValueError, match="hand_arm_roles"):
        Layout(name="bad", joint_names=("a", "b"), entity_joints={"left_hand": (0, 1)},
               box_rules={"left_hand": "openpose_hand"})
