"""MA-52 readers on tiny real-format fixtures written here: list/label files (CRLF, no final newline),
mp4 clips written with PyAV, mmaction pose pickles and OpenPose JSON folders. Checks TSN sampling, that
keypoints follow the frames through resize and crop, hidden test labels, and the error messages."""
import pickle

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from mdn_fast.data import openpose_json as oj
from mdn_fast.data.ma52 import (BODY_OF_ACTION, AnnotationError, MA52Dataset, body_of_action, read_label_names,
                                read_list)
from mdn_fast.data.video import (IMAGENET_MEAN, IMAGENET_STD, MULTISCALE_SCALES, VideoReadError, apply_to_frames,
                                 apply_to_keypoints, count_frames, decode_frames, make_crop_plan,
                                 tsn_sample_indices)

W, H, N_FRAMES = 64, 48, 20


def _codec():
    for c in ("libx264", "mpeg4"):
        if c in av.codecs_available:
            return c
    pytest.skip("no H.264/MPEG-4 encoder in this PyAV build")


def _square_centre(t):
    """Where the bright square of frame t sits (moves 1 px per frame)."""
    return 20 + t, 18 + (t % 7)


def write_clip(path, n=N_FRAMES):
    """Dark frames with a frame-number grey level in the top-left 8x8 and a white 6x6 square."""
    codec = _codec()
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"crf": "0"} if codec == "libx264" else {"qscale": "1"}
        if codec == "mpeg4":
            s.codec_context.qmin = s.codec_context.qmax = 1
        for t in range(n):
            img = np.full((H, W, 3), 20, np.uint8)
            img[:8, :8] = 10 * t + 30
            cx, cy = _square_centre(t)
            img[cy - 3:cy + 3, cx - 3:cx + 3] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def keypoints_for(n, J=28):
    """[n, J, 3]: joint 0 at the square centre (pixel-index convention: the 6x6 square covers
    cx-3..cx+2, so its centre is cx - .5), others random; joint 5 missing."""
    rng = np.random.default_rng(0)
    kp = np.column_stack([rng.uniform(0, W, J), rng.uniform(0, H, J), rng.uniform(.3, 1, J)])
    kp = np.repeat(kp[None], n, 0).astype(np.float32)
    for t in range(n):
        cx, cy = _square_centre(t)
        kp[t, 0] = (cx - 0.5, cy - 0.5, 1.0)
    kp[:, 5] = 0
    return kp


@pytest.fixture(scope="module")
def ma52_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ma52")
    names = {"train": [("a0001.mp4", 3), ("a0002.mp4", 40)], "val": [("b0001.mp4", 51)],
             "test": [("test0000.mp4", 0), ("test0001.mp4", 0)]}
    anns = {}
    for split, items in names.items():
        (root / f"videos_{split}").mkdir()
        lines = [f"{n} {l}" for n, l in items]
        (root / f"{split}_list_videos.txt").write_bytes("\r\n".join(lines).encode())  # CRLF, no final newline
        anns[split] = []
        for n, l in items:
            write_clip(root / f"videos_{split}" / n)
            kp = keypoints_for(N_FRAMES)
            anns[split].append(dict(frame_dir=n[:-4], label=l, img_shape=(H, W), original_shape=(H, W),
                                    total_frames=N_FRAMES, keypoint=kp[None, ..., :2],
                                    keypoint_score=kp[None, ..., 2]))
    (root / "pose").mkdir()
    for split in names:
        with open(root / "pose" / f"{split}.pkl", "wb") as f:
            pickle.dump({"split": {split: [a["frame_dir"] for a in anns[split]]}, "annotations": anns[split]}, f)
    (root / "label_name.txt").write_bytes("\r\n".join(f"{i}\tname {i}" for i in range(52)).encode())
    return root


# ------------------------------------------------------------------------------------------ list files
def test_read_list_crlf_no_final_newline(tmp_path):
    p = tmp_path / "train_list_videos.txt"
    p.write_bytes(b"x1.mp4 0\r\nx2.mp4 51\r\n\r\nx3.mp4 -1\r\nx4.mp4")
    assert read_list(p) == [("x1.mp4", 0), ("x2.mp4", 51), ("x3.mp4", -1), ("x4.mp4", -1)]


