"""The criterion a :class:`~labelemb.hf.LabelEmbeddingConfig` names, and its loss normalised
the way the Hugging Face ``Trainer`` expects under gradient accumulation and DDP.

The Trainer counts the non-ignored labels of *all* the micro-batches of one optimiser step
(and, with ``average_tokens_across_devices``, the default, of all processes) and passes that
count to the model as ``num_items_in_batch``; it then sums the micro-batch losses instead of
averaging them (and multiplies them by the world size, undoing DDP's gradient average). A loss
that divides its sums by ``num_items_in_batch`` (the criterion's ``normalizers=``) instead of
by its own micro-batch's count therefore gives the gradients of one big batch.

Label embedding's ``embedding_ce`` is divided by another count, the targets the second head
gets right in the whole step, which no micro-batch knows while it runs: :class:`TrainerLoss`
makes its gradient exact all the same (see there).
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor, distributed as dist, nn

from ..baselines import LabelSmoothingLoss, OnlineLabelSmoothingLoss
from ..embedding import LabelEmbedding
from ..functional import PRESETS, divides_by_correct, trains_embedding
from ..loss import LabelEmbeddingLoss
from ..normalizers import Normalizers, embedding_ce_divisor
from ..runs.ranks import rank_and_world
from .config import LabelEmbeddingConfig
from .settings import loss_options_over

__all__ = ["build_criterion", "TrainerLoss", "step_normalizers"]


def build_criterion(config: LabelEmbeddingConfig) -> nn.Module:
    """The loss module of ``config.loss``; for ``emb`` it owns the learned ``C x C`` embedding
    (identity at the start), named after ``config.id2label``."""
    C = config.num_labels
    if config.loss == "emb":
        names = [config.id2label[i] for i in range(C)] if config.id2label else None
        options = asdict(loss_options_over(PRESETS["classification"], config.loss_options))
        return LabelEmbeddingLoss(LabelEmbedding(C, class_names=names), **options)
    if config.loss == "ols":
        return OnlineLabelSmoothingLoss(C, alpha=config.ols_alpha, smoothing=config.smoothing)
    return LabelSmoothingLoss(config.smoothing if config.loss == "ls" else 0.0)


def step_normalizers(num_items_in_batch: Tensor | int | None, device: torch.device
                     ) -> Normalizers | None:
    """The Trainer's whole-step count as a part's :class:`~labelemb.normalizers.Normalizers`:
    each term's sum is divided by ``num_items_in_batch`` (``None``: the part's own mean).
    ``embedding_ce``'s count of correct targets is not known here (see :class:`TrainerLoss`)."""
    if num_items_in_batch is None:
        return None
    return Normalizers(torch.as_tensor(num_items_in_batch, device=device), None)


class _Scale(NamedTuple):
    """One training micro-batch's counts (0-dim, summed over the ranks), for its backward."""

    before: Tensor  # correct targets of this step whose gradients .grad already holds
    count: Tensor  # correct targets of this micro-batch
    divisor: Tensor  # what the forward divided embedding_ce's sum by
    n_items: Tensor  # num_items_in_batch


