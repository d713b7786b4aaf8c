"""The paper's MNIST CNN backbone (Section 3.1; the authors' code, docs/TRAINING.md).

conv 5x5 x32 -> ReLU -> max-pool 2 -> conv 5x5 x64 -> ReLU -> max-pool 2 -> FC 1024 -> ReLU.
Convolutions and pools use TensorFlow's ``'same'`` padding as in the authors' TF code, so a
28x28 image becomes 7x7x64 = 3136 features before the FC layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["MnistCNN"]


class MnistCNN(nn.Module):
    """Two conv/pool stages and a 1024-unit FC layer; returns features, no classifier.

    Args:
        in_channels: image channels (1 for MNIST).
        image_size: height = width of the input.
        hidden: size of the FC layer (1024 in the paper).

    Shape:
        ``(N, in_channels, image_size, image_size)`` -> ``(N, hidden)``; ``out_features = hidden``.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 1024) -> None:
        super().__init__()
        _check_int("in_channels", in_channels)
        _check_int("image_size", image_size)
        _check_int("hidden", hidden)
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        # ceil_mode reproduces TF 'same' max-pooling on odd sizes (e.g. 7 -> 4).
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        side = math.ceil(math.ceil(image_size / 2) / 2)
        self.fc = nn.Linear(64 * side * side, hidden)
        self.out_features = hidden

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return torch.relu(self.fc(x.flatten(1)))


def _check_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