@pytest.mark.parametrize("content,msg", [
    (b"x1.mp4 0\r\nx2.mp4 abc\r\n", r"train_list_videos\.txt, line 2: expected an integer label, found 'abc'"),
    (b"x1.mp4 0\r\nx2.mp4 1\r\nx3.mp4 52", r"line 3: expected a label in 0\.\.51 .*found 52"),
    (b"x1.mp4 0 7\r\n", r"line 1: expected 'name\.mp4 label' \(2 fields\), found 3 fields"),
    (b"x1.mp4 0\r\nx1.mp4 2\r\n", r"line 2: clip 'x1\.mp4' already listed on line 1"),
    (b"\r\n\r\n", r"no clips listed"),
])
def test_read_list_errors(tmp_path, content, msg):
    p = tmp_path / "train_list_videos.txt"
    p.write_bytes(content)
    with pytest.raises(AnnotationError, match=msg):
        read_list(p)


def test_read_list_missing_file(tmp_path):
    with pytest.raises(AnnotationError, match=r"nope\.txt: annotation file does not exist"):
        read_list(tmp_path / "nope.txt")


def test_read_label_names(tmp_path):
    p = tmp_path / "label_name.txt"
    p.write_bytes(b"0\tshaking body\r\n1\tsitting straightly\r\n2\tshrugging")
    assert read_label_names(p) == ["shaking body", "sitting straightly", "shrugging"]
    p.write_bytes(b"0\tshaking body\r\n2\tshrugging")
    with pytest.raises(AnnotationError, match=r"label_name\.txt: ids must be 0\.\.1; missing \[1\]"):
        read_label_names(p)
    p.write_bytes(b"0\tshaking body\r\nx\tshrugging")
    with pytest.raises(AnnotationError, match=r"label_name\.txt, line 2: expected an integer id, found 'x'"):
        read_label_names(p)
    p.write_bytes(b"0\tshaking body\r\n1\r\n")
    with pytest.raises(AnnotationError, match=r"line 2: expected 'id<TAB>name'"):
        read_label_names(p)


def test_body_of_action_ranges():
    bounds = [(0, 4, 0), (5, 10, 1), (11, 23, 2), (24, 31, 3), (32, 37, 4), (38, 47, 5), (48, 51, 6)]
    for lo, hi, body in bounds:
        for a in range(lo, hi + 1):
            assert BODY_OF_ACTION[a] == body == body_of_action(a)
    assert len(BODY_OF_ACTION) == 52 and body_of_action(-1) == -1
    with pytest.raises(ValueError, match="0..51"):
        body_of_action(52)


# ------------------------------------------------------------------------------------------ sampling / video
@pytest.mark.parametrize("n", [1, 5, 8, 20, 61])
def test_tsn_sampling(n):
    S = 8
    ev = tsn_sample_indices(n, S, train=False)
    np.testing.assert_array_equal(ev, np.floor((np.arange(S) + 0.5) * n / S).astype(int))
    rng = np.random.default_rng(n)
    for _ in range(20):
        tr = tsn_sample_indices(n, S, train=True, rng=rng)
        assert (np.diff(tr) >= 0).all() and tr.min() >= 0 and tr.max() < n
        seg = np.floor(np.arange(S) * n / S)
        assert (tr >= seg).all() and (tr < np.maximum(seg + 1, np.ceil((np.arange(S) + 1) * n / S))).all()
    a = tsn_sample_indices(n, S, True, np.random.default_rng(1))
    b = tsn_sample_indices(n, S, True, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)


def test_decode_picks_requested_frames(ma52_root):
    path = ma52_root / "videos_train" / "a0001.mp4"
    assert count_frames(path) == N_FRAMES
    idx = np.array([19, 0, 7, 7, 13])
    fr = decode_frames(path, idx)
    assert fr.shape == (5, H, W, 3) and fr.dtype == np.uint8
    level = fr[:, 2:6, 2:6].reshape(5, -1).mean(1)
    np.testing.assert_allclose(level, 10 * idx + 30, atol=4)
    past = decode_frames(path, [25])                  # past the end -> last frame
    np.testing.assert_allclose(past[0, 2:6, 2:6].mean(), 10 * 19 + 30, atol=4)


def test_video_errors(tmp_path):
    with pytest.raises(VideoReadError, match=r"missing\.mp4' does not exist"):
        decode_frames(tmp_path / "missing.mp4", [0])
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match=r"broken\.mp4"):
        decode_frames(bad, [0])


