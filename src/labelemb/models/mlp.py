"""The paper's MLP backbone (Appendix B): 784-500-500 with ReLU."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """Fully connected ReLU layers on the flattened image; returns the last hidden layer.

    Args:
        in_features: input size after flattening (784 for 28x28 grey images).
        hidden: the hidden sizes, ``(500, 500)`` in the paper.

    Shape:
        ``(N, *)`` with ``prod(*) == in_features`` -> ``(N, hidden[-1])``.
    """

    def __init__(self, in_features: int = 784, hidden: Sequence[int] = (500, 500)) -> None:
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if len(hidden) == 0 or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive sizes, got {hidden!r}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        self.layers = nn.Sequential(*layers)
        self.in_features = in_features
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"MLP expects {self.in_features} input features per sample, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        return self.layers(x)
