"""The fast video path (mdn_fast.data.video): selective H.264 decoding gives the same frames as decoding
everything; the uint8 crop-in-source transform keeps frames and keypoints together (0.6 px) and differs
from the previous float pipeline only by interpolation rounding plus the sub-pixel rounding of the box."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks._previous_pipeline import apply_to_frames_float, nominal_affine
from mdn_fast.data import video as V
from mdn_fast.data import video_decode as D   # the decoder's own helpers (and the one the fallback patch must hit)
from mdn_fast.data.video_fixtures import NaturalClip, write_video

av = pytest.importorskip("av")
if "libx264" not in av.codecs_available:
    pytest.skip("PyAV without libx264", allow_module_level=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("fast_video")
    # default x264 GOP (one keyframe: a camera clip) and a short GOP (a prepared clip); both with B-frames
    return {"long_gop": write_video(d / "long.mp4", 37, 96, 80, seed=1, preset="veryfast"),
            "short_gop": write_video(d / "short.mp4", 37, 96, 80, seed=2, gop=6)}


@pytest.mark.parametrize("kind", ["long_gop", "short_gop"])
def test_selective_decode_equals_sequential(clips, kind, monkeypatch):
    path = clips[kind]
    rng = np.random.default_rng(0)
    sets = [[0], [36], [40, 2, 2], [5, 3], list(rng.integers(0, 37, 8)), list(range(37))]
    want = [V.decode_frames(path, s, sequential=True) for s in sets]

    def no_fallback(*a, **k):
        raise AssertionError("fell back to sequential decoding on an H.264 mp4")
    monkeypatch.setattr(D, "_decode_sequential", no_fallback)
    for s, w in zip(sets, want):
        got = V.decode_frames(path, s, threads=1)
        assert got.shape == (len(s), 96, 80, 3)
        np.testing.assert_array_equal(got, w)


def _packet_kinds(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        packets = [p for p in c.demux(s) if p.size > 0]
        kinds = [D._h264_picture_kind(memoryview(p), D._h264_nal_format(s)) for p in packets]
        disp = D._pts_to_index(s, [p.pts for p in packets])[0]
    return kinds, disp


def test_selective_decode_skips_packets(clips):
    kinds, disp = _packet_kinds(clips["short_gop"])
    assert sorted(disp) == list(range(37))
    assert sum(idr for _, idr in kinds) >= 6            # 37 frames, GOP 6
    assert not all(ref for ref, _ in kinds)             # B-frames nothing references
    for k in (0, 13, 36):
        sent = D._packets_to_send(kinds, disp, {k})
        assert disp.index(k) in sent and len(sent) <= 6
        gop_start = max(p for p in range(disp.index(k) + 1) if kinds[p][1])
        assert all(gop_start <= p <= disp.index(k) for p in sent)
    kinds, disp = _packet_kinds(clips["long_gop"])       # one GOP: only unreferenced pictures skipped
    sent = D._packets_to_send(kinds, disp, {30})
    assert disp.index(30) in sent and len(sent) < max(disp.index(30) + 1, 31)
    assert all(kinds[p][0] or disp[p] == 30 for p in sent)


def test_decode_sampled(clips):
    path = clips["long_gop"]
    fr, idx, n = V.decode_sampled(path, 8, True, np.random.default_rng(3), threads=1)
    assert n == 37 == V.count_frames(path)
    np.testing.assert_array_equal(idx, V.tsn_sample_indices(37, 8, True, np.random.default_rng(3)))
    np.testing.assert_array_equal(fr, V.decode_frames(path, idx, sequential=True))
    assert V.video_frame_size(path) == (96, 80)


def _block_image(h, w, cx, cy, r=3):
    img = np.full((1, h, w, 3), 10, np.uint8)
    img[0, cy - r:cy + r, cx - r:cx + r] = 255
    return img, np.array([[[cx - 0.5, cy - 0.5, 1.0], [0, 0, 0]]], np.float32)


def _centroid(out):
    m = out.mean(0)
    ys, xs = torch.nonzero(m > 0.5 * m.max(), as_tuple=True)
    w = m[ys, xs]
    return float((xs * w).sum() / w.sum()), float((ys * w).sum() / w.sum())


@pytest.mark.parametrize("size", [(1296, 1080), (333, 250), (90, 120)])
def test_keypoints_follow_frames_uint8(size):
    h, w = size
    rng = np.random.default_rng(1)
    checked = 0
    r = max(3, min(h, w) // 40)
    for k in range(16):
        cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
        img, kp = _block_image(h, w, cx, cy, r)
        plan = V.make_crop_plan(h, w, k > 0, rng)
        k_out = V.apply_to_keypoints(kp, plan)[0]
        assert (k_out[1] == 0).all()
        if not (12 < k_out[0, 0] < 212 and 12 < k_out[0, 1] < 212):
            continue
        cxo, cyo = _centroid(V.apply_to_frames(img, plan, normalize=False)[0])
        assert abs(cxo - k_out[0, 0]) < 0.6 and abs(cyo - k_out[0, 1]) < 0.6, (plan, cxo, cyo, k_out[0])
        checked += 1
    assert checked >= 4


def test_keypoints_follow_prepared_frames():
    """Keypoints in original pixels, frames from a smaller twin (even-rounded size, as prepare_videos
    writes): the plan made for the original size and moved to the twin keeps them together."""
    h, w, hp, wp = 1296, 1080, 308, 256
    rng = np.random.default_rng(2)
    checked = 0
    for k in range(12):
        cx, cy = int(rng.integers(300, 780)), int(rng.integers(300, 1000))
        img, kp = _block_image(h, w, cx, cy, 16)
        small = F.interpolate(torch.from_numpy(img).permute(0, 3, 1, 2).float(), size=(hp, wp),
                              mode="bilinear", antialias=True, align_corners=False)
        small = small.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        plan = V.make_crop_plan(h, w, k > 0, rng).for_frames(hp, wp)
        with pytest.raises(ValueError, match="for_frames"):
            V.apply_to_frames(img, plan)
        k_out = V.apply_to_keypoints(kp, plan)[0]
        if not (12 < k_out[0, 0] < 212 and 12 < k_out[0, 1] < 212):
            continue
        cxo, cyo = _centroid(V.apply_to_frames(small, plan, normalize=False)[0])
        assert abs(cxo - k_out[0, 0]) < 0.6 and abs(cyo - k_out[0, 1]) < 0.6
        checked += 1
    assert checked >= 4


@pytest.fixture(scope="module")
def natural_frames():
    c = NaturalClip(648, 540, seed=5)
    return np.stack([c.frame(t) for t in (0, 7, 19)])


def _plans(h, w):
    rng = np.random.default_rng(4)
    return [V.make_crop_plan(h, w, False)] + [V.make_crop_plan(h, w, True, rng) for _ in range(8)]


def test_uint8_path_vs_float_same_geometry(natural_frames):
    """Same crop box, one antialiased resize, in float vs on uint8: interpolation rounding only."""
    fr = natural_frames
    for plan in _plans(*fr.shape[1:3]):
        x0, y0, cw, ch = plan.source_box()
        ref = torch.from_numpy(fr).permute(0, 3, 1, 2).float()[:, :, y0:y0 + ch, x0:x0 + cw]
        ref = F.interpolate(ref, size=(plan.out, plan.out), mode="bilinear", antialias=True,
                            align_corners=False).clamp(0, 255)
        got = V.apply_to_frames(fr, plan, normalize=False) * 255
        assert (got - ref).abs().max() <= 1.0 + 1e-3        # one uint8 step


def test_uint8_path_vs_previous_float_pipeline(natural_frames):
    """Against the previous two-resize float pipeline: the box rounded to whole source pixels moves the
    crop by < 0.5 source pixel (keypoint maps agree within 0.3 px over the crop), so values differ at
    sharp edges; on average by about one uint8 step."""
    fr = natural_frames
    h, w = fr.shape[1:3]
    for plan in _plans(h, w):
        a = apply_to_frames_float(fr, plan, normalize=False) * 255
        b = V.apply_to_frames(fr, plan, normalize=False) * 255
        assert (a - b).abs().mean() < 2.5, plan
        # the two maps, over the source span that the nominal map sends onto the 224 output pixels
        for i in (0, 2):
            a_nom, b_nom = nominal_affine(plan)[i:i + 2]
            a_new, b_new = plan.keypoint_affine()[i:i + 2]
            ends = (np.array([-0.5, 223.5]) - b_nom) / a_nom
            assert np.abs((a_new - a_nom) * ends + (b_new - b_nom)).max() < 0.3, plan


def test_normalisation_and_layout(natural_frames):
    plan = V.make_crop_plan(*natural_frames.shape[1:3], False)
    x = V.apply_to_frames(natural_frames, plan)
    assert x.shape == (3, 3, 224, 224) and x.dtype == torch.float32 and x.is_contiguous()
    raw = V.apply_to_frames(natural_frames, plan, normalize=False)
    mean = torch.tensor(V.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(V.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (raw - mean) / std)
    u8 = V.crop_resize_uint8(natural_frames, plan)
    assert u8.dtype == torch.uint8 and u8.shape == (3, 3, 224, 224)
    torch.testing.assert_close(raw, u8.float() / 255)


@pytest.mark.parametrize("codec, fmt", [("mpeg4", "mp4"), ("libx264", "h264"), ("libx264", "matroska")])
def test_other_containers_and_codecs(tmp_path, codec, fmt):
    """MPEG-4 part 2 (no NAL units) and a raw .h264 stream (no timestamps, no seeking) take the
    sequential path; H.264 in Matroska the selective one. Same frames and frame counts either way."""
    if codec not in av.codecs_available:
        pytest.skip(f"no {codec} encoder")
    clip = NaturalClip(64, 80, seed=3)
    p = tmp_path / f"clip.{ {'mp4': 'mp4', 'h264': 'h264', 'matroska': 'mkv'}[fmt] }"
    with av.open(str(p), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 80, 64, "yuv420p"
        for t in range(30):
            for pk in s.encode(av.VideoFrame.from_ndarray(clip.frame(t), format="rgb24")):
                out.mux(pk)
        for pk in s.encode():
            out.mux(pk)
    idx = [3, 29, 12, 40]
    np.testing.assert_array_equal(V.decode_frames(p, idx), V.decode_frames(p, idx, sequential=True))
    fr, got_idx, n = V.decode_sampled(p, 8, False)
    assert n == 30 == V.count_frames(p)
    np.testing.assert_array_equal(got_idx, V.tsn_sample_indices(30, 8, False))
