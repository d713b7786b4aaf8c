"""``LabelEmbeddingLoss``: the module form of :func:`labelemb.functional.label_embedding_loss`.

The loss owns the label embedding, so the embedding's parameters are in
``criterion.parameters()`` and ``criterion.state_dict()``: give them to the optimiser.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .functional import LossOutput, check_options, label_embedding_loss

__all__ = ["LabelEmbeddingLoss", "PRESETS"]

#: The authors' published settings (official-code.md). ``seq2seq`` differs from their code in
#: one way on purpose: padding (``ignore_index``) is excluded from every term.
PRESETS: dict[str, dict[str, Any]] = {
    "classification": dict(
        beta=0.5, tau=2.0, alpha=0.9, hinge="l1", hinge_reduction="sum", mask_wrong=True,
        embedding_normalizer="correct", warmup_steps=0,
    ),
    "seq2seq": dict(
        beta=None, tau=2.0, alpha=0.9, hinge="abs", hinge_reduction="mean", mask_wrong=True,
        embedding_normalizer="valid", warmup_steps=20_000,
    ),
}


class LabelEmbeddingLoss(nn.Module):
    """Label embedding network loss (eq. 14), or eq. 17 with a frozen embedding.

    Args:
        embedding: a :class:`~labelemb.LabelEmbedding`, :class:`~labelemb.CompressedLabelEmbedding`
            or :class:`~labelemb.FixedLabelEmbedding`.
        **options: see :func:`labelemb.functional.label_embedding_loss` (``beta``, ``tau``,
            ``alpha``, ``hinge``, ``hinge_reduction``, ``mask_wrong``,
            ``embedding_normalizer``, ``warmup_steps``, ``ignore_index``, ``reduction``,
            ``validate``, ``backend``). Defaults are the ``"classification"`` preset and
            ``backend="auto"`` (the compiled loss where it applies).

    Shape:
        logits, aux_logits ``(N, C)`` or ``(N, C, d1, ...)``; target ``(N)`` or
        ``(N, d1, ...)``. Returns :class:`~labelemb.functional.LossOutput` ``(loss, terms)``.

    The number of training forward calls is kept in the ``num_updates`` buffer (saved in the
    state dict, so a resumed run keeps its warm-up position); it counts calls made in training
    mode with gradients enabled.

    Example::

        head = LabelEmbeddingHead(512, 10)
        criterion = LabelEmbeddingLoss(LabelEmbedding(10))
        loss, terms = criterion(*head(features), target)
    """

    num_updates: Tensor

    def __init__(self, embedding: nn.Module, **options: Any) -> None:
        super().__init__()
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; valid: {sorted(_OPTION_NAMES)}")
        if not hasattr(embedding, "num_classes"):
            raise TypeError(
                "embedding must be a labelemb embedding (LabelEmbedding, "
                f"CompressedLabelEmbedding or FixedLabelEmbedding), got {type(embedding).__name__}"
            )
        self.embedding = embedding
        self.options = {**PRESETS["classification"], "ignore_index": -100, "reduction": "mean",
                        "validate": True, "backend": "auto", **options}
        # Fail now, not at the first batch, on a bad option value.
        check_options(**self.options)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_preset(cls, name: str, embedding: nn.Module, **overrides: Any) -> "LabelEmbeddingLoss":
        """``"classification"`` or ``"seq2seq"`` settings of the authors' code, plus overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(embedding, **{**PRESETS[name], **overrides})

    @property
    def num_classes(self) -> int:
        return int(self.embedding.num_classes)

    def forward(self, logits: Tensor, aux_logits: Tensor | None, target: Tensor) -> LossOutput:
        # The step is read only when a warm-up needs it (a tensor-to-int costs a sync on GPU).
        step = int(self.num_updates) if self.options["warmup_steps"] else None
        out = label_embedding_loss(logits, aux_logits, target, self.embedding, step=step,
                                   **self.options)
        if self.training and torch.is_grad_enabled():
            self.num_updates.add_(1)  # in place: no Module.__setattr__ on every step
        return out

    @torch.no_grad()
    def soft_target(self, target: Tensor) -> Tensor:
        """``softmax(e_y)``, the soft distribution a target is trained towards: ``(M,) -> (M, C)``."""
        return torch.softmax(self.embedding(target).float(), dim=-1)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


_OPTION_NAMES = {
    "beta", "tau", "alpha", "hinge", "hinge_reduction", "mask_wrong", "embedding_normalizer",
    "warmup_steps", "ignore_index", "reduction", "validate", "backend",
}

