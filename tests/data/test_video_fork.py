"""Decoding stays usable after a fork (mdn_fast.data.video_reformat).

With PyAV 18 a DataLoader worker hung forever in its first frame conversion when the main process had
converted a frame before the loader forked (PyAV's per-thread SwsContext crosses the fork without its
slice threads). The fork cases run in a child interpreter with a time limit, so a regression fails here
instead of hanging the suite."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mdn_fast.data import video_reformat as R
from mdn_fast.data.video_decode import decode_frames
from mdn_fast.data.video_fixtures import write_video

av = pytest.importorskip("av")
if "libx264" not in av.codecs_available:
    pytest.skip("PyAV without libx264", allow_module_level=True)

LIMIT_S = 90    # the child takes ~3 s; a hung worker never ends

_CHILD = textwrap.dedent("""
    import sys, numpy as np, torch, av
    from mdn_fast.data.video_decode import decode_frames
    path, parent = sys.argv[1], sys.argv[2]
    if parent == "pyav":        # the user's own PyAV code, with PyAV's shared reformatter
        with av.open(path) as c:
            next(c.decode(video=0)).to_ndarray(format="rgb24")
    want = decode_frames(path, [0, 5])          # mdn_fast in the main process, before the fork

    class Clips(torch.utils.data.Dataset):
        def __len__(self):
            return 3
        def __getitem__(self, i):
            return torch.from_numpy(decode_frames(path, [0, 5]))

    dl = torch.utils.data.DataLoader(Clips(), batch_size=1, num_workers=2, multiprocessing_context="fork")
    n = 0
    for b in dl:
        assert np.array_equal(b[0].numpy(), want), "a worker decoded different frames"
        n += 1
    print("clips", n)
""")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("fork") / "a.mp4", 12, 96, 80, seed=3)


@pytest.mark.skipif(sys.platform != "linux", reason="fork DataLoader workers: Linux")
@pytest.mark.parametrize("parent", ["mdn_fast", "pyav"])
def test_dataloader_workers_decode_after_the_main_process_did(clip, parent):
    # its own session, so a hung run is killed with its workers (they would outlive the child otherwise)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(clip), parent], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail(f"a fork DataLoader worker decoding after the main process ({parent}) did not finish in "
                    f"{LIMIT_S} s (PyAV {av.__version__}): the fork-inherited SwsContext hang is back")
    assert child.returncode == 0, err[-3000:]
    assert "clips 3" in out


def test_frame_to_rgb24_is_pyavs_conversion(clip):
    with av.open(str(clip)) as c:
        frames = [f for _, f in zip(range(4), c.decode(video=0))]
    for f in frames:
        want = f.reformat(format="rgb24").to_ndarray()
        got = R.frame_to_rgb24(f)
        assert got.dtype == np.uint8 and got.shape == (96, 80, 3)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(decode_frames(clip, [0, 3])[1], R.frame_to_rgb24(frames[3]))


def test_a_new_reformatter_per_process_and_the_inherited_one_kept(monkeypatch):
    monkeypatch.setattr(R, "_local", type(R._local)())
    monkeypatch.setattr(R, "_inherited", [])
    first = R._reformatter()
    assert R._reformatter() is first                   # one per thread and process
    pid = os.getpid()
    monkeypatch.setattr(R.os, "getpid", lambda: pid + 1)  # as seen in a forked child
    child = R._reformatter()
    assert child is not first and R._inherited == [first]


def test_pyav_without_a_threads_argument(monkeypatch, clip):
    calls = []

    class OldReformatter:                              # PyAV 14's signature: no ``threads``
        def reformat(self, frame, width=None, height=None, format=None, interpolation=None):
            """VideoReformatter.reformat(VideoFrame frame, width=None, height=None, format=None, src_colorspace=None, dst_colorspace=None, interpolation=None, src_color_range=None, dst_color_range=None)
            Create a new :class:`VideoFrame` with the given width/height/format/colorspace."""
            calls.append(format)
            return frame.reformat(width=width, height=height, format=format, interpolation=interpolation)

    monkeypatch.setattr(R, "_reformatter", lambda: OldReformatter())
    with av.open(str(clip)) as c:
        f = next(c.decode(video=0))
    assert R.frame_to_rgb24(f, threads=1).shape == (96, 80, 3)
    assert R._takes_threads(OldReformatter) is False and calls == ["rgb24"]
    R.frame_to_rgb24(f, threads=1)                     # known now: one call, no retry
    assert calls == ["rgb24", "rgb24"]


def test_this_pyav_takes_threads_when_its_signature_says_so():
    from av.video.reformatter import VideoReformatter
    doc = (VideoReformatter.reformat.__doc__ or "").split("\n", 1)[0]
    assert doc.startswith("VideoReformatter.reformat("), f"PyAV {av.__version__} changed its docstring: {doc!r}"
    major = int(av.__version__.split(".")[0])
    assert R._takes_threads(VideoReformatter) is (major >= 17)     # 17.0.0 and 18.x have it; 14.0 to 16.1 not
