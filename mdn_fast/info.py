"""``python -m mdn_fast.info``: what this install can run and why not.

Prints the versions of Python, torch, triton and CUDA (torch's and nvcc's), each backend of
``mdn_fast.available_backends()`` with the reason it is unavailable, what each backend's kernels take
(``mdn_fast.ops.CAPABILITIES``: devices, dtypes, size limits), the order ``backend="auto"`` tries
per device type, op and dtype with where it comes from (a measurement in ``mdn_fast/ops/_auto_table.py``
or the assumed default), and what ``mdn_fast._C`` was built with (CUDA or not, its architectures).
Importing this module touches no GPU; ``main()`` asks ``torch.cuda.is_available()`` only to report it.
"""
from __future__ import annotations

import platform
import shutil
import subprocess
import sys


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception as e:  # report, never fail
        return f"not importable ({type(e).__name__}: {e})"
    return getattr(mod, "__version__", "unknown")


def _nvcc_version() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "not found"
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception as e:
        return f"{nvcc}: failed ({type(e).__name__}: {e})"
    release = [line for line in out.splitlines() if "release" in line]
    return f"{release[-1].strip() if release else out.strip()} ({nvcc})"


def collect() -> dict:
    """Everything ``main`` prints, as a dict (for tests and bug reports)."""
    import torch

    import mdn_fast
    from mdn_fast.ops import _capabilities, auto_sources, cpp_backend

    info = {
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "mdn_fast": mdn_fast.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda or "none (CPU build of torch)",
        "triton": _version("triton"),
        "nvcc": _nvcc_version(),
        "backends": mdn_fast.available_backends(),
        "capabilities": _capabilities.describe(),
        "auto_order": auto_sources(),
        "cpp_build": cpp_backend.build_info(),
    }
    try:
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(n)]
    except Exception as e:
        info["cuda_devices"] = f"query failed ({type(e).__name__}: {e})"
    return info


def main() -> int:
    info = collect()
    print("mdn_fast environment")
    for key in ("mdn_fast", "python", "platform", "torch", "torch_cuda", "triton", "nvcc"):
        print(f"  {key:<12} {info[key]}")
    devices = info["cuda_devices"]
    print(f"  {'gpus':<12} {', '.join(devices) if isinstance(devices, list) and devices else devices or 'none'}")
    print("backends")
    for name, why in info["backends"].items():
        print(f"  {name:<12} {'available' if why is None else 'unavailable: ' + why}")
    print("what each backend's kernels take (backend, op: devices; dtypes; size limits; why)")
    for backend, op, devices, dtypes, limits, why in info["capabilities"]:
        print(f"  {backend:<9} {op:<17} {devices}; {dtypes}; limits: {limits}; {why}")
    print('backend="auto" tries (device, op, dtype: order, where it comes from)')
    for dev, op, dtype, order, source in info["auto_order"]:
        print(f"  {dev:<5} {op:<17} {dtype:<9} {', '.join(order):<24} {source}")
    build = info["cpp_build"]
    if build:
        cuda = (f"yes (mdn_fast._C_cuda), archs {build.get('cuda_archs') or '?'}" if build.get("cuda") == "1"
                else f"no: {build.get('cuda_reason', 'CPU kernels only')}")
        print("mdn_fast._C")
        print(f"  {'abi':<12} {'PyTorch stable ABI (one build for torch >= 2.11), Python limited API' if build.get('abi') == 'stable' else build.get('abi', '?')}")
        print(f"  {'cuda':<12} {cuda}")
        import torch
        print(f"  {'threads':<12} CPU kernels on torch's intra-op pool ({torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
