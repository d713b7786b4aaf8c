"""Checkpoints that survive a killed process and never unpickle code.

A checkpoint is a plain dict (model, optimiser, scheduler, loss state, epoch, RNG states, ...)
written with ``torch.save`` through :func:`~labelemb.atomic.atomic_write`, so a kill at
any moment leaves either the previous or the new checkpoint, never half of one. Loading uses
``torch.load(weights_only=True)``: tensors and plain containers only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "restore_training_state", "rng_state",
           "set_rng_state"]


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; refuses pickled objects.

    A file that does not load as tensors and plain containers (truncated, another program's,
    or a pickle that would run code) is refused in one line. PyTorch's own message is left
    out on purpose: it advises ``weights_only=False``, which would run such a file's code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = _torch_load(path, map_location)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError, ... depending on damage
        if str(map_location) != "cpu" and _loads_on_cpu(path):
            # The file is sound; the device it was asked onto is not (a name torch does not
            # know, CUDA absent): never tell the user to delete a good checkpoint.
            raise ValueError(f"{path} cannot be loaded onto device {str(map_location)!r} "
                             f"({type(err).__name__}); choose another --device") from None
        raise ValueError(
            f"{path} is damaged or not a labelemb checkpoint ({type(err).__name__}); it was not "
            "loaded: delete it, or start the run again with --overwrite"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a labelemb checkpoint (it holds a "
                         f"{type(state).__name__}, not a dict); start the run again with --overwrite")
    return state


def _torch_load(path: Path, map_location: Any) -> Any:
    """``torch.load`` of tensors and plain containers only."""
    with warnings.catch_warnings():
        # torch warns about a foreign pickle protocol before refusing the file: the one line
        # of load_checkpoint is all the user needs.
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=map_location, weights_only=True)


def _loads_on_cpu(path: Path) -> bool:
    """Whether ``path`` loads onto the CPU (told apart: a bad file from a bad device)."""
    try:
        _torch_load(path, "cpu")
    except Exception:
        return False
    return True


def restore_training_state(state: dict[str, Any], source: str | os.PathLike, model: torch.nn.Module,
                           criterion: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a resumed run's model, criterion and optimizer from its checkpoint ``state``.

    The optimizer state must hold as many parameters per group as this model and criterion
    have; when it does not (a run from a labelemb whose layers were laid out differently), the
    run is refused with that reason in one line, before PyTorch's group-size error.
    """
    saved_groups = state["optimizer"].get("param_groups", [])
    have = [len(g["params"]) for g in optimizer.param_groups]
    saved = [len(g.get("params", ())) for g in saved_groups]
    if saved != have:
        raise ValueError(
            f"{source}: the checkpoint's optimizer state holds {saved} parameter tensors per "
            f"group where this model has {have}: it was written by a labelemb with another "
            "layer layout and cannot be resumed; start the run again in a new --out"
        )
    try:
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state["criterion"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{source}: the checkpoint does not fit this run's model ({first}); "
                         "start the run again in a new --out") from None


def rng_state() -> dict[str, Any]:
    """The torch RNG states (CPU and, where present, CUDA) for an exact resume."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
