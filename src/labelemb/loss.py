"""``LabelEmbeddingLoss``: the module around :func:`labelemb.functional.label_embedding_loss`.

The loss owns the label embedding, so the embedding's parameters are in
``criterion.parameters()`` and ``criterion.state_dict()``: give them to the optimiser.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

import torch
from torch import Tensor, distributed as dist, nn

from .checks import check_embedding
from .functional import PRESETS, LossOptions, LossOutput, compute_loss, soft_target
from .normalizers import Normalizers

__all__ = ["LabelEmbeddingLoss", "PRESETS"]

_OPTION_NAMES = frozenset(f.name for f in fields(LossOptions))


class LabelEmbeddingLoss(nn.Module):
    """Label embedding network loss (eq. 14), or eq. 17 with a frozen embedding.

    Args:
        embedding: a :class:`~labelemb.LabelEmbedding`, :class:`~labelemb.CompressedLabelEmbedding`
            or :class:`~labelemb.FixedLabelEmbedding`.
        **options: the fields of :class:`~labelemb.functional.LossOptions` (``beta``, ``tau``,
            ``alpha``, ``hinge``, ``hinge_reduction``, ``mask_wrong``, ``embedding_normalizer``,
            ``warmup_steps``, ``ignore_index``, ``reduction``, ``validate``); the defaults are
            the ``"classification"`` preset.

    Shape:
        logits, aux_logits ``(N, C)`` or ``(N, C, d1, ...)``; target ``(N)`` or
        ``(N, d1, ...)``. Returns :class:`~labelemb.functional.LossOutput` ``(loss, terms)``;
        with ``normalizers=`` or ``process_group=``, a part's share (:mod:`labelemb.normalizers`).

    The ``num_updates`` buffer counts the calls made in training mode with gradients enabled
    (the warm-up clock). It is a tensor, saved in the state dict so a resumed run keeps its
    warm-up position, and it makes ``torch.compile`` neither branch nor recompile on the count.

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
        check_embedding(embedding)
        self.embedding = embedding
        self.options = LossOptions(**options)  # a bad value fails now, not at the first batch
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_preset(cls, name: str, embedding: nn.Module, **overrides: Any) -> "LabelEmbeddingLoss":
        """``"classification"`` or ``"seq2seq"`` settings of the authors' code, plus overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(embedding, **{**asdict(PRESETS[name]), **overrides})

    @property
    def num_classes(self) -> int:
        return int(self.embedding.num_classes)

    def forward(self, logits: Tensor, aux_logits: Tensor | None, target: Tensor, *,
                normalizers: Normalizers | None = None,
                process_group: dist.ProcessGroup | None = None) -> LossOutput:
        out = compute_loss(logits, aux_logits, target, self.embedding, self.options,
                           self.num_updates, normalizers, process_group)
        self._count_update()
        return out

    def _count_update(self) -> None:
        if self.training and torch.is_grad_enabled():
            self.num_updates += 1

    @torch.no_grad()
    def soft_target(self, target: Tensor) -> Tensor:
        """``e'_y``, the soft distribution the main head is trained towards for each target:
        ``(M,) -> (M, C)``."""
        return soft_target(self.embedding(target).float(), self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in asdict(self.options).items())
