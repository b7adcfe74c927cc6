"""OpenPose --write_json frames: people[0], missing people/joints, frame order, layout assembly
(body25, coco18_hands28 from 18/25/28-joint files, miga22 from BODY_25 + hands), malformed files."""
import json

import numpy as np
import pytest

from mdn_fast.data import openpose_json as oj
from mdn_fast.skeleton.layouts_extra import COCO18_FROM_BODY25, HAND_TIPS_21, MIGA22_FROM_BODY25


def _rand_kp(rng, J):
    kp = np.column_stack([rng.uniform(0, 640, J), rng.uniform(0, 480, J), rng.uniform(0.1, 1, J)])
    return np.round(kp, 3)


def test_body25_frame_and_missing(tmp_path):
    rng = np.random.default_rng(0)
    kp = _rand_kp(rng, 25)
    kp[7] = 0                                         # a missing joint stays (0, 0, 0)
    oj.write_frame(tmp_path / "a.json", kp)
    got = oj.read_frame(tmp_path / "a.json", "body25")
    assert got.shape == (25, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, kp, rtol=1e-6)
    oj.write_frame(tmp_path / "empty.json", None)    # no people -> zeros
    np.testing.assert_array_equal(oj.read_frame(tmp_path / "empty.json", "body25"), 0)


def test_people0_is_used(tmp_path):
    rng = np.random.default_rng(1)
    a, b = _rand_kp(rng, 25), _rand_kp(rng, 25)
    obj = {"people": [{"pose_keypoints_2d": a.ravel().tolist()}, {"pose_keypoints_2d": b.ravel().tolist()}]}
    (tmp_path / "f.json").write_text(json.dumps(obj))
    np.testing.assert_allclose(oj.read_frame(tmp_path / "f.json"), a, rtol=1e-6)


def test_sequence_frame_order_and_indices(tmp_path):
    rng = np.random.default_rng(2)
    clip = tmp_path / "clip"
    clip.mkdir()
    kps = [_rand_kp(rng, 25) for _ in range(12)]
    for t, kp in enumerate(kps):                      # unpadded numbers: lexical order would be wrong
        oj.write_frame(clip / f"clip_{t}_keypoints.json", kp)
    files = oj.frame_files(clip)
    assert [f.name for f in files][:3] == ["clip_0_keypoints.json", "clip_1_keypoints.json", "clip_2_keypoints.json"]
    seq = oj.read_sequence(clip, "body25")
    np.testing.assert_allclose(seq, np.stack(kps), rtol=1e-6)
    sub = oj.read_sequence(clip, "body25", [11, 3, 3])
    np.testing.assert_allclose(sub, np.stack([kps[11], kps[3], kps[3]]), rtol=1e-6)
    with pytest.raises(IndexError, match="12 JSON frames"):
        oj.read_sequence(clip, "body25", [12])


def test_coco18_hands28_assembly(tmp_path):
    rng = np.random.default_rng(3)
    body18, lh, rh = _rand_kp(rng, 18), _rand_kp(rng, 21), _rand_kp(rng, 21)
    oj.write_frame(tmp_path / "c18.json", body18, hands=(lh, rh))
    got = oj.read_frame(tmp_path / "c18.json", "coco18_hands28")
    assert got.shape == (28, 3)
    np.testing.assert_allclose(got[:18], body18, rtol=1e-6)
    np.testing.assert_allclose(got[18:23], lh[list(HAND_TIPS_21)], rtol=1e-6)     # left block first (MA-52)
    np.testing.assert_allclose(got[23:28], rh[list(HAND_TIPS_21)], rtol=1e-6)
    # BODY_25 body + hands -> COCO-18 mapping
    b25 = _rand_kp(rng, 25)
    oj.write_frame(tmp_path / "b25.json", b25, hands=(lh, rh))
    got = oj.read_frame(tmp_path / "b25.json", "coco18_hands28")
    np.testing.assert_allclose(got[:18], b25[list(COCO18_FROM_BODY25)], rtol=1e-6)
    # a 28-joint file is taken as is; no hand arrays -> zero hand points
    k28 = _rand_kp(rng, 28)
    oj.write_frame(tmp_path / "k28.json", k28)
    np.testing.assert_allclose(oj.read_frame(tmp_path / "k28.json", "coco18_hands28"), k28, rtol=1e-6)
    oj.write_frame(tmp_path / "nohands.json", body18)
    np.testing.assert_array_equal(oj.read_frame(tmp_path / "nohands.json", "coco18_hands28")[18:], 0)


def test_miga22_from_body25(tmp_path):
    rng = np.random.default_rng(4)
    b25, lh, rh = _rand_kp(rng, 25), _rand_kp(rng, 21), _rand_kp(rng, 21)
    oj.write_frame(tmp_path / "m.json", b25, hands=(lh, rh))
    got = oj.read_frame(tmp_path / "m.json", "miga22")
    np.testing.assert_allclose(got[:12], b25[list(MIGA22_FROM_BODY25)], rtol=1e-6)
    np.testing.assert_allclose(got[12:17], rh[list(HAND_TIPS_21)], rtol=1e-6)
    np.testing.assert_allclose(got[17:22], lh[list(HAND_TIPS_21)], rtol=1e-6)


def test_truncated_json_names_file_and_line(tmp_path):
    rng = np.random.default_rng(5)
    p = tmp_path / "clip_000000000003_keypoints.json"
    oj.write_frame(p, _rand_kp(rng, 25))
    text = json.dumps(json.loads(p.read_text()), indent=1)
    p.write_text(text[: len(text) // 2])             # cut mid-write
    with pytest.raises(oj.OpenPoseFormatError, match=r"clip_000000000003_keypoints\.json, line \d+, column \d+"):
        oj.read_frame(p)


def test_malformed_content(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"version": 1.3}))
    with pytest.raises(oj.OpenPoseFormatError, match=r"bad\.json, line 1: expected a JSON object with a 'people'"):
        oj.read_frame(p)
    p.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 54}]}))   # 18 joints for body25
    with pytest.raises(oj.OpenPoseFormatError, match=r"bad\.json: people\[0\]\.pose_keypoints_2d has 18 joints, expected 25"):
        oj.read_frame(p, "body25")
    p.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 74}]}))
    with pytest.raises(oj.OpenPoseFormatError, match="74 values, expected a multiple of 3"):
        oj.read_frame(p, "body25")
    with pytest.raises(oj.OpenPoseFormatError, match=r"missing\.json: file does not exist"):
        oj.read_frame(tmp_path / "missing.json")
    with pytest.raises(oj.OpenPoseFormatError, match="folder does not exist"):
        oj.frame_files(tmp_path / "nope")
