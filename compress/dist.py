"""Data-parallel runs on PyTorch's own distributed engine, launched by torchrun.

``torchrun --nproc-per-node N -m compress run RECIPE`` (or ``lert-compress run RECIPE --nproc N``,
which calls torchrun) starts N processes; each calls ``init()``, which joins the process group
(NCCL on CUDA, gloo on CPU, or the ``--backend`` given). Training stages then shard every
epoch's batches across the ranks and average gradients with ``DistributedDataParallel``; rank 0
alone writes step outputs, the manifest, logs and the report, and holds the artifacts lock. In
one process every helper here is a no-op.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from datetime import timedelta

import torch
import torch.distributed as tdist

from compress.errors import CompressError


def active() -> bool:
    """Whether this process is one of a torchrun process group (even a group of one)."""
    return tdist.is_available() and tdist.is_initialized()


def world_size() -> int:
    return tdist.get_world_size() if active() else 1


def rank() -> int:
    return tdist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def backend() -> str | None:
    return tdist.get_backend() if active() else None


def nodes() -> int:
    """Machines in the process group: the agents torchrun's rendezvous joined (its
    GROUP_WORLD_SIZE), 1 outside a group."""
    return int(os.environ.get("GROUP_WORLD_SIZE", "1")) if active() else 1


def check_shared(folder) -> None:
    """Refuse a multi-node run whose ``folder`` is not one folder for every node: rank 0 alone
    writes step outputs, and the other nodes read them as the next step's input."""
    import secrets
    from pathlib import Path

    if nodes() == 1:
        return
    mark = Path(folder) / f".nodes-{broadcast(secrets.token_hex(8) if is_main() else None)}"
    if is_main():
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text("rank 0 writes here\n", encoding="utf-8")
    barrier()
    seen = gather((os.environ.get("GROUP_RANK", "?"), mark.is_file()))
    barrier()
    if is_main():
        mark.unlink()
    blind = sorted({node for node, ok in seen if not ok})
    if blind:
        raise CompressError(
            f"--out {folder}: node(s) {', '.join(blind)} cannot see what node 0 writes there; "
            "every node of a multi-node run needs the same --out (a shared folder: NFS, a "
            "cluster file system), since the first process writes each step's model and the "
            "others read it"
        )


# Rank 0 alone runs export and quantize steps (NNCF, static ONNX Runtime and bitsandbytes can
# take many minutes on LERT-large) while the other ranks wait at a barrier: NCCL's default
# 10-minute timeout (gloo's 30) would kill them, so the group waits this long instead.
DEFAULT_TIMEOUT_MIN = 240


def chosen_backend(requested: str | None = None) -> str:
    """``nccl`` or ``gloo``: the requested one, else NCCL where CUDA is, gloo elsewhere."""
    requested = requested or "auto"
    if requested not in ("auto", "nccl", "gloo"):
        raise CompressError(f"--backend {requested!r}: use auto, nccl or gloo")
    if requested == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if requested == "nccl" and not torch.cuda.is_available():
        raise CompressError("--backend nccl needs CUDA devices, and torch sees none; use gloo")
    return requested


def gpu_problem(processes: int, backend: str) -> str | None:
    """Why ``processes`` NCCL ranks cannot each have a GPU of this machine, or None."""
    visible = torch.cuda.device_count()
    if backend != "nccl" or processes <= visible:
        return None
    return (
        f"{processes} processes on this machine but {visible} visible GPU(s): NCCL needs a GPU "
        f"per process; use --nproc {visible} or fewer, or --backend gloo"
    )


def init(backend: str | None = None, timeout_min: float | None = None) -> None:
    """Join the process group torchrun describes in the environment, if any, with ``backend``
    (auto: NCCL where CUDA is) and a ``timeout_min`` minutes wait at collectives; each NCCL rank
    on its own visible GPU (refused up front when there are fewer GPUs than ranks)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or active():
        return
    backend = chosen_backend(backend)
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        ranks = int(os.environ.get("LOCAL_WORLD_SIZE", local + 1))
        problem = gpu_problem(max(ranks, local + 1), backend)
        if problem:
            raise CompressError(problem)
        torch.cuda.set_device(local)
    minutes = DEFAULT_TIMEOUT_MIN if timeout_min is None else timeout_min
    tdist.init_process_group(backend, timeout=timedelta(minutes=minutes))


def barrier() -> None:
    if active():
        tdist.barrier()


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    out: list = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out


def shard(items: list) -> list:
    """This rank's share of ``items``: every ``world``-th item from its rank, the same count on
    every rank (a remainder that cannot be shared evenly is left out of this epoch)."""
    n = world_size()
    if n == 1:
        return items
    usable = len(items) - len(items) % n
    return items[rank() : usable : n]


def wrap(model):
    """``model`` under DistributedDataParallel in a torchrun process group."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else None
    return DistributedDataParallel(model, device_ids=devices)


def main_only(context):
    """``context`` on rank 0, nothing elsewhere (e.g. the artifacts lock)."""
    return context if is_main() else nullcontext()
