"""Which process of a distributed (``torchrun``) run this is: one rule for "rank 0 alone writes
the files and the log", for the engines and the commands alike; and the few collectives both
engines share (a barrier, the ranks' gradients summed, the check that the ranks agree)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["rank_and_world", "is_main_process", "barrier", "sum_gradients",
           "check_ranks_agree"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the running process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Whether this process writes: rank 0 of the process group while one runs, else rank 0
    by torchrun's ``RANK`` (the engine destroys its group before returning, so a command
    writing after the training asks the same question), else a plain process: yes."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def barrier() -> None:
    """Wait for every rank (nothing without a process group of several)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def sum_gradients(params: Iterable[Tensor]) -> None:
    """Replace each gradient by its sum over the ranks, in one ``all_reduce``.

    A sum, not DDP's mean: each rank's loss is its share of the global batch's loss (divided by
    the whole batch's counts, :mod:`labelemb.normalizers`), so the shares' gradients add up to
    the one-process gradient. A parameter without a gradient counts as zero.
    """
    params = [p for p in params if p.requires_grad]
    if rank_and_world()[1] == 1 or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for p, g in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = g.view_as(p)


@torch.no_grad()
def check_ranks_agree(modules: dict[str, nn.Module], run_dir: Path) -> None:
    """Every rank must end with rank 0's floating parameters and buffers (rank 0 alone writes
    the files, so a silent divergence would go unnoticed otherwise); BatchNorm's running
    statistics are skipped: each rank keeps its own, and rank 0 saves its."""
    state = {f"{name}.{k}": v for name, module in modules.items()
             for k, v in module.state_dict().items()}
    for k, v in state.items():
        if not v.is_floating_point() or k.endswith(("running_mean", "running_var")):
            continue
        ref = v.clone()
        dist.broadcast(ref, 0)
        diverged = torch.tensor(float(not torch.equal(ref, v)), device=v.device)
        dist.all_reduce(diverged)
        if diverged.item():
            raise RuntimeError(f"{run_dir}: ranks disagree on {k} after training")
