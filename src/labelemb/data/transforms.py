"""Batch transforms written with torch ops (no torchvision), seeded by a ``torch.Generator``.

Images travel as uint8 ``(N, C, H, W)`` tensors; :func:`to_float` normalises a batch on the
device it already is on. Augmentation draws its randomness from the generator given, so the
data order and the crops of a run are fixed by its seed and saved with its checkpoint.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["to_float", "random_crop_flip"]


def to_float(
    x: Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 in [0, 1], then ``(x - mean) / std`` per channel."""
    out = x.float().div_(255.0)
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=out.dtype, device=out.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=out.dtype, device=out.device).view(1, -1, 1, 1)
        out = (out - m) / s
    return out


def random_crop_flip(
    x: Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> Tensor:
    """Random crop of the zero-padded image (``padding`` pixels each side) and a random
    horizontal flip with probability 1/2, one draw per image.

    The random numbers are drawn on the CPU from ``generator`` (same results on any device).

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)``, same dtype.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    dev = x.device
    offsets, flips = offsets.to(dev), flips.to(dev)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, 0:1] + torch.arange(h, device=dev)  # (N, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=dev)  # (N, W)
    # Flip by reading the crop's columns right to left.
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=dev).view(n, 1, 1, 1)
    idx_c = torch.arange(c, device=dev).view(1, c, 1, 1)
    return padded[idx_n, idx_c, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
