"""Every CUDA C++ kernel of ``mdn_fast._C``, forward and backward, once at a small size: the program
``compute-sanitizer`` runs (stage b of ``tools.gpu_check``).

``python -m tools.cuda_sanitize`` calls ``entity_attention`` (both axis orders, a mask with an empty
group, odd sizes, q/k/v as strided views of a fused QKV) and ``routed_merge`` (with a mask) on
``backend="cpp"`` in fp32, fp16 and bf16, and takes gradients of every input, so each ``__global__``
kernel of ``csrc/cuda`` launches at least once per dtype. It checks the outputs against the reference
too (a sanitizer run that computes garbage silently would prove little). Exit status: 0 ok, 1 wrong
result, 2 nothing to check here (no CUDA device, or ``_C`` built without CUDA).

Run it under the sanitizer with ``PYTORCH_NO_CUDA_MEMORY_CACHING=1``, so every tensor is its own
allocation and an out-of-bounds access cannot land silently inside the caching allocator's pool.
"""
from __future__ import annotations

import sys

import torch

import mdn_fast
from mdn_fast.ops import cpp_backend, entity_attention, routed_merge

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TOL = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def _check(name: str, got, want, dtype, failures: list) -> None:
    for i, (g, w) in enumerate(zip(got, want)):
        err = _rel(g, w)
        if not err <= TOL[dtype]:        # also catches NaN
            failures.append(f"{name} output {i}: relative error {err:.2e} > {TOL[dtype]:.0e}")


def run_entity_attention(dtype, axes, failures: list) -> None:
    B, T, K, H, Dh = 3, 7, 5, 2, 24
    P = len(axes)
    g = torch.Generator(device="cuda").manual_seed(0)
    qkv = torch.randn(B, T, K, 3, P, H, Dh, device="cuda", dtype=dtype, generator=g).requires_grad_(True)
    q, k, v = (x.permute(3, 0, 1, 2, 4, 5) for x in qkv.unbind(3))     # strided [P, B, T, K, H, Dh]
    mask = torch.rand(B, T, K, device="cuda", generator=g) < 0.8
    mask[0, 2, :] = False                  # a frame with no present entity: an empty spatial group
    mask[1, :, 3] = False                  # an entity absent in every frame: an empty temporal group
    outs = []
    for backend in ("cpp", "reference"):
        o = entity_attention(q, k, v, axes, mask=mask, backend=backend)
        do = torch.randn(o.shape, device="cuda", dtype=dtype, generator=torch.Generator(device="cuda").manual_seed(1))
        (dqkv,) = torch.autograd.grad(o, qkv, do)
        outs.append((o, dqkv))
    _check(f"entity_attention {dtype} {axes}", outs[0], outs[1], dtype, failures)


def run_routed_merge(dtype, failures: list) -> None:
    B, T, K, D = 3, 7, 5, 40
    g = torch.Generator(device="cuda").manual_seed(2)
    xs = torch.randn(B, T, K, D, device="cuda", dtype=dtype, generator=g).requires_grad_(True)
    xt = torch.randn(B, T, K, D, device="cuda", dtype=dtype, generator=g).requires_grad_(True)
    w = (0.05 * torch.randn(K, 2, 2 * D, device="cuda", dtype=dtype, generator=g)).requires_grad_(True)
    b = (0.05 * torch.randn(K, 2, device="cuda", dtype=dtype, generator=g)).requires_grad_(True)
    mask = torch.rand(B, T, K, device="cuda", generator=g) < 0.8
    mask[1, :, 2] = False
    outs = []
    for backend in ("cpp", "reference"):
        y, alpha = routed_merge(xs, xt, w, b, tau=1.0, mask=mask, backend=backend)
        gy = torch.randn(y.shape, device="cuda", dtype=dtype, generator=torch.Generator(device="cuda").manual_seed(3))
        ga = torch.randn(alpha.shape, device="cuda", dtype=alpha.dtype,
                         generator=torch.Generator(device="cuda").manual_seed(4))
        grads = torch.autograd.grad((y, alpha), (xs, xt, w, b), (gy, ga))
        outs.append((y, alpha, *grads))
    _check(f"routed_merge {dtype}", outs[0], outs[1], dtype, failures)


def main() -> int:
    if not torch.cuda.is_available():
        print("cuda_sanitize: no CUDA device here; nothing to check")
        return 2
    why = mdn_fast.available_backends().get("cpp")
    if why:
        print(f"cuda_sanitize: backend 'cpp' unavailable: {why}")
        return 2
    if (cpp_backend.build_info() or {}).get("cuda") != "1":
        print("cuda_sanitize: mdn_fast._C was built without CUDA kernels (rebuild with MDN_FAST_CUDA=1)")
        return 2
    failures: list[str] = []
    for dtype in DTYPES:
        for axes in (("spatial", "temporal"), ("temporal", "spatial")):
            run_entity_attention(dtype, axes, failures)
        run_routed_merge(dtype, failures)
    torch.cuda.synchronize()
    for f in failures:
        print("WRONG:", f)
    print(f"cuda_sanitize: {'ok' if not failures else f'{len(failures)} wrong results'} "
          f"(entity_attention x2 axis orders, routed_merge; fp32/fp16/bf16; forward and backward)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
