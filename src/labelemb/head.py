"""The two output layers of a label embedding network (paper, Figure 1)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LabelEmbeddingHead"]


class LabelEmbeddingHead(nn.Module):
    """The main output layer, plus a second one on detached features.

    ``logits = fc(h)`` (o1 in the paper) is the prediction and trains the backbone.
    ``aux_logits = aux_fc(h.detach())`` (o2) only teaches the label embedding: the detach is
    here, in one place, so the second head's losses can never reach the backbone.

    Args:
        in_features: size of the backbone's features ``h``.
        num_classes: ``C``.
        bias: whether both layers have a bias.
        aux: build the second layer. Not needed with a :class:`~labelemb.FixedLabelEmbedding`
            (eq. 17); then ``aux_logits`` is ``None``.

    Shape:
        features ``(*, in_features)`` -> ``logits, aux_logits`` each ``(*, C)``.
        For ``(N, T, F)`` sequence features the logits are ``(N, T, C)``: flatten to
        ``(N*T, C)`` or move the class dimension to 1 before the loss.
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True,
                 aux: bool = True) -> None:
        super().__init__()
        self.in_features, self.num_classes = in_features, num_classes
        # Main layer first: a baseline (aux=False) built from the same seed shares W1, b1.
        self.fc = nn.Linear(in_features, num_classes, bias=bias)
        self.aux_fc = nn.Linear(in_features, num_classes, bias=bias) if aux else None

    @property
    def aux(self) -> bool:
        return self.aux_fc is not None

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor | None]:
        if features.dim() == 0 or features.shape[-1] != self.in_features:
            # Shapes only, no device sync; torch's own message names neither the head nor
            # in_features ("mat1 and mat2 shapes cannot be multiplied").
            raise ValueError(
                f"features must be (*, in_features={self.in_features}), got shape "
                f"{tuple(features.shape)}: build the head with in_features equal to the size "
                "of the backbone's features")
        logits = self.fc(features)
        aux_logits = None if self.aux_fc is None else self.aux_fc(features.detach())
        return logits, aux_logits

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Checkpoints from when both layers were one (2C, F) `weight` (and `bias`): rows [:C]
        # were fc, rows [C:] aux_fc.
        for name in ("weight", "bias"):
            both = state_dict.pop(f"{prefix}{name}", None)
            if both is not None:
                parts = torch.split(both, self.num_classes)
                for layer, part in zip(("fc", "aux_fc"), parts):
                    state_dict.setdefault(f"{prefix}{layer}.{name}", part)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, aux={self.aux}"

