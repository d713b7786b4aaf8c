"""Which process of a distributed (``torchrun``) run this is: one rule for "rank 0 alone writes
the files and the log", for the engines and the commands alike."""

from __future__ import annotations

import os

import torch.distributed as dist

__all__ = ["rank_and_world", "is_main_process"]


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
