"""The device a run trains on, checked before anything is written, and joining the process
group of a ``torchrun`` launch."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist

from .ranks import rank_and_world

__all__ = ["pick_device", "device_of_rank", "join_torchrun", "rank_device"]


def pick_device(name: str | None) -> torch.device:
    """The device ``--device`` names (default: CUDA when available). An unknown name, absent
    CUDA or a CUDA index this machine lacks is a ``ValueError`` naming the flag: torch's own
    RuntimeError would read as a bug in labelemb."""
    try:
        dev = torch.device(name) if name else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r} is not a device name; use cpu, cuda or "
                         "cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: labelemb trains on cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r}: CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name!r}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    return dev


def device_of_rank(name: str | None) -> torch.device:
    """:func:`pick_device`; under torchrun a bare ``cuda`` is this rank's own GPU."""
    dev = pick_device(name)
    rank, world = rank_and_world()
    if dev.type == "cuda" and dev.index is None and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    return dev


def join_torchrun(device: str | None) -> bool:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1) join the process group, NCCL on CUDA, else
    gloo; whether it joined (the caller then destroys the group when it is done)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() \
            or dist.is_initialized():
        return False
    cuda = torch.cuda.is_available() and not str(device or "").startswith("cpu")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


@contextmanager
def rank_device(name: str | None, threads: int | None = None) -> Iterator[torch.device]:
    """Where this process trains: under ``torchrun`` the process group joined first (and
    destroyed on leaving), then this rank's device (:func:`device_of_rank`); ``threads``: CPU
    threads for torch (``None``: torch's default)."""
    joined = join_torchrun(name)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield device_of_rank(name)
    finally:
        if joined:
            dist.destroy_process_group()
