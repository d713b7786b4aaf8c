"""The whole batch's counts, for a loss that sees only part of the batch.

A mean-reduced loss divides its sums by batch-wide counts: the number of non-ignored targets
and, for ``embedding_ce`` under the classification preset, the number of targets the second
head gets right. When one global batch is split into parts (the shards of data-parallel ranks,
the micro-batches of gradient accumulation), each part must divide by the *whole* batch's
counts, so that the parts' losses, and so their gradients, sum to exactly the one-batch loss.
Dividing by each part's own counts and averaging is a different objective (a summed term's
gradient shrinks by the number of parts; a ratio of sums is not a mean of ratios).

A loss gets the whole batch's counts in one of two ways:

* ``normalizers=Normalizers(n_valid, n_correct)``: the caller knows them (gradient
  accumulation; Hugging Face's ``num_items_in_batch`` is ``n_valid``). ``n_correct=None``
  defers ``embedding_ce``'s division (see :class:`Normalizers`).
* ``process_group=group``: the loss sums its own counts over the group's ranks, one
  ``all_reduce`` of two numbers after the forward and before the backward.

Either way the loss returned is the part's *share*: the sum over the parts is the batch's loss.
A training loop that averages gradients over ``W`` ranks (DDP does) must therefore sum them
instead, or multiply each share by ``W``.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["Normalizers", "whole_batch_counts", "per_target", "term_divisors",
           "divides_by_correct", "defers_embedding_ce", "embedding_ce_divisor",
           "finish_deferred_embedding_ce"]


class Normalizers(NamedTuple):
    """The whole batch's counts, for a call that sees one part of it.

    Attributes:
        n_valid: non-ignored targets in the whole batch (an int or a 0-dim tensor).
        n_correct: of those, the targets the second head gets right (``embedding_ce``'s divisor
            under the classification preset). ``None``: not known yet (it depends on every
            part's forward). ``embedding_ce`` is then returned summed, not divided; its
            gradient reaches the embedding and nothing else, so the caller divides the
            embedding's accumulated gradient (and the summed term) once, after the last part:
            :func:`finish_deferred_embedding_ce`.
    """

    n_valid: int | Tensor
    n_correct: int | Tensor | None = None


def whole_batch_counts(n_valid: Tensor, n_correct: Tensor, normalizers: Normalizers | None,
                       process_group: dist.ProcessGroup | None
                       ) -> tuple[Tensor, Tensor | None]:
    """This part's counts (0-dim tensors) -> the whole batch's ``(n_valid, n_correct)``.

    Given ``normalizers``, theirs; given a ``process_group``, the sums over its ranks; else
    this part's own (the part is the batch). ``n_correct`` is ``None`` when deferred.
    """
    if normalizers is not None:
        if process_group is not None:
            raise ValueError("pass normalizers or process_group, not both: normalizers are "
                             "already the whole batch's counts")
        if not isinstance(normalizers, Normalizers):
            raise TypeError(f"normalizers must be a labelemb Normalizers, got "
                            f"{type(normalizers).__name__}")
        n_c = normalizers.n_correct
        return (torch.as_tensor(normalizers.n_valid, device=n_valid.device),
                None if n_c is None else torch.as_tensor(n_c, device=n_valid.device))
    if process_group is None:
        return n_valid, n_correct
    counts = torch.stack([n_valid, n_correct]).long()
    dist.all_reduce(counts, group=process_group)
    return counts[0], counts[1]


def per_target(n_valid: Tensor, dtype: torch.dtype) -> Tensor:
    """The divisor of a mean over targets: an all-ignored batch gives 0, not NaN."""
    return n_valid.clamp(min=1).to(dtype)


def term_divisors(n_valid: Tensor, n_correct: Tensor | None, options: Any,
                  dtype: torch.dtype) -> dict[str, Tensor | float]:
    """What each term's sum is divided by, from whole-batch counts (0-dim tensors), for a
    loss with :class:`~labelemb.functional.LossOptions` ``options``. ``n_correct=None``: not
    known yet, ``embedding_ce`` stays summed (:class:`Normalizers`)."""
    if options.reduction != "mean":
        return dict.fromkeys(("ce", "soft_ce", "aux_ce", "aux_hinge", "embedding_ce"), 1.0)
    mean = per_target(n_valid, dtype)
    by_correct = divides_by_correct(options)
    return {
        "ce": mean, "soft_ce": mean, "aux_ce": mean,
        "aux_hinge": mean if options.hinge_reduction == "mean" else 1.0,
        # The authors' 1 / (n_correct + 1e-8): 0 when the second head gets nothing right.
        "embedding_ce": (mean if not by_correct else 1.0 if n_correct is None
                         else n_correct.to(dtype) + 1e-8),
    }


def divides_by_correct(options: Any) -> bool:
    """Whether a mean ``embedding_ce`` is divided by the targets the second head gets right
    (the classification preset), a count only the whole batch's forward knows, rather than by
    the valid targets."""
    return options.embedding_normalizer == "correct" and options.mask_wrong


def defers_embedding_ce(criterion: nn.Module) -> bool:
    """Whether ``criterion`` called with ``Normalizers(n_valid)`` (no ``n_correct``) returns
    ``embedding_ce`` summed: a label embedding loss whose embedding trains and whose mean
    ``embedding_ce`` divides by the whole batch's correct count."""
    embedding, options = getattr(criterion, "embedding", None), getattr(criterion, "options", None)
    return (embedding is not None and options is not None and embedding.trainable
            and options.reduction == "mean" and divides_by_correct(options))


def embedding_ce_divisor(n_valid: int | Tensor, n_correct: Tensor | None, options: Any,
                         dtype: torch.dtype) -> Tensor:
    """What the summed ``embedding_ce`` of a whole batch is divided by, as a 0-dim tensor:
    :func:`term_divisors`' rule, for every caller that applies that division itself (the
    deferred division below, :class:`~labelemb.hf.TrainerLoss`'s rescaling in backward).
    ``n_correct=None``: not known, 1 under the classification preset."""
    device = None if n_correct is None else n_correct.device
    divisors = term_divisors(torch.as_tensor(n_valid, device=device), n_correct, options, dtype)
    return torch.as_tensor(divisors["embedding_ce"])


def finish_deferred_embedding_ce(grads: Iterable[Tensor], n_valid: int | Tensor,
                                 n_correct: Tensor | None, options: Any,
                                 terms: dict[str, Tensor] | None = None,
                                 dtype: torch.dtype | None = None) -> Tensor:
    """The deferred division, after the last part of a batch: each part left ``embedding_ce``
    summed (:class:`Normalizers` without ``n_correct``); divide the gradients it reached
    (``grads``: the embedding's, nothing else sees that term) and its value in ``terms`` (with
    ``terms["loss"]`` where present: it weighs 1 there) by :func:`embedding_ce_divisor` of the
    whole batch's counts (summed over parts and ranks), computed in ``dtype`` (default: the
    gradients', float32 without any). The loop and the chunked loss finish with it. Returns
    the divisor."""
    grads = list(grads)
    if dtype is None:
        dtype = grads[0].dtype if grads else torch.float32
    divisor = embedding_ce_divisor(n_valid, n_correct, options, dtype)
    for g in grads:
        g.div_(divisor.to(g.dtype))
    if terms is not None and "embedding_ce" in terms:
        summed = terms["embedding_ce"]
        terms["embedding_ce"] = summed / divisor
        if "loss" in terms:
            terms["loss"] = terms["loss"] - summed + summed / divisor
    return divisor