def test_crop_plans():
    ev = make_crop_plan(48, 64, train=False)
    assert ev.resized == (256, 341) and ev.box == ((341 - 224) // 2, 16, 224, 224)
    rng = np.random.default_rng(0)
    sizes = {int(256 * s) for s in MULTISCALE_SCALES}
    for _ in range(50):
        p = make_crop_plan(48, 64, train=True, rng=rng)
        x0, y0, cw, ch = p.box
        assert cw in sizes and ch in sizes and x0 + cw <= 341 and y0 + ch <= 256 and x0 >= 0 and y0 >= 0


def test_keypoints_follow_frames_synthetic():
    """A bright pixel block and its keypoint land on the same output pixel for eval and train crops."""
    rng = np.random.default_rng(0)
    img = np.zeros((1, 90, 120, 3), np.uint8)
    img[0, 40:46, 70:76] = 255                        # centre (72.5, 42.5) in pixel-index units
    kp = np.array([[[72.5, 42.5, 1.0], [0, 0, 0]]], np.float32)
    checked = 0
    for train in (False,) + (True,) * 12:
        plan = make_crop_plan(90, 120, train, rng)
        out = apply_to_frames(img, plan, normalize=False)[0].mean(0)
        k = apply_to_keypoints(kp, plan)[0]
        assert (k[1] == 0).all()                       # missing joint stays (0, 0, 0)
        if not (10 < k[0, 0] < 214 and 10 < k[0, 1] < 214):
            continue
        ys, xs = torch.nonzero(out > 0.5, as_tuple=True)
        w = out[ys, xs]
        cx, cy = float((xs * w).sum() / w.sum()), float((ys * w).sum() / w.sum())
        assert abs(cx - k[0, 0]) < 0.6 and abs(cy - k[0, 1]) < 0.6, (plan, cx, cy, k[0])
        checked += 1
    assert checked >= 3


# ------------------------------------------------------------------------------------------ dataset
def _bright_centroid(frame):
    """Centroid of the white square in a normalised [3, 224, 224] frame."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    g = (frame * std + mean).mean(0)
    m = g > 0.6
    m[:40, :60] = False                               # not the grey frame-number patch
    ys, xs = torch.nonzero(m, as_tuple=True)
    return float(xs.float().mean()), float(ys.float().mean()), int(m.sum())


@pytest.mark.parametrize("train", [False, True])
def test_dataset_rgb_pose_pickle(ma52_root, train):
    torch.manual_seed(0)
    ds = MA52Dataset(ma52_root, "train", "rgb+pose", num_segments=8, train=train)
    assert len(ds) == 2 and ds.layout == "coco18_hands28" and ds.class_names[51] == "name 51"
    checked = 0
    for i, (_, label) in enumerate(ds.items):
        for _ in range(2 if train else 1):
            item = ds[i]
            assert item["frames"].shape == (8, 3, 224, 224) and item["frames"].dtype == torch.float32
            assert item["keypoints"].shape == (8, 28, 3)
            assert item["label"] == label and item["body_label"] == BODY_OF_ACTION[label]
            kp = item["keypoints"]
            assert (kp[:, 5] == 0).all()
            for t in range(8):
                x, y, n = _bright_centroid(item["frames"][t])
                kx, ky = float(kp[t, 0, 0]), float(kp[t, 0, 1])
                if n < 50 or not (15 < kx < 209 and 15 < ky < 209):
                    continue
                # the same frame was sampled for both, and the same geometry was applied
                assert abs(x - kx) < 2.0 and abs(y - ky) < 2.0, (t, x, y, kx, ky)
                checked += 1
    assert checked >= 8


def test_dataset_eval_is_deterministic_and_test_labels_hidden(ma52_root):
    ds = MA52Dataset(ma52_root, "test", "rgb+pose")
    assert not ds.train and ds.hide_labels
    a, b = ds[1], ds[1]
    assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["keypoints"], b["keypoints"])
    assert a["label"] == -1 and a["body_label"] == -1
    shown = MA52Dataset(ma52_root, "val", "rgb+pose")
    assert shown[0]["label"] == 51 and shown[0]["body_label"] == 6


def test_dataset_rgb_only_and_pose_only(ma52_root, tmp_path):
    rgb = MA52Dataset(ma52_root, "val", "rgb", pose=None)
    item = rgb[0]
    assert item["frames"].shape == (8, 3, 224, 224)        # pose source found by default: keypoints too
    assert "keypoints" in item
    # pose only, from OpenPose JSON folders (frame size read from the video header)
    jroot = tmp_path / "json"
    kp = keypoints_for(N_FRAMES)
    (jroot / "b0001").mkdir(parents=True)
    for t in range(N_FRAMES):
        oj.write_frame(jroot / "b0001" / f"b0001_{t:012d}_keypoints.json", kp[t])
    pose = MA52Dataset(ma52_root, "val", "pose", pose=jroot, video_dir=ma52_root / "videos_val",
                       hand_order="as_is")
    item = pose[0]
    assert "frames" not in item and item["keypoints"].shape == (8, 28, 3)
    from_pkl = MA52Dataset(ma52_root, "val", "pose", hand_order="as_is")[0]["keypoints"]
    torch.testing.assert_close(item["keypoints"], from_pkl)  # JSON and pickle paths agree


def test_keypoints_rescaled_from_img_shape_to_video_size(ma52_root, tmp_path):
    """Pose computed on 2x larger frames (img_shape (2H, 2W)) than the (resized) videos: the keypoints
    come out where the ones computed on the videos do."""
    kp = keypoints_for(N_FRAMES)
    big = kp.copy()
    ok = big[..., 2] > 0
    big[..., :2] = np.where(ok[..., None], (big[..., :2] + 0.5) * 2 - 0.5, 0)
    with open(tmp_path / "big.pkl", "wb") as f:
        pickle.dump([dict(frame_dir="b0001", label=51, img_shape=(2 * H, 2 * W), total_frames=N_FRAMES,
                          keypoint=big[None, ..., :2], keypoint_score=big[None, ..., 2])], f)
    a = MA52Dataset(ma52_root, "val", "rgb+pose", pose=tmp_path / "big.pkl", hand_order="as_is")[0]["keypoints"]
    b = MA52Dataset(ma52_root, "val", "rgb+pose", hand_order="as_is")[0]["keypoints"]
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    assert (a[:, 5] == 0).all()                        # missing joints stay (0, 0, 0)


def test_dataset_errors(ma52_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="MA-52 list file for split 'bogus'"):
        MA52Dataset(ma52_root, "bogus", "rgb")
    with pytest.raises(ValueError, match="modality"):
        MA52Dataset(ma52_root, "val", "depth")
    bad = tmp_path / "bad.pkl"
    kp = keypoints_for(4)
    with open(bad, "wb") as f:
        pickle.dump([dict(frame_dir="b0001", label=1, img_shape=(H, W), total_frames=4,
                          keypoint=kp[None, :, :17, :2], keypoint_score=kp[None, :, :17, 2])], f)
    with pytest.raises(AnnotationError, match=r"bad\.pkl: annotation 0 \(frame_dir 'b0001'\): 'keypoint' has shape "
                                              r"\(1, 4, 17, 2\), expected \[M, T, 28, 2\]"):
        MA52Dataset(ma52_root, "val", "pose", pose=bad)
    with open(bad, "wb") as f:
        pickle.dump([dict(frame_dir="b0001", keypoint=kp[None, ..., :2])], f)
    with pytest.raises(AnnotationError, match="'keypoint_score' is missing"):
        MA52Dataset(ma52_root, "val", "pose", pose=bad)
    with pytest.raises(AnnotationError, match=r"nothere\.pkl: pose pickle does not exist"):
        MA52Dataset(ma52_root, "val", "pose", pose=tmp_path / "nothere.pkl")
    # a listed clip whose video is missing: refused when the dataset is built, naming the file and line
    (tmp_path / "videos_val").mkdir()
    (tmp_path / "val_list_videos.txt").write_bytes(b"gone.mp4 3")
    with pytest.raises(AnnotationError, match=r"val_list_videos\.txt: 1 of 1 listed clips cannot be used; first: "
                                              r"line 1, clip 'gone\.mp4': video file .*gone\.mp4' does not exist"):
        MA52Dataset(tmp_path, "val", "rgb")
    # a video that exists but cannot be decoded still fails when read, naming the file
    (tmp_path / "videos_val" / "gone.mp4").write_bytes(b"not a video")
    ds = MA52Dataset(tmp_path, "val", "rgb")
    with pytest.raises(VideoReadError, match=r"gone\.mp4"):
        ds[0]
