"""Benchmark of the RGB input pipeline (issue 12): clips/s per core and through a DataLoader, today's
pipeline as the baseline in the same run; plus pose-model inference on CPU in bf16 vs fp32.

Fixtures: generated H.264 clips with the MA-52 clips' properties (1080x1296 portrait, 30 fps, 50-75
frames, libx264 with its default keyframe interval; natural-image-like content, see
``mdn_fast.data.video_fixtures``), and their prepared twins (``prepare_videos``, short side 256, GOP 8),
made once per run in a temporary directory.

Pipelines, per clip, TSN training sampling (8 segments) and a multi-scale training crop; in a round every
pipeline sees the same indices and crops (same seeds):
- ``today_original``: ``count_frames`` + sequential ``decode_frames`` (every frame up to the last sampled
  one, the previous loop) + ``make_crop_plan`` + ``apply_to_frames_float`` (whole frames to float, resize
  to 256, crop, resize to 224) — the previous pipeline (``benchmarks/_previous_pipeline.py``);
- ``new_original``: ``decode_sampled`` (one open; only what the sampled frames need reaches the decoder)
  + ``apply_to_frames`` (crop in source pixels, one uint8 resize, one float conversion);
- ``new_prepared``: the same on the prepared twin, the plan made for the original size
  (``PreparedVideos.plan_for``).

Timing: torch and the decoder on one thread; round-robin rounds over the pipelines, the first pipeline
rotating per round; per clip both process CPU time (``time.process_time``: the per-core cost, robust to
other processes on the machine) and wall time. Reported: median over rounds of the mean per clip; clips/s
per core = 1 / CPU seconds per clip. The transform alone is timed the same way on 8 decoded 1080x1296
frames. DataLoader: ``batch_size`` 8, 1, 2 and all cores' workers, wall clips/s over the epoch after the
first batch (worker start-up excluded, reported separately). Pose model: ``MicroDualNet`` pose-only,
``coco18_hands28`` (28 joints, K=6), B=256, T=8, ``model.eval()`` + ``inference_mode``, fp32 vs
``torch.autocast("cpu", torch.bfloat16)`` vs the model cast to bf16 (``model.bfloat16()``, keypoints
given in fp32), interleaved.

Results: ``benchmarks/results/input_pipeline-<date>.{json,md}`` (quick mode: a temporary directory),
with the machine's load average at start and end. Targets (issue 12): transform <= 15 ms per clip on one
core; prepared >= 10x today's clips/s per core. They are reported, not asserted (a loaded machine is not
a failure of the code).
"""
from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mdn_fast.data import video as V
from mdn_fast.data.prepare_videos import PreparedVideos, prepare_videos
from mdn_fast.data.video_fixtures import MA52_FPS, MA52_SIZE, write_video

from . import _harness as H
from ._previous_pipeline import apply_to_frames_float

SEGMENTS = 8
RESULT: dict = {"load_avg_start": os.getloadavg() if hasattr(os, "getloadavg") else None}
_HERE = Path(__file__).resolve().parent


def _sizes():
    if H.quick():
        return dict(hw=(96, 80), frames=(20, 24), rounds=1, loader_clips=8, pose_B=8, pose_rounds=1)
    return dict(hw=MA52_SIZE, frames=(50, 75, 60, 66), rounds=5, loader_clips=24, pose_B=256, pose_rounds=7)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    av = pytest.importorskip("av")
    if "libx264" not in av.codecs_available:
        pytest.skip("PyAV without libx264: cannot generate H.264 fixtures")
    sz = _sizes()
    root = tmp_path_factory.mktemp("input_pipeline")
    src, dst = root / "raw_videos", root / "prepared"
    t0 = time.perf_counter()
    names = []
    for i, n in enumerate(sz["frames"]):
        name = f"clip{i:02d}_{n}f.mp4"
        write_video(src / name, n, *sz["hw"], fps=MA52_FPS, seed=10 + i)
        names.append(name)
    t1 = time.perf_counter()
    rep = prepare_videos(src, dst, short_side=256 if not H.quick() else 32, progress=False)
    assert not rep.failed, rep.failed
    RESULT["fixtures"] = {
        "clips": [{"name": n, "frames": f, "bytes": (src / n).stat().st_size,
                   "prepared_bytes": (dst / n).stat().st_size} for n, f in zip(names, sz["frames"])],
        "size_hw": list(sz["hw"]), "fps": MA52_FPS, "encoder": "libx264 veryfast crf 23, default GOP",
        "generate_s": t1 - t0,
        "prepare": {"seconds": rep.seconds, "workers": os.cpu_count(), "videos": rep.encoded},
    }
    return src, dst, names, PreparedVideos.find(dst)


