"""The two output layers of a label embedding network (paper, Figure 1)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LabelEmbeddingHead"]


class LabelEmbeddingHead(nn.Module):
    """Main output layer plus an auxiliary one on detached features.

    ``logits = W1 h`` (o1 in the paper) is the prediction and trains the backbone.
    ``aux_logits = W2 h.detach()`` (o2) only teaches the label embedding; the detach lives here,
    in one place, so the auxiliary losses can never reach the backbone.

    Args:
        in_features: size of the backbone's features ``h``.
        num_classes: ``C``.
        bias: whether both layers have a bias.
        aux: build the auxiliary layer. Not needed with a
            :class:`~labelemb.FixedLabelEmbedding` (eq. 17); then ``aux_logits`` is ``None``.

    Shape:
        features ``(*, in_features)`` -> ``logits, aux_logits`` each ``(*, C)``.
        For ``(N, T, F)`` sequence features the logits are ``(N, T, C)``: flatten to
        ``(N*T, C)`` or move the class dimension to 1 before the loss.
    """

    def __init__(
        self, in_features: int, num_classes: int, bias: bool = True, aux: bool = True
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.fc = nn.Linear(in_features, num_classes, bias=bias)
        self.aux_fc = nn.Linear(in_features, num_classes, bias=bias) if aux else None

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor | None]:
        logits = self.fc(features)
        if self.aux_fc is None:
            return logits, None
        return logits, self.aux_fc(features.detach())

    def extra_repr(self) -> str:
        return f"aux={self.aux_fc is not None}"
