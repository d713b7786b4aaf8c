"""CIFAR ResNets (3x3 stem, BasicBlocks, no initial max-pool) as feature extractors.

Two families:

* The widths the authors actually ran (docs/TRAINING.md), used for Table 2:
  :func:`resnet8` (stem 128, one BasicBlock per stage at 128/256/512, strides 1/2/2, 4x4
  average pooling: a 32x32 image gives 2x2x512 = 2048 features, ~4.9M parameters with a
  10-class head) and :func:`resnet18` (BasicBlocks [2, 2, 2, 2] at 128/256/512/1024, stem 128,
  4x4 average pooling: 1024 features, ~45M parameters).
* Standard widths: :func:`resnet18_std` (the usual CIFAR ResNet-18, stem 64, 64/128/256/512,
  512 features, ~11M parameters) and :func:`resnet8_std` (He et al.'s CIFAR ResNet-8, the
  6n+2 family with n = 1: stem 16, 16/32/64, global average pooling, 64 features, ~78k
  parameters; shortcuts are 1x1 projections rather than He et al.'s zero padding).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BasicBlock", "CifarResNet", "resnet8", "resnet18", "resnet8_std", "resnet18_std"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a shortcut (1x1 conv-BN projection when the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """A ResNet for small images that returns pooled features (no classifier).

    Args:
        blocks: BasicBlocks per stage, e.g. ``(2, 2, 2, 2)``.
        widths: channels per stage.
        strides: stride of each stage's first block.
        stem: channels of the 3x3 stem convolution.
        in_channels: image channels.
        image_size: height = width of the input (sets ``out_features``).
        pool: ``4`` for the authors' fixed 4x4 average pooling (features keep any spatial size
            left, flattened), or ``"global"`` for global average pooling.

    Shape:
        ``(N, in_channels, image_size, image_size)`` -> ``(N, out_features)``.
    """

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        strides: Sequence[int],
        stem: int,
        in_channels: int = 3,
        image_size: int = 32,
        pool: int | str = 4,
    ) -> None:
        super().__init__()
        if not (len(blocks) == len(widths) == len(strides)) or len(blocks) == 0:
            raise ValueError(
                f"blocks, widths and strides must have one entry per stage, got {blocks!r}, "
                f"{widths!r}, {strides!r}"
            )
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if pool != "global" and not (isinstance(pool, int) and pool >= 1):
            raise ValueError(f"pool must be a positive int or 'global', got {pool!r}")
        self.conv1 = nn.Conv2d(in_channels, stem, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        stages = []
        planes = stem
        side = image_size
        for n, width, stride in zip(blocks, widths, strides):
            layers = []
            for i in range(n):
                layers.append(BasicBlock(planes, width, stride if i == 0 else 1))
                planes = width
            stages.append(nn.Sequential(*layers))
            side = (side - 1) // stride + 1  # 3x3 conv, padding 1
        self.stages = nn.Sequential(*stages)
        self.pool = pool
        if pool == "global":
            self.out_features = planes
        else:
            pooled = side // int(pool)
            if pooled < 1:
                raise ValueError(
                    f"image_size {image_size} is too small: the last stage is {side}x{side}, "
                    f"smaller than the {pool}x{pool} average pooling"
                )
            self.out_features = planes * pooled * pooled
        self.image_size = image_size

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.stages(out)
        if self.pool == "global":
            return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return torch.flatten(F.avg_pool2d(out, int(self.pool)), 1)


def resnet8(in_channels: int = 3, image_size: int = 32) -> CifarResNet:
    """The authors' CIFAR-10 "ResNet-8": stem 128, 128/256/512, 4x4 avg-pool (2048-d at 32x32)."""
    return CifarResNet((1, 1, 1), (128, 256, 512), (1, 2, 2), 128, in_channels, image_size, 4)


def resnet18(in_channels: int = 3, image_size: int = 32) -> CifarResNet:
    """The authors' CIFAR-100 "ResNet-18": [2,2,2,2] at double width 128..1024, stem 128."""
    return CifarResNet(
        (2, 2, 2, 2), (128, 256, 512, 1024), (1, 2, 2, 2), 128, in_channels, image_size, 4
    )


def resnet8_std(in_channels: int = 3, image_size: int = 32) -> CifarResNet:
    """He et al.'s CIFAR ResNet-8 (6n+2, n=1): 16/32/64, global average pooling (64-d)."""
    return CifarResNet((1, 1, 1), (16, 32, 64), (1, 2, 2), 16, in_channels, image_size, "global")


def resnet18_std(in_channels: int = 3, image_size: int = 32) -> CifarResNet:
    """The usual CIFAR ResNet-18: stem 64, 64/128/256/512, 4x4 avg-pool (512-d at 32x32)."""
    return CifarResNet(
        (2, 2, 2, 2), (64, 128, 256, 512), (1, 2, 2, 2), 64, in_channels, image_size, 4
    )
