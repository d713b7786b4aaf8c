"""The device a run trains on, checked before anything is written."""

from __future__ import annotations

import torch

__all__ = ["pick_device"]


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
