"""Checkpoints that survive a killed process and never unpickle code.

A checkpoint is a plain dict (model, optimiser, scheduler, loss state, epoch, RNG states, ...)
written with ``torch.save`` to a temporary file, fsynced, then renamed over the old one, so a
kill at any moment leaves either the previous or the new checkpoint, never half of one.
Loading uses ``torch.load(weights_only=True)``: tensors and plain containers only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "save_checkpoint", "load_checkpoint", "restore_training_state", "atomic_write_text", "rng_state",
    "set_rng_state",
]


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    _fsync_replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; refuses pickled objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError or RuntimeError
        raise ValueError(
            f"{path} is not a labelemb checkpoint that loads safely (weights_only=True): {err}"
        ) from err


def restore_training_state(state: dict[str, Any], source: str | os.PathLike, model: torch.nn.Module,
                           criterion: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a resumed run's model, criterion and optimizer from its checkpoint ``state``.

    An optimizer state that no longer fits the parameters (a run written before
    ``LabelEmbeddingHead`` kept both layers in one weight has four head tensors, not two) is
    refused with a message that says so, not only PyTorch's group-size error.
    """
    model.load_state_dict(state["model"])
    criterion.load_state_dict(state["criterion"])
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as err:
        raise ValueError(
            f"{source}: the checkpoint's optimizer state does not fit this model's parameters "
            f"({err}); a run written before LabelEmbeddingHead kept its two layers in one weight "
            "(labelemb's fc/aux_fc layout) cannot be resumed: start it again in a new --out"
        ) from err


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file so readers never see a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    _fsync_replace(tmp, path)
    return path


def rng_state() -> dict[str, Any]:
    """The torch RNG states (CPU and, where present, CUDA) for an exact resume."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
