"""Data parallelism for our own training loops: ``torchrun`` + ``torch.distributed`` + DDP.

Launch any training command under ``torchrun`` (``torchrun --nproc_per_node 4 -m supernet.search
...``, ``--nnodes``/``--rdzv-endpoint`` for several machines): ``init_from_env`` sees torchrun's
environment and joins the process group (NCCL on GPUs, gloo on CPU). Every rank takes its slice of
each global batch, so the global batch size and the data order are those of one process; the
heads sampled at a step depend on (seed, step) only, so every rank samples the same ones without
any communication; DDP averages the gradients; rank 0 alone writes checkpoints, logs and results.
Without torchrun all of this reduces to one process and nothing changes.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from supernet.core.errors import InputError


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: str) -> str:
    """Join torchrun's process group if launched by torchrun; returns this rank's device."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return device
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def check_batch(batch_size: int) -> None:
    if batch_size // world_size() < 2:
        raise InputError(f"--batch-size {batch_size} gives fewer than 2 rows per process over {world_size()} "
                         "processes (batch norm needs 2); raise --batch-size")


def shard(index: np.ndarray) -> np.ndarray:
    """This rank's rows of a global batch (all ranks together: the whole batch, once)."""
    return index[rank()::world_size()]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's value on every rank (e.g. a run directory named by the clock)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over ranks (the same on every rank: safe to branch on)."""
    if not dist.is_initialized():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world_size()


def wrap(module: torch.nn.Module) -> torch.nn.Module:
    """DDP over ``module`` when distributed. Unused parameters are expected: a step trains a few
    sampled heads of the supernet, and deeper layers or other poolings sit idle."""
    if not dist.is_initialized():
        return module
    from torch.nn.parallel import DistributedDataParallel
    device = next(module.parameters()).device
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)