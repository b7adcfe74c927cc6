"""Every shipped GPU kernel compiles for sm_80 and sm_90 without a GPU, and none spills
(``python -m tools.kernel_resources``: Triton kernels through Triton's own compiler, the CUDA C++
kernels through nvcc, resources read with cuobjdump). Runs the tool in its own process: Triton fixes at
its first import whether kernels are interpreted (this test session) or compiled (the tool)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from tests._paths import REPO

ROOT = REPO

@pytest.fixture(scope="module")
def table(tmp_path_factory):
    from tools.kernel_resources import cuobjdump, nvcc
    pytest.importorskip("triton")
    if cuobjdump() is None or nvcc() is None:
        pytest.skip("needs nvcc (PATH, NVCC or CUDA_HOME) and cuobjdump (Triton's NVIDIA backend)")
    out = tmp_path_factory.mktemp("resources") / "table.json"
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    run = subprocess.run([sys.executable, "-m", "tools.kernel_resources", "--json", str(out)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode in (0, 1), run.stdout[-2000:] + run.stderr[-4000:]
    rows = json.loads(out.read_text())
    return rows, run.returncode


def _label(r):
    return f"{r['kernel']} {r['arch']} {r['dtype']} {r['config']}"


@pytest.mark.slow
def test_every_shipped_kernel_is_in_the_table(table):
    rows, _ = table
    seen = {(r["kernel"], r["arch"], r["dtype"]) for r in rows}
    for kernel in ("_ea_fwd", "_ea_bwd", "_rm_fwd", "_rm_bwd"):
        for arch in ("sm_80", "sm_90"):
            for dtype in ("fp32", "fp16", "bf16"):
                assert (kernel, arch, dtype) in seen, f"Triton {kernel} {arch} {dtype} missing"
    # Every launch configuration entity_attention.launch_config picks over the supported sizes.
    from mdn_fast._limits import MAX_DH, MAX_K, MAX_T
    from mdn_fast.kernels.triton import entity_attention as kea
    for dtype in ("fp32", "fp16", "bf16"):
        for kernel, which in (("_ea_fwd", "fwd"), ("_ea_bwd", "bwd")):
            want = set()
            for T in range(1, MAX_T + 1):
                for K in range(1, MAX_K + 1):
                    for Dh in (1, 16, 17, 32, 33, 48, 64, 65, MAX_DH):
                        for axes in ([0], [1], [0, 1]):
                            for vectorised in (Dh % 16 == 0, False):
                                c = kea.launch_config(T, K, Dh, axes, dtype == "fp32", vectorised)[which]
                                want.add((c["BLOCK_R"], c["BLOCK_D"], c["CHUNK_D"], int(c["WHOLE"]),
                                          c["num_warps"]))
            got = {tuple(int(x) for x in
                         re.search(r"BLOCK_R=(\d+) BLOCK_D=(\d+) CHUNK_D=(\d+) WHOLE=(\d) w(\d+)",
                                   r["config"]).groups())
                   for r in rows if r["kernel"] == kernel and r["dtype"] == dtype}
            assert want <= got, f"{kernel} {dtype}: configurations never compiled: {sorted(want - got)}"
    # Every __global__ kernel of csrc/cuda, for both CUDA archs.
    for src in sorted((ROOT / "csrc" / "cuda").glob("*.cu")):
        for name in re.findall(r"__global__\s+void\s+(\w+)", src.read_text()):
            for arch in ("sm_80", "sm_90a"):
                assert any(r["kernel"] == f"{src.stem}::{name}" and r["arch"] == arch for r in rows), \
                    f"{src.stem}::{name} {arch} missing"
    # tl.dot lowers to tensor-core MMA for 16-bit inputs.
    for r in rows:
        if r["kernel"].startswith("_ea_") and r["dtype"] in ("fp16", "bf16"):
            assert r["mma"], f"{_label(r)}: tl.dot should lower to MMA"


@pytest.mark.slow
def test_no_kernel_spills(table):
    rows, rc = table
    spills = [f"{_label(r)}: {r['spill']} B" for r in rows if r["spill"]]
    assert not spills, "spilling kernels:\n" + "\n".join(spills)
    assert rc == 0, "kernel_resources exits 0 when nothing spills"
    assert all(r["warps_per_sm"] > 0 for r in rows), "a kernel that cannot be resident at all"