# ------------------------------------------------------------------------------------------- pipelines
def _today(path, seed):
    rng = np.random.default_rng(seed)
    t0 = time.process_time()
    n = V.count_frames(path)
    t1 = time.process_time()
    idx = V.tsn_sample_indices(n, SEGMENTS, True, rng)
    fr = V.decode_frames(path, idx, threads=1, sequential=True)
    t2 = time.process_time()
    plan = V.make_crop_plan(*fr.shape[1:3], True, rng)
    x = apply_to_frames_float(fr, plan)
    t3 = time.process_time()
    return x, {"count": t1 - t0, "decode": t2 - t1, "transform": t3 - t2}


def _new(path, seed, prepared=None, name=None):
    rng = np.random.default_rng(seed)
    t0 = time.process_time()
    fr, idx, n = V.decode_sampled(path, SEGMENTS, True, rng, threads=1)
    t1 = time.process_time()
    if prepared is None:
        plan = V.make_crop_plan(*fr.shape[1:3], True, rng)
    else:
        plan = prepared.plan_for(name, fr, lambda h, w: V.make_crop_plan(h, w, True, rng))
    x = V.apply_to_frames(fr, plan)
    t2 = time.process_time()
    return x, {"count": 0.0, "decode": t1 - t0, "transform": t2 - t1}


def _pipelines(clips):
    src, dst, names, pv = clips
    return {
        "today_original": lambda name, seed: _today(src / name, seed),
        "new_original": lambda name, seed: _new(src / name, seed),
        "new_prepared": lambda name, seed: _new(dst / name, seed, pv, name),
    }


