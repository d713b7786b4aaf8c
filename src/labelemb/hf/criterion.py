"""The criterion a :class:`~labelemb.hf.LabelEmbeddingConfig` names, and its loss normalised
the way the Hugging Face ``Trainer`` expects under gradient accumulation.

The Trainer counts the non-ignored labels of *all* the micro-batches of one optimiser step
(and, with ``average_tokens_across_devices``, of all processes) and passes that count to the
model as ``num_items_in_batch``; it then sums the micro-batch losses instead of averaging them
(and multiplies by the world size, undoing DDP's gradient average). A loss that divides its
sums by ``num_items_in_batch`` instead of by its own micro-batch's count therefore gives the
gradients of one big batch. Which terms that makes exact is said in :func:`trainer_loss`.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import Tensor, nn

from ..baselines import LabelSmoothingLoss, OnlineLabelSmoothingLoss
from ..embedding import LabelEmbedding
from ..functional import (PRESETS, check_inputs, masked_terms, rows, term_divisors,
                          term_weights, weighted_sum)
from ..loss import LabelEmbeddingLoss
from .config import LabelEmbeddingConfig

__all__ = ["build_criterion", "trainer_loss"]


def build_criterion(config: LabelEmbeddingConfig) -> nn.Module:
    """The loss module of ``config.loss``; for ``emb`` it owns the learned ``C x C`` embedding
    (identity at the start), named after ``config.id2label``."""
    C = config.num_labels
    if config.loss == "emb":
        names = [config.id2label[i] for i in range(C)] if config.id2label else None
        options = {**asdict(PRESETS["classification"]), **(config.loss_options or {})}
        return LabelEmbeddingLoss(LabelEmbedding(C, class_names=names), **options)
    if config.loss == "ols":
        return OnlineLabelSmoothingLoss(C, alpha=config.ols_alpha, smoothing=config.smoothing)
    return LabelSmoothingLoss(config.smoothing if config.loss == "ls" else 0.0)


def trainer_loss(criterion: nn.Module, logits: Tensor, aux_logits: Tensor | None,
                 labels: Tensor, num_items_in_batch: Tensor | int | None = None) -> Tensor:
    """The scalar loss of one (micro-)batch.

    Without ``num_items_in_batch``: the criterion's own mean over this batch. With it:

    * ``ce``, ``ls``, ``ols`` and the ``ce``, ``soft_ce``, ``aux_ce`` terms of ``emb`` are
      sums over the micro-batch divided by ``num_items_in_batch``: exactly the big batch's
      gradients;
    * ``aux_hinge`` with ``hinge_reduction="sum"`` (the preset) is a plain sum: exact too;
    * ``embedding_ce`` is divided by the number of targets the second head gets right, and
      that count for the whole accumulated batch is not known while a micro-batch runs: each
      micro-batch's own mean is weighted by its share of the targets. Exact only when every
      micro-batch has the same fraction right; it reaches only the label embedding.
    """
    if num_items_in_batch is None:
        return criterion(logits, aux_logits, labels).loss
    n_items = torch.as_tensor(num_items_in_batch, device=logits.device).float()
    if not isinstance(criterion, LabelEmbeddingLoss):
        # A mean over this micro-batch's valid targets, re-normalised by the global count.
        n_valid = (labels != -100).sum()
        return criterion(logits, aux_logits, labels).loss * (n_valid / n_items.clamp(min=1))
    return _label_embedding_loss(criterion, logits, aux_logits, labels, n_items)


def _label_embedding_loss(criterion: LabelEmbeddingLoss, logits: Tensor,
                          aux_logits: Tensor | None, labels: Tensor, n_items: Tensor) -> Tensor:
    """eq. 14 with the valid-target divisors replaced by ``n_items`` (see :func:`trainer_loss`)."""
    options, embedding = criterion.options, criterion.embedding
    check_inputs(logits, labels, aux_logits=aux_logits, embedding=embedding)
    terms, valid, correct = masked_terms(rows(logits), rows(aux_logits), labels.reshape(-1),
                                         embedding, options)
    divisors = term_divisors(n_items, correct.sum(), options, terms["ce"].dtype)
    if options.embedding_normalizer == "correct" and options.mask_wrong:
        # this micro-batch's mean over its correct targets, times its share of the targets
        divisors["embedding_ce"] = divisors["embedding_ce"] * n_items / valid.sum().clamp(min=1)
    sums = {k: v.sum() / divisors[k] for k, v in terms.items()}
    loss = weighted_sum(sums, term_weights(options, criterion.num_updates))
    criterion._count_update()  # the warm-up clock counts this call as the module's forward does
    return loss
