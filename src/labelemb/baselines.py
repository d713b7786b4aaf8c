"""Baselines with the same call shape as :class:`~labelemb.LabelEmbeddingLoss`.

Every criterion here is called as ``criterion(logits, aux_logits, target)`` and returns a
:class:`~labelemb.functional.LossOutput`; ``aux_logits`` is accepted and ignored, so one
training loop serves every mode.

* :class:`LabelSmoothingLoss`: cross-entropy with uniform label smoothing; ``smoothing=0`` is
  the plain cross-entropy baseline.
* :class:`OnlineLabelSmoothingLoss`: Online Label Smoothing (Zhang et al., 2021).

Both take ``normalizers=`` / ``process_group=`` as the label embedding loss does: a call on one
part of a batch divides by the whole batch's number of non-ignored targets and returns its
share of the batch's loss (:mod:`labelemb.normalizers`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_inputs, check_values
from .functional import LossOutput, _float, rows
from .normalizers import Normalizers, per_target, whole_batch_counts

__all__ = ["LabelSmoothingLoss", "OnlineLabelSmoothingLoss", "baseline_criterion"]


def _check(logits: Tensor, target: Tensor, ignore_index: int, validate: bool,
           num_classes: int | None = None) -> None:
    """The loss's own input checks: named errors before arithmetic, values if ``validate``."""
    check_inputs(logits, target, num_classes=num_classes)
    if validate:
        flat = target.reshape(-1)
        check_values(flat, flat != ignore_index, logits=rows(logits))


def _whole_batch_valid(target: Tensor, ignore_index: int, normalizers: Normalizers | None,
                       process_group: dist.ProcessGroup | None) -> Tensor:
    """The whole batch's number of non-ignored targets (this call's, if it is the batch)."""
    n_valid = (target != ignore_index).sum()
    return whole_batch_counts(n_valid, n_valid, normalizers, process_group)[0]


class LabelSmoothingLoss(nn.Module):
    """``F.cross_entropy(..., label_smoothing=smoothing)`` in the common call shape.

    Shape: logits ``(N, C)`` or ``(N, C, d1, ...)``; target ``(N)`` or ``(N, d1, ...)``.
    """

    def __init__(
        self, smoothing: float = 0.1, *, ignore_index: int = -100, reduction: str = "mean",
        validate: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.smoothing = float(smoothing)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.validate = validate

    def forward(self, logits: Tensor, aux_logits: Tensor | None, target: Tensor, *,
                normalizers: Normalizers | None = None,
                process_group: dist.ProcessGroup | None = None) -> LossOutput:
        _check(logits, target, self.ignore_index, self.validate)
        part = self.reduction == "mean" and (normalizers, process_group) != (None, None)
        loss = F.cross_entropy(
            _float(logits), target, ignore_index=self.ignore_index,
            reduction="sum" if part else self.reduction, label_smoothing=self.smoothing,
        )
        if part:  # this part's share: the sum over the whole batch's count
            n_valid = _whole_batch_valid(target, self.ignore_index, normalizers, process_group)
            loss = loss / per_target(n_valid, loss.dtype)
        return LossOutput(loss, {"ce": loss.detach()})

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}"


class OnlineLabelSmoothingLoss(nn.Module):
    """Online Label Smoothing (Zhang et al., 2021): class-wise soft labels from the model.

    During an epoch, the predicted distributions of correctly classified training samples are
    accumulated per gold class; :meth:`next_epoch` turns the sums into the soft-label matrix
    used in the next epoch. The loss is ``alpha * CE + (1 - alpha) * H(S[y], softmax(z))``.

    Call :meth:`next_epoch` once per epoch, after the last training batch (not per batch).
    Under ``torch.distributed`` the statistics are summed across ranks there, so every rank
    uses the same soft labels. A class with no correct prediction in an epoch keeps its
    previous soft label.

    Args:
        num_classes: ``C``.
        alpha: weight of the hard cross-entropy (0.5 in the paper).
        smoothing: uniform smoothing of the initial soft labels (first epoch).
    """

    soft_labels: Tensor
    _sum: Tensor
    _count: Tensor

    def __init__(
        self, num_classes: int, alpha: float = 0.5, smoothing: float = 0.1, *,
        ignore_index: int = -100, validate: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.num_classes = num_classes
        self.alpha = float(alpha)
        self.ignore_index = ignore_index
        self.validate = validate
        init = torch.full((num_classes, num_classes), smoothing / (num_classes - 1))
        init.fill_diagonal_(1.0 - smoothing)
        self.register_buffer("soft_labels", init)
        self.register_buffer("_sum", torch.zeros(num_classes, num_classes))
        self.register_buffer("_count", torch.zeros(num_classes))

    def forward(self, logits: Tensor, aux_logits: Tensor | None, target: Tensor, *,
                normalizers: Normalizers | None = None,
                process_group: dist.ProcessGroup | None = None) -> LossOutput:
        _check(logits, target, self.ignore_index, self.validate, self.num_classes)
        z = _float(rows(logits))
        t = target.reshape(-1)
        valid = t != self.ignore_index
        t_safe = t.masked_fill(~valid, 0)
        log_p = F.log_softmax(z, dim=1)
        ce = -log_p.gather(1, t_safe[:, None]).squeeze(1)
        soft = -(self.soft_labels[t_safe] * log_p).sum(1)
        n = per_target(_whole_batch_valid(t, self.ignore_index, normalizers, process_group),
                       z.dtype)
        ce = torch.where(valid, ce, 0.0).sum() / n
        soft = torch.where(valid, soft, 0.0).sum() / n
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                correct = (z.argmax(1) == t_safe) & valid
                idx = t_safe[correct]
                # index_add_, not `s[idx] += p`: duplicate indices must all count.
                self._sum.index_add_(0, idx, log_p[correct].exp())
                self._count.index_add_(0, idx, torch.ones_like(idx, dtype=self._count.dtype))
        loss = self.alpha * ce + (1.0 - self.alpha) * soft
        return LossOutput(loss, {"ce": ce.detach(), "ols_soft_ce": soft.detach()})

    @torch.no_grad()
    def next_epoch(self) -> None:
        """Swap in the soft labels accumulated this epoch and start a new accumulation."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self._sum)
            dist.all_reduce(self._count)
        seen = self._count > 0
        self.soft_labels[seen] = self._sum[seen] / self._count[seen, None]
        self._sum.zero_()
        self._count.zero_()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, alpha={self.alpha}"


def baseline_criterion(mode: str, num_classes: int, *, smoothing: float, ols_alpha: float,
                       ignore_index: int = -100) -> nn.Module:
    """The loss of a mode without a label embedding: ``baseline``, ``ls`` (``smoothing``) or
    ``ols`` (``ols_alpha``), by the training modes' names (``labelemb train --modes``)."""
    if mode == "ls":
        return LabelSmoothingLoss(smoothing, ignore_index=ignore_index)
    if mode == "ols":
        return OnlineLabelSmoothingLoss(num_classes, alpha=ols_alpha, ignore_index=ignore_index)
    return LabelSmoothingLoss(0.0, ignore_index=ignore_index)