def _interleaved(cases: dict, rounds: int, run_round) -> dict:
    """``run_round(case_fn) -> (cpu_s per item, wall_s per item, extra)``; round-robin over the cases,
    first case rotating; median over rounds."""
    names = list(cases)
    samples = {k: {"cpu": [], "wall": [], "extra": []} for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            gc.collect()
            cpu, wall, extra = run_round(cases[k])
            samples[k]["cpu"].append(cpu)
            samples[k]["wall"].append(wall)
            samples[k]["extra"].append(extra)
    return samples


# ------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def test_transform_per_clip(clips):
    src, _, names, _ = clips
    fr = V.decode_frames(src / names[-1], V.tsn_sample_indices(V.count_frames(src / names[-1]), SEGMENTS, False),
                         threads=1)
    h, w = fr.shape[1:3]
    rng = np.random.default_rng(0)
    plans = [V.make_crop_plan(h, w, False)] + [V.make_crop_plan(h, w, True, rng) for _ in range(7)]
    cases = {"today_float": apply_to_frames_float, "new_uint8": V.apply_to_frames}
    for f in cases.values():                                # warm-up
        f(fr, plans[0])

    def run(f):
        t0, c0 = time.perf_counter(), time.process_time()
        for p in plans:
            f(fr, p)
        return (time.process_time() - c0) / len(plans), (time.perf_counter() - t0) / len(plans), None
    s = _interleaved(cases, _sizes()["rounds"] + 2, run)
    # output bounds measured on these frames: vs the previous float pipeline
    diffs = []
    for p in plans:
        a = apply_to_frames_float(fr, p, normalize=False)
        b = V.apply_to_frames(fr, p, normalize=False)
        diffs.append(((a - b).abs() * 255).flatten())
    d = torch.cat(diffs)
    RESULT["transform"] = {
        "frames": [SEGMENTS, h, w], "plans": "1 eval + 7 train crops",
        "ms_per_clip_cpu": {k: 1e3 * statistics.median(v["cpu"]) for k, v in s.items()},
        "ms_per_clip_wall": {k: 1e3 * statistics.median(v["wall"]) for k, v in s.items()},
        "samples_cpu_s": {k: v["cpu"] for k, v in s.items()},
        "vs_previous_float_uint8_steps": {"max": float(d.max()), "mean": float(d.mean()),
                                          "p99": float(torch.quantile(d[::7].float(), 0.99))},
    }
    RESULT["transform"]["target_15ms_met"] = RESULT["transform"]["ms_per_clip_cpu"]["new_uint8"] <= 15.0


def test_clips_per_core(clips):
    src, dst, names, pv = clips
    cases = _pipelines(clips)
    for f in cases.values():                                # warm-up (imports, first open)
        f(names[0], 0)
    rnd = [0]

    def run(f):
        rnd[0] += 1
        stages = {"count": 0.0, "decode": 0.0, "transform": 0.0}
        t0, c0 = time.perf_counter(), time.process_time()
        for i, name in enumerate(names):
            _, st = f(name, 1000 * (rnd[0] // len(cases)) + i)  # the same seeds for every case of a round
            for k in stages:
                stages[k] += st[k]
        n = len(names)
        return (time.process_time() - c0) / n, (time.perf_counter() - t0) / n, {k: v / n for k, v in stages.items()}
    s = _interleaved(cases, _sizes()["rounds"], run)
    out = {}
    for k, v in s.items():
        cpu, wall = statistics.median(v["cpu"]), statistics.median(v["wall"])
        out[k] = {"ms_per_clip_cpu": 1e3 * cpu, "ms_per_clip_wall": 1e3 * wall,
                  "clips_per_s_per_core": 1.0 / cpu, "clips_per_s_wall": 1.0 / wall,
                  "stages_ms_cpu": {st: 1e3 * statistics.median(e[st] for e in v["extra"])
                                    for st in ("count", "decode", "transform")},
                  "samples_cpu_s": v["cpu"]}
    base = out["today_original"]["clips_per_s_per_core"]
    for k in out:
        out[k]["x_today"] = out[k]["clips_per_s_per_core"] / base
    RESULT["per_core"] = out
    RESULT["per_core_target_10x_met"] = out["new_prepared"]["x_today"] >= 10.0


class _ClipDataset(torch.utils.data.Dataset):
    """What a training dataset does per item, for one pipeline (no labels, no pose)."""

    def __init__(self, kind, src, dst, names, n):
        self.kind, self.src, self.dst, self.names, self.n = kind, src, dst, names, n
        self.pv = PreparedVideos.find(dst) if kind == "new_prepared" else None

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        name = self.names[i % len(self.names)]
        torch.set_num_threads(1)
        if self.kind == "today_original":
            return _today(self.src / name, i)[0]
        if self.kind == "new_original":
            return _new(self.src / name, i)[0]
        return _new(self.dst / name, i, self.pv, name)[0]


def _loader_clips_per_s(ds, workers: int) -> tuple[float, float]:
    """(clips/s after the first batch, seconds to the first batch)."""
    dl = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=workers, shuffle=False,
                                     prefetch_factor=4, persistent_workers=False)
    t0 = time.perf_counter()
    it = iter(dl)
    first = next(it)
    t1 = time.perf_counter()
    k = 0
    for b in it:
        k += b.shape[0]
    t2 = time.perf_counter()
    del it
    return (k / (t2 - t1) if k else first.shape[0] / (t1 - t0)), t1 - t0


def test_dataloader_clips_per_s(clips):
    src, dst, names, _ = clips
    n_all = os.cpu_count() or 1
    workers = sorted({1, 2, n_all})
    n = _sizes()["loader_clips"]
    # the originals are ~15x slower per clip: fewer clips keep the run short, the rate is per clip
    counts = {"today_original": max(16, n // 3) if not H.quick() else n, "new_original": n, "new_prepared": 4 * n}
    out = {}
    for w in workers:
        for kind, cnt in counts.items():
            rate, start = _loader_clips_per_s(_ClipDataset(kind, src, dst, names, cnt + 8), w)
            out[f"{kind}-w{w}"] = {"workers": w, "pipeline": kind, "clips": cnt, "clips_per_s": rate,
                                   "first_batch_s": start}
    RESULT["dataloader"] = {"batch_size": 8, "prefetch_factor": 4, "cpu_count": n_all, "runs": out}


def test_pose_inference_bf16_vs_fp32():
    from mdn_fast.nn.micro_dualnet import MicroDualNet
    sz = _sizes()
    B, T = sz["pose_B"], SEGMENTS
    torch.set_num_threads(os.cpu_count() or 1)              # inference uses the machine, as eval does
    try:
        def make():
            torch.manual_seed(0)                            # the same weights for every case
            return MicroDualNet(num_classes=52, num_body_classes=7, modality="pose", layout="coco18_hands28",
                                num_frames=T).eval()
        model, model_bf16 = make(), make().bfloat16()
        J = model.layout.num_joints
        g = torch.Generator().manual_seed(1)
        xy = (0.15 + 0.7 * torch.rand(B, T, J, 2, generator=g)) * 224
        conf = 0.3 + 0.7 * torch.rand(B, T, J, 1, generator=g)
        conf[torch.rand(B, T, J, 1, generator=g) < 0.1] = 0.05
        kp = torch.cat([xy, conf], -1)

        def fp32():
            with torch.inference_mode():
                return model(keypoints=kp).logits

        def bf16():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return model(keypoints=kp).logits
        def bf16_weights():
            with torch.inference_mode():
                return model_bf16(keypoints=kp).logits
        a, b, c = fp32(), bf16(), bf16_weights()            # warm-up + agreement
        agree = float((a.argmax(-1) == b.float().argmax(-1)).float().mean())
        agree_w = float((a.argmax(-1) == c.float().argmax(-1)).float().mean())
        cases = {"fp32": fp32, "bf16_autocast": bf16, "bf16_weights": bf16_weights}

        def run(f):
            t0 = time.perf_counter()
            f()
            return None, time.perf_counter() - t0, None
        s = _interleaved(cases, sz["pose_rounds"], run)
        med = {k: statistics.median(v["wall"]) for k, v in s.items()}
        RESULT["pose_inference"] = {
            "B": B, "T": T, "layout": "coco18_hands28", "threads": torch.get_num_threads(),
            "backend": getattr(model, "backend", "auto"),
            "ms_per_batch": {k: 1e3 * v for k, v in med.items()},
            "clips_per_s": {k: B / v for k, v in med.items()},
            "bf16_speedup": med["fp32"] / med["bf16_autocast"], "top1_agreement_bf16_vs_fp32": agree,
            "bf16_weights_speedup": med["fp32"] / med["bf16_weights"], "top1_agreement_bf16_weights": agree_w,
            "samples_s": {k: v["wall"] for k, v in s.items()},
            "cpu_bf16": _cpu_has("avx512_bf16"), "cpu_amx": _cpu_has("amx_bf16"),
        }
    finally:
        torch.set_num_threads(1)


def _cpu_has(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# ------------------------------------------------------------------------------------------- report
def _markdown(r: dict) -> str:
    L = [f"## Input pipeline ({r['environment']['cpu_model']}, {r['environment']['date']}, commit "
         f"{str(r['environment'].get('git_commit'))[:10]}; load average {r.get('load_avg_start')} -> "
         f"{r.get('load_avg_end')}, {os.cpu_count()} cores, PyAV {r['environment'].get('pyav')}, "
         f"libavcodec {r['environment'].get('ffmpeg')})", ""]
    if "fixtures" in r:
        f = r["fixtures"]
        L.append(f"Fixtures: {len(f['clips'])} generated H.264 clips {f['size_hw'][1]}x{f['size_hw'][0]} "
                 f"(w x h), {f['fps']} fps, {', '.join(str(c['frames']) for c in f['clips'])} frames; "
                 f"prepared (short side 256, GOP 8) in {f['prepare']['seconds']:.1f} s.")
        L.append("")
    if "transform" in r:
        t = r["transform"]
        L += [f"| transform, {t['frames'][0]} frames {t['frames'][2]}x{t['frames'][1]} | ms/clip (CPU) | ms/clip (wall) |", "|---|---|---|"]
        for k in t["ms_per_clip_cpu"]:
            L.append(f"| {k} | {t['ms_per_clip_cpu'][k]:.1f} | {t['ms_per_clip_wall'][k]:.1f} |")
        d = t["vs_previous_float_uint8_steps"]
        L += ["", f"new vs previous float output (uint8 steps): mean {d['mean']:.2f}, p99 {d['p99']:.1f}, "
                  f"max {d['max']:.1f}; target <= 15 ms met: {t['target_15ms_met']}", ""]
    if "per_core" in r:
        L += ["| pipeline (per clip) | count ms | decode ms | transform ms | clips/s per core | x today | "
              "clips/s wall |", "|---|---|---|---|---|---|---|"]
        for k, v in r["per_core"].items():
            st = v["stages_ms_cpu"]
            L.append(f"| {k} | {st['count']:.1f} | {st['decode']:.1f} | {st['transform']:.1f} | "
                     f"{v['clips_per_s_per_core']:.2f} | {v['x_today']:.1f} | {v['clips_per_s_wall']:.2f} |")
        L += ["", f"target >= 10x today per core (prepared): met: {r['per_core_target_10x_met']}", ""]
    if "dataloader" in r:
        L += ["| DataLoader (batch 8, prefetch 4) | workers | clips/s | first batch s |", "|---|---|---|---|"]
        for v in r["dataloader"]["runs"].values():
            L.append(f"| {v['pipeline']} | {v['workers']} | {v['clips_per_s']:.1f} | {v['first_batch_s']:.1f} |")
        L.append("")
    if "pose_inference" in r:
        p = r["pose_inference"]
        L += [f"Pose MicroDualNet inference, B={p['B']} T={p['T']}, {p['threads']} threads: "
              + ", ".join(f"{k} {v:.0f} clips/s" for k, v in p["clips_per_s"].items())
              + f"; bf16 autocast speed-up {p['bf16_speedup']:.2f}x (top-1 agreement "
              f"{p['top1_agreement_bf16_vs_fp32']:.3f}), bf16 weights {p['bf16_weights_speedup']:.2f}x (agreement "
              f"{p['top1_agreement_bf16_weights']:.3f})"
              f"; avx512_bf16 {p['cpu_bf16']}, amx {p['cpu_amx']}", ""]
    return "\n".join(L)


@pytest.fixture(scope="module", autouse=True)
def _write_report():
    yield
    if len(RESULT) <= 1:
        return
    from . import _report
    RESULT["load_avg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    RESULT["environment"] = _report.environment(["cpu"])
    import av                                       # the decoder's version moves these figures (and its bugs)
    RESULT["environment"]["pyav"] = av.__version__
    RESULT["environment"]["ffmpeg"] = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    RESULT["quick"] = H.quick()
    d = Path(tempfile.gettempdir()) / "mdn_fast_bench_quick" if H.quick() else Path(
        os.environ.get("MDN_FAST_BENCH_RESULTS", _HERE / "results"))
    d.mkdir(parents=True, exist_ok=True)
    base = d / f"input_pipeline-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    base.with_suffix(".json").write_text(json.dumps(RESULT, indent=1, default=str))
    text = _markdown(RESULT)
    base.with_suffix(".md").write_text(text)
    print("\n" + text + f"\nwritten: {base}.json, {base}.md")
