"""Multi-process training helpers (``torchrun`` + DistributedDataParallel).

``setup()`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) and initialises the default process group with ``init_method="env://"``: backend
``nccl`` when the process trains on CUDA, ``gloo`` on CPU. Without those variables (or with
``WORLD_SIZE=1``) it returns a single-process context and initialises nothing, so every helper below is
a no-op and the single-process code path is unchanged.

Collectives used by the training loop:
- ``all_reduce_sum(ctx, values)``: sums of Python floats over ranks (epoch loss, clip counts).
- ``gather_rows(ctx, t)``: concatenation over ranks, in rank order, of ``[n_r, ...]`` tensors whose
  ``n_r`` may differ (evaluation shards are not padded, so no clip is counted twice).
- ``all_gather_object`` / ``broadcast_object``: picklable objects (each rank's RNG state for resume).
``eval_shard(n, ctx)``: the val-set indices this rank evaluates (``rank, rank + W, ...``): every clip
exactly once; the gathered predictions are put back in index order, so metrics equal a single-process
evaluation's.
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node, the
    ``device`` it trains on, and whether ``setup`` created the process group (and ``cleanup`` must
    destroy it)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False
    #: weak references to the DDP wrappers ``wrap_model`` made, for ``cleanup``
    ddp_wrappers: list = field(default_factory=list, repr=False, compare=False)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"environment variable {name}: expected an integer (set by torchrun), got {v!r}") from None


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; ``"cpu"``; ``"cuda"`` (the local
    rank's GPU) or an explicit ``"cuda:N"``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} requested but CUDA is not available here; use --device cpu")
        if device == "cuda":
            return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        return torch.device(device)
    raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def setup(device: str = "auto") -> DistContext:
    """The process's ``DistContext``; initialises the process group from torchrun's environment when
    ``WORLD_SIZE > 1`` (or adopts one the caller already initialised)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK", rank)
        return DistContext(rank, world, local, resolve_device(device, local), owns_group=False)
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext(device=resolve_device(device, 0))
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise ValueError(f"WORLD_SIZE={world} but {missing} unset: launch with torchrun (it sets RANK, "
                         f"WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    kwargs = {"device_id": dev} if dev.type == "cuda" else {}
    try:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, **kwargs)
    except TypeError:   # torch without the device_id argument
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world)
    return DistContext(rank, world, local, dev, owns_group=True)


def cleanup(ctx: DistContext) -> None:
    """Release the DDP wrappers' process-group state, then destroy the group when ``setup`` created it.

    Each wrapper's Reducer (and the Logger holding it) is dropped first, while the group registry still
    references the process group. Left alive, a wrapper freed later (often at interpreter exit) drops the
    group's last reference from the Reducer's C++ destructor with the GIL held; ``~ProcessGroupGloo``
    then joins worker threads that need the GIL to free the last collective's tensors: a deadlock, seen in
    about one run in five on torch 2.11 (CPU, gloo). The wrappers are unusable afterwards, as is the group.
    """
    for ref in ctx.ddp_wrappers:
        ddp = ref()
        for name in ("logger", "reducer"):   # the state DDP itself drops when pickled
            if ddp is not None and name in ddp.__dict__:
                delattr(ddp, name)
    ctx.ddp_wrappers.clear()
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def _comm_device(ctx: DistContext) -> torch.device:
    # nccl moves CUDA tensors only; gloo moves CPU tensors.
    return ctx.device if ctx.device.type == "cuda" else torch.device("cpu")


def all_reduce_sum(ctx: DistContext, *values: float) -> list[float]:
    """Each value summed over ranks (float64), as Python floats."""
    if not ctx.distributed:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(t)
    return t.cpu().tolist()


def gather_rows(ctx: DistContext, t: torch.Tensor) -> torch.Tensor:
    """``[n_r, ...]`` on each rank -> ``[sum n_r, ...]`` on every rank (rank order), on the CPU.
    Ranks may hold different ``n_r`` (padded to the largest for the collective, trimmed after)."""
    t = t.detach()
    if not ctx.distributed:
        return t.cpu()
    dev = _comm_device(ctx)
    n = torch.tensor([t.shape[0]], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    top = max(sizes)
    padded = torch.zeros((top,) + tuple(t.shape[1:]), dtype=t.dtype, device=dev)
    padded[: t.shape[0]] = t.to(dev)
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).cpu()


def all_gather_object(ctx: DistContext, obj) -> list:
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj, src: int = 0):
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def eval_shard(n: int, ctx: DistContext) -> list[int]:
    """Indices of an ``n``-clip evaluation set that this rank evaluates: ``rank::world_size``."""
    return list(range(ctx.rank, n, ctx.world_size))


def wrap_model(model: torch.nn.Module, ctx: DistContext) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else the model itself. The model must
    already sit on ``ctx.device``; DDP broadcasts rank 0's parameters and buffers at construction."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    ddp = DDP(model, device_ids=ids)
    ctx.ddp_wrappers.append(weakref.ref(ddp))
    return ddp


def sync_buffers(model: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP broadcasts them at the
    start of each forward, but the last training forward updates each rank's own copy: without this,
    ranks would evaluate with slightly different statistics than the checkpoint rank 0 saves."""
    if not ctx.distributed:
        return
    for b in model.buffers():
        if b.device.type == "cuda" or ctx.device.type != "cuda":
            dist.broadcast(b.data, src=0)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") and isinstance(
        model, torch.nn.parallel.DistributedDataParallel) else model