class TrainerLoss:
    """The scalar loss of one (micro-)batch, as the Trainer wants it.

    Args:
        criterion: from :func:`build_criterion`; the model keeps one ``TrainerLoss`` for it.

    Shape:
        ``(logits (N, C), aux_logits (N, C) or None, labels (N,), num_items_in_batch=None)``
        -> a 0-dim loss. ``labels`` may hold ``-100`` (ignored).

    Without ``num_items_in_batch``: the criterion's own mean over this batch. With it, each
    term's sum is divided by a whole-step count (:class:`~labelemb.normalizers.Normalizers`):
    ``ce``, ``soft_ce``, ``aux_ce``, ``ls``, ``ols`` by ``num_items_in_batch``; ``aux_hinge``
    is summed (the preset): all exactly the big batch's gradients.

    ``embedding_ce`` (classification preset) is divided by ``S``, the targets the second head
    gets right in the whole step, known only after the step's last forward. Only this term
    reaches the label embedding (its soft targets are detached), so its exact gradient is the
    sum of the micro-batches' raw gradients over ``S``. The Trainer clips gradients and DDP
    reduces them right after the last backward, so the embedding's ``.grad`` is kept right
    after *every* backward: divided by ``S_k``, the correct targets counted so far.

    * Forward: this micro-batch's counts, summed over the ranks (one ``all_reduce`` of three
      numbers while training under ``torch.distributed``; every rank runs the same number of
      micro-batches). ``embedding_ce``'s sum is divided by ``d_k = c_k * N / n_k`` (``c_k``
      right of ``n_k`` valid, ``N = num_items_in_batch``): the micro-batch's mean times its
      share of the targets, so the logged loss reads as one batch's.
    * Backward: a hook on the embedding's output, which runs before the parameters accumulate
      their gradient (and so before DDP reduces it), rescales the ``.grad`` already there by
      ``S_{k-1} / S_k`` and the incoming gradient by ``d_k / S_k``.
    * A step starts when no rank holds a non-zero embedding gradient (``zero_grad``), seen at
      the forward. Eval-mode or ``no_grad`` forwards count nothing; a forward never
      backpropagated counts nothing. Each forward's backward must come before the next
      forward's (the Trainer's order).

    This is the deferred division of :func:`~labelemb.normalizers.finish_deferred_embedding_ce`
    (the training loop's and the chunked loss's), spread over the backward passes: the Trainer
    offers no hook between the last backward and the clipping, so it cannot divide once at the
    end. The divisors of ``S_{k-1}``, ``S_k`` and ``d_k`` are all the one rule,
    :func:`~labelemb.normalizers.embedding_ce_divisor`.

    The factors are ratios of counts, so any constant on the loss (the Trainer's world size, a
    loss scale) or on the reduction (DDP's average) passes through them. Under DDP the other
    terms are exact only with ``average_tokens_across_devices`` (the default; without it the
    Trainer averages the ranks' means, and the counts summed here over the ranks make the
    embedding's gradient ``1 / world_size`` of that convention's).
    """

    def __init__(self, criterion: nn.Module) -> None:
        self.criterion = criterion
        self.exact = (isinstance(criterion, LabelEmbeddingLoss)
                      and criterion.embedding.trainable and divides_by_correct(criterion.options))
        self.counted: Tensor | None = None  # S_k: correct targets of this step in .grad
        self._next: _Scale | None = None  # the scale the embedding's next output takes
        if self.exact:
            criterion.embedding.register_forward_hook(self._on_embedding_output)

    def __call__(self, logits: Tensor, aux_logits: Tensor | None, labels: Tensor,
                 num_items_in_batch: Tensor | int | None = None) -> Tensor:
        normalizers = step_normalizers(num_items_in_batch, logits.device)
        if normalizers is None:
            return self.criterion(logits, aux_logits, labels).loss
        if self.exact and aux_logits is not None:  # (without, the criterion says what is wrong)
            normalizers = normalizers._replace(n_correct=self._embedding_divisor(
                aux_logits, labels, normalizers.n_valid))
        try:
            return self.criterion(logits, aux_logits, labels, normalizers=normalizers).loss
        finally:
            self._next = None

    def _embedding_divisor(self, aux_logits: Tensor, labels: Tensor, n_items: Tensor) -> Tensor:
        """``d_k``, a 0-dim float: this micro-batch's correct count scaled to the step's
        ``n_items`` targets. While training, counts over all ranks, and arms the backward."""
        options, params = self.criterion.options, list(self.criterion.embedding.parameters())
        right = trains_embedding(aux_logits, labels, options).sum()
        valid = (labels != options.ignore_index).sum()
        training = self.criterion.training and torch.is_grad_enabled()
        if training:
            grads = [p.grad.ne(0).any() for p in params if p.grad is not None]
            started = (torch.stack(grads).any() if grads
                       else torch.zeros((), dtype=torch.bool, device=right.device))
            counts = torch.stack([right, valid, started.to(right)])
            if rank_and_world()[1] > 1:
                dist.all_reduce(counts)
            right, valid, started = counts
        divisor = right * n_items.float() / valid.clamp(min=1)
        if training:
            before = (torch.zeros_like(right) if self.counted is None
                      else self.counted.to(right) * (started > 0))
            self._next = _Scale(before, right, divisor, n_items)
        return divisor

    def _on_embedding_output(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        """The embedding's forward hook: its output ``e`` ``(M, C)`` of a training call gets
        this micro-batch's backward hook (only ``embedding_ce``'s gradient flows into ``e``)."""
        scale, self._next = self._next, None
        if scale is not None and output.requires_grad:
            output.register_hook(partial(self._rescale, scale))

    def _rescale(self, scale: _Scale, grad: Tensor) -> Tensor:
        """Backward, ``grad`` ``(M, C)`` w.r.t. ``e``: ``.grad`` and it divided by ``S_k``."""
        total = scale.before + scale.count
        options = self.criterion.options

        def divisor(n_correct: Tensor) -> Tensor:  # embedding_ce's, as the loss applies it
            return embedding_ce_divisor(scale.n_items, n_correct, options, torch.float32)

        new = divisor(total)
        for p in self.criterion.embedding.parameters():
            if p.grad is not None:
                p.grad.mul_((divisor(scale.before) / new).to(p.grad.dtype))
        self.counted = total
        return grad * (divisor(scale.divisor) / new).to(grad.dtype)
