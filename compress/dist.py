"""Data-parallel runs on PyTorch's own distributed engine, launched by torchrun.

``torchrun --nproc-per-node N -m compress run RECIPE`` (or ``lert-compress run RECIPE --nproc N``,
which calls torchrun) starts N processes; each calls ``init()``, which joins the process group
(NCCL on CUDA, gloo on CPU). Training stages then shard every epoch's batches across the ranks
and average gradients with ``DistributedDataParallel``; rank 0 alone writes step outputs, the
manifest, logs and the report, and holds the artifacts lock. In one process every helper here
is a no-op.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch
import torch.distributed as tdist


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


def init() -> None:
    """Join the process group torchrun describes in the environment, if any."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or active():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        tdist.init_process_group("nccl")
    else:
        tdist.init_process_group("gloo")


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
