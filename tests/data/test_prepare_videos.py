"""prepare_videos: same frame count and rate at the new short side, a manifest of original sizes,
resumable (finished files skipped, truncated ones redone), and the dataset-side mapping (plan made for the
original size, applied to the prepared frames) keeps keypoints on the frames."""
import json

import numpy as np
import pytest
import torch

from mdn_fast.data import video as V
from mdn_fast.data.prepare_videos import MANIFEST, PreparedVideos, prepare_videos, prepared_size
from mdn_fast.data.video_fixtures import write_square_clip, write_video

av = pytest.importorskip("av")
if "libx264" not in av.codecs_available:
    pytest.skip("PyAV without libx264", allow_module_level=True)


def _square_clip(path, n, h, w, fps=30):
    """A dark clip with a white 12x12 square moving 2 px per frame; returns its centres per frame."""
    return write_square_clip(path, n, h, w, fps=fps, crf=12)


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "raw_videos"
    write_video(root / "a.mp4", 20, 96, 80, seed=1)
    write_video(root / "sub" / "b.mp4", 27, 80, 112, seed=2)
    _square_clip(root / "c.mp4", 25, 192, 160)
    return root


def test_prepared_size():
    assert prepared_size(1296, 1080, 256) == (308, 256)      # 4:2:0 (default): 307.2 -> even
    assert prepared_size(1296, 1080, 256, "yuv444p") == (307, 256) == V.make_crop_plan(1296, 1080, False).resized
    assert prepared_size(720, 1280, 256) == (256, 456)
    assert prepared_size(720, 1280, 256, "yuv444p") == (256, 455)
    assert prepared_size(100, 80, 256) == (100, 80)           # never upscaled


def test_prepare_and_resume(src, tmp_path):
    dst = tmp_path / "prepared"
    rep = prepare_videos(src, dst, short_side=32, workers=2, progress=False)
    assert (rep.encoded, rep.skipped, rep.failed) == (3, 0, {})
    man = json.loads((dst / MANIFEST).read_text())
    assert man["short_side"] == 32 and set(man["videos"]) == {"a.mp4", "sub/b.mp4", "c.mp4"}
    for rel, (n, h0, w0) in {"a.mp4": (20, 96, 80), "sub/b.mp4": (27, 80, 112), "c.mp4": (25, 192, 160)}.items():
        e = man["videos"][rel]
        assert (e["frames"], e["orig_h"], e["orig_w"]) == (n, h0, w0)
        assert (e["h"], e["w"]) == prepared_size(h0, w0, 32) and min(e["h"], e["w"]) == 32
        with av.open(str(dst / rel)) as c:
            assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert V.count_frames(dst / rel) == n and V.video_frame_size(dst / rel) == (e["h"], e["w"])
        with av.open(str(dst / rel)) as c:
            assert c.streams.video[0].average_rate == 30
    # second run: everything verified and skipped
    rep = prepare_videos(src, dst, short_side=32, workers=1, progress=False)
    assert (rep.encoded, rep.skipped) == (0, 3)
    # a truncated output and a lost manifest entry: the first is redone, the second rebuilt
    data = (dst / "sub" / "b.mp4").read_bytes()
    (dst / "sub" / "b.mp4").write_bytes(data[: len(data) // 2])
    man["videos"].pop("a.mp4")
    (dst / MANIFEST).write_text(json.dumps(man))
    rep = prepare_videos(src, dst, short_side=32, workers=1, progress=False)
    assert (rep.encoded, rep.skipped, rep.failed) == (1, 2, {})
    assert V.count_frames(dst / "sub" / "b.mp4") == 27
    assert json.loads((dst / MANIFEST).read_text())["videos"]["a.mp4"]["frames"] == 20
    assert not list(dst.rglob("*.partial"))
    with pytest.raises(ValueError, match="short_side 32, pix_fmt yuv420p, not 64"):
        prepare_videos(src, dst, short_side=64, workers=1, progress=False)


def test_prepare_errors(src, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        prepare_videos(tmp_path / "nope", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="dst must differ from src"):
        prepare_videos(src, src, progress=False)
    (src / "broken.mp4").write_bytes(b"\0" * 500)
    rep = prepare_videos(src, tmp_path / "out", short_side=32, workers=1, progress=False)
    assert rep.encoded == 3 and set(rep.failed) == {"broken.mp4"}
    with pytest.raises(KeyError, match="broken.mp4.*run it again"):
        PreparedVideos.find(tmp_path / "out").num_frames("broken.mp4")
    assert PreparedVideos.find(src) is None


@pytest.mark.parametrize("pix_fmt, size", [("yuv420p", (76, 64)), ("yuv444p", (77, 64))])
def test_dataset_mapping_keeps_keypoints(src, tmp_path, pix_fmt, size):
    """What a dataset does with a prepared folder: counts from the manifest, the plan made for the
    original size and moved to the prepared frames; keypoints (original pixels) land on the square."""
    dst = tmp_path / "prep"
    prepare_videos(src, dst, short_side=64, workers=1, progress=False, pix_fmt=pix_fmt)
    centres = _square_clip(tmp_path / "again.mp4", 25, 192, 160)   # the same centres as c.mp4
    pv = PreparedVideos.find(dst)
    assert pv.num_frames("c.mp4") == 25 and pv.original_size("c.mp4") == (192, 160)
    rng = np.random.default_rng(0)
    checked = 0
    for k in range(8):
        frames, idx, n = V.decode_sampled(dst / "c.mp4", 4, train=k > 0, rng=rng)
        assert n == 25 and frames.shape[1:3] == size
        plan = pv.plan_for("c.mp4", frames, lambda h, w: V.make_crop_plan(h, w, k > 0, rng, short_side=64,
                                                                         out=56))
        kp = np.concatenate([centres[idx], np.ones((len(idx), 1), np.float32)], -1)[:, None]
        k_out = V.apply_to_keypoints(kp, plan)[:, 0]
        x = V.apply_to_frames(frames, plan, normalize=False).mean(1)          # [T, 56, 56]
        for t in range(len(idx)):
            if not (5 < k_out[t, 0] < 51 and 5 < k_out[t, 1] < 51):
                continue
            m = x[t]
            ys, xs = torch.nonzero(m > 0.5 * (m.max() + m.min()), as_tuple=True)
            w = m[ys, xs]
            cx, cy = float((xs * w).sum() / w.sum()), float((ys * w).sum() / w.sum())
            assert abs(cx - k_out[t, 0]) < 0.6 and abs(cy - k_out[t, 1]) < 0.6, (t, cx, cy, k_out[t])
            checked += 1
    assert checked >= 10
    # a split sub-folder of a prepared root resolves names relative to it
    sub = PreparedVideos.find(dst / "sub")
    assert sub.num_frames("b.mp4") == 27


def test_resolve_prepared(src, tmp_path):
    from mdn_fast.data.prepare_videos import resolve_prepared
    dst = tmp_path / "prep_root"
    prepare_videos(src, dst / "raw_videos", short_side=32, workers=1, progress=False)
    d, pv = resolve_prepared(src)
    assert d == src and pv is None
    for kw in ({"prepared": dst, "root": tmp_path}, {"prepared": dst / "raw_videos"}, {"prepared": dst}):
        d, pv = resolve_prepared(src, **kw)
        assert d == dst / "raw_videos" and pv.num_frames("c.mp4") == 25
    d, pv = resolve_prepared(dst / "raw_videos" / "sub")
    assert pv.original_size("b.mp4") == (80, 112)
    with pytest.raises(FileNotFoundError, match="no prepared_manifest.json"):
        resolve_prepared(src, prepared=tmp_path / "nothing")
