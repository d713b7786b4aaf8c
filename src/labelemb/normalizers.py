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

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Normalizers", "whole_batch_counts", "per_target"]


class Normalizers(NamedTuple):
    """The whole batch's counts, for a call that sees one part of it.

    Attributes:
        n_valid: non-ignored targets in the whole batch (an int or a 0-dim tensor).
        n_correct: of those, the targets the second head gets right (``embedding_ce``'s divisor
            under the classification preset). ``None``: not known yet (it depends on every
            part's forward). ``embedding_ce`` is then returned summed, not divided; its
            gradient reaches the embedding and nothing else, so the caller divides the
            embedding's accumulated gradient (and the summed term) once, after the last part,
            by ``term_divisors(n_valid, n_correct, options, dtype)["embedding_ce"]``.
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
