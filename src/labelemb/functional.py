"""The label embedding network's loss, written once (paper, eq. 14; eq. 17; Appendix A).

With ``o1 = logits`` (the main head), ``o2 = aux_logits`` (the second head, on detached
features), ``e = embedding(y)`` the label-embedding logits of the target, ``'`` a softmax and
``''`` a softmax at temperature ``tau``, the loss is a weighted sum of five terms:

================  ===============================================  ===========================
name              paper (eq. 14)                                   gradient reaches
================  ===============================================  ===========================
``ce``            ``H(y, o1')``, weight ``beta``                   backbone, main head
``soft_ce``       ``H(e', o1')``, ``e'`` detached, weight ``1-beta``  backbone, main head
``aux_ce``        ``H(y, o2')``                                    second head
``aux_hinge``     ``max(0, o2'_y - alpha)`` (eq. 12; or squared,   second head
                  or ``|o2'_y - alpha|``)
``embedding_ce``  ``H(o2'', e')``, ``o2''`` detached, only where   the label embedding
                  ``argmax o2 == y`` (Appendix A)
================  ===============================================  ===========================

With a frozen embedding (eq. 17) only ``ce`` and ``soft_ce`` remain and no second head is
needed. The default options are the authors' classification code; ``seq2seq`` in
:data:`PRESETS` is their sequence code (docs/METHOD.md says where code and paper differ).

Everything below is plain PyTorch: autograd gives the gradients, and ``torch.compile``
compiles it whole. :mod:`labelemb.chunked` runs the same :func:`masked_terms` chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, distributed as dist, nn

from .checks import check_embedding, check_inputs, check_values
from .normalizers import Normalizers, divides_by_correct, term_divisors, whole_batch_counts

__all__ = ["LossOptions", "LossOutput", "PRESETS", "TERMS", "label_embedding_loss", "masked_terms",
           "term_divisors", "term_weights", "weighted_sum", "check_inputs", "check_embedding",
           "check_values", "rows", "label_rows", "trains_embedding", "divides_by_correct",
           "Normalizers"]

Reduction = Literal["mean", "sum", "none"]
Hinge = Literal["l1", "l2", "abs"]

#: The five terms, in the order they are reported.
TERMS = ("ce", "soft_ce", "aux_ce", "aux_hinge", "embedding_ce")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number_in(value: object, low: float, high: float) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and low <= value <= high)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class LossOptions:
    """The loss's settings. Each default is the authors' classification code.

    Attributes:
        beta: weight of ``ce``; ``soft_ce`` gets ``1 - beta``. ``None``: both weigh 1 (the
            authors' seq2seq code).
        tau: temperature of the second head's output that the embedding is fitted to (eq. 10).
        alpha: hinge threshold on the second head's probability of the gold label (eq. 12).
        hinge: ``"l1"`` ``max(0, p - alpha)``, ``"l2"`` its square, ``"abs"`` ``|p - alpha|``
            (two-sided, the authors' seq2seq code).
        hinge_reduction: with ``reduction="mean"``, the hinge is summed over targets
            (``"sum"``, the authors' classification code) or averaged (``"mean"``).
        mask_wrong: the embedding learns only from targets the second head gets right
            (Appendix A).
        embedding_normalizer: with ``reduction="mean"``, ``embedding_ce`` is divided by the
            number of targets the second head gets right (``"correct"``) or of all
            non-ignored ones (``"valid"``, the authors' seq2seq code).
        soft_target_temperature: the main head's soft target is ``softmax(e / T)`` with
            this ``T``. 1 is the paper's ``e' = softmax(e)``; below 1 sharpens the target
            towards the gold label, which leaves the main head less under-confident (an option
            of ours, measured in docs/RESULTS.md). The embedding still learns ``softmax(e)``.
        warmup_steps: training calls before ``soft_ce`` counts (the authors' seq2seq code
            waits 20,000 updates); before that it is reported but weighs 0.
        ignore_index: targets with this value add nothing to any term or gradient.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per target, in the target's shape).
        validate: check that targets are in range and that logits and embedding rows are
            finite, ignored rows included (one device sync per call). Without it a target out
            of range is clamped into it (never a fault) and a NaN flows into the loss.
    """

    beta: float | None = 0.5
    tau: float = 2.0
    alpha: float = 0.9
    hinge: Hinge = "l1"
    hinge_reduction: Literal["sum", "mean"] = "sum"
    mask_wrong: bool = True
    embedding_normalizer: Literal["correct", "valid"] = "correct"
    soft_target_temperature: float = 1.0
    warmup_steps: int = 0
    ignore_index: int = -100
    reduction: Reduction = "mean"
    validate: bool = True

    def __post_init__(self) -> None:
        if self.beta is not None and not _number_in(self.beta, 0.0, 1.0):
            raise ValueError(f"beta must be in [0, 1] or None, got {self.beta!r}")
        if not _number_in(self.alpha, 0.0, 1.0):
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if not (_number_in(self.tau, 0.0, float("inf")) and self.tau > 0):
            raise ValueError(f"tau must be > 0, got {self.tau!r}")
        if not (_number_in(self.soft_target_temperature, 0.0, float("inf"))
                and self.soft_target_temperature > 0):
            raise ValueError("soft_target_temperature must be > 0, got "
                             f"{self.soft_target_temperature!r}")
        _check_choice("hinge", self.hinge, ("l1", "l2", "abs"))
        _check_choice("hinge_reduction", self.hinge_reduction, ("sum", "mean"))
        _check_choice("embedding_normalizer", self.embedding_normalizer, ("correct", "valid"))
        _check_choice("reduction", self.reduction, ("mean", "sum", "none"))
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if not _is_int(self.ignore_index):
            raise ValueError(f"ignore_index must be an int, got {self.ignore_index!r}")
        for name in ("mask_wrong", "validate"):  # "no" from a config file is truthy
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")


#: The authors' published settings. ``seq2seq`` differs from their code in one way on purpose:
#: padding (``ignore_index``) is excluded from every term, not only from the two ``ce`` terms.
PRESETS: dict[str, LossOptions] = {
    "classification": LossOptions(),
    "seq2seq": LossOptions(beta=None, hinge="abs", hinge_reduction="mean",
                           embedding_normalizer="valid", warmup_steps=20_000),
}


class LossOutput(NamedTuple):
    """``loss`` to backpropagate and its named, unweighted, detached ``terms`` for logging.

    Unpacks as ``loss, terms = criterion(...)``. With ``reduction="none"`` the loss and every
    term have the target's shape.
    """

    loss: Tensor
    terms: dict[str, Tensor]


def label_embedding_loss(
    logits: Tensor, aux_logits: Tensor | None, target: Tensor, embedding: nn.Module, *,
    step: int | Tensor | None = None,
    normalizers: Normalizers | None = None, process_group: dist.ProcessGroup | None = None,
    **options: object,
) -> LossOutput:
    """The label embedding network loss (eq. 14), or eq. 17 with a frozen embedding.

    Args:
        logits: main-head logits ``o1``, ``(N, C)`` or ``(N, C, d1, ...)``.
        aux_logits: second-head logits ``o2`` (on detached features), same shape; ``None``
            with a :class:`~labelemb.FixedLabelEmbedding` (eq. 17).
        target: class indices, ``(N)`` or ``(N, d1, ...)``.
        embedding: a labelemb embedding: maps ``(M,)`` targets to ``(M, C)`` logits ``e``.
        step: training calls so far (an int or a 0-dim tensor); needed with ``warmup_steps``.
        normalizers, process_group: for one part of a batch (a shard, a micro-batch): the
            batch's counts, given or summed over the ranks (:mod:`labelemb.normalizers`).
        **options: the fields of :class:`LossOptions`.

    Returns:
        :class:`LossOutput` ``(loss, terms)``.
    """
    return compute_loss(logits, aux_logits, target, embedding, LossOptions(**options), step,
                        normalizers, process_group)


def compute_loss(logits: Tensor, aux_logits: Tensor | None, target: Tensor,
                 embedding: nn.Module, options: LossOptions,
                 step: int | Tensor | None = None, normalizers: Normalizers | None = None,
                 process_group: dist.ProcessGroup | None = None) -> LossOutput:
    """:func:`label_embedding_loss` with its options already checked (the module's path)."""
    check_inputs(logits, target, aux_logits=aux_logits, embedding=embedding)
    terms, valid, correct = masked_terms(rows(logits), rows(aux_logits), target.reshape(-1),
                                         embedding, options)
    weights = term_weights(options, step)
    if options.reduction == "none":
        loss = weighted_sum(terms, weights)
        shape = target.shape
        return LossOutput(loss.view(shape), {k: v.detach().view(shape) for k, v in terms.items()})
    counts = whole_batch_counts(valid.sum(), correct.sum(), normalizers, process_group)
    divisors = term_divisors(*counts, options, terms["ce"].dtype)
    sums = {k: v.sum() / divisors[k] for k, v in terms.items()}
    loss = weighted_sum(sums, weights)
    return LossOutput(loss, {k: v.detach() for k, v in sums.items()})


def masked_terms(logits: Tensor, aux_logits: Tensor | None, target: Tensor,
                 embedding: nn.Module, options: LossOptions, label_logits: Tensor | None = None,
                 label_index: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """Every term for every target row, zero where a target is ignored or masked.

    Args:
        logits, aux_logits: ``(M, C)`` rows (``aux_logits`` may be ``None``).
        target: ``(M,)`` class indices.
        label_logits: ``embedding(label_rows(target, C))`` when the caller has made it already
            (the chunked loss, which backpropagates into the embedding itself); with
            ``label_index (M,)``, one row per distinct label, row ``label_index[i]`` for target i.

    Returns:
        ``(terms, valid, correct)``: ``{name: (M,)}`` unweighted and unreduced, the ``(M,)``
        mask of non-ignored targets and the mask of targets that train the embedding.
    """
    valid = target != options.ignore_index
    y = label_rows(target, logits.shape[1])
    o1 = _float(logits)
    e = _float(embedding(y) if label_logits is None else label_logits)  # e_y, (M, C)
    if options.validate:
        check_values(target, valid, logits=o1, aux_logits=aux_logits, embedding=e)
    log_p1 = F.log_softmax(o1, dim=1)
    log_q, probs = F.log_softmax(e, dim=1), soft_target(e.detach(), options)  # log e', e'
    if label_index is not None:  # one row per label -> one per target
        log_q, probs = log_q.index_select(0, label_index), probs.index_select(0, label_index)
    terms = {
        "ce": -log_p1.gather(1, y[:, None]).squeeze(1),  # H(y, o1')
        # H(e', o1'): the soft target e' is detached, the embedding learns only from
        # embedding_ce; temperature 1 in the authors' code (soft_target_temperature).
        "soft_ce": -(probs * log_p1).sum(1),
    }
    correct = valid
    if aux_logits is not None:
        o2 = _float(aux_logits)
        log_p2_y = F.log_softmax(o2, dim=1).gather(1, y[:, None]).squeeze(1)
        terms["aux_ce"] = -log_p2_y  # H(y, o2')
        terms["aux_hinge"] = _hinge(log_p2_y.exp() - options.alpha, options.hinge)  # eq. 12
        if getattr(embedding, "trainable", True):
            # o2'' = softmax(o2 / tau), detached: the second head is not trained to fit e.
            soft_aux = F.softmax(o2.detach() / options.tau, dim=1)
            terms["embedding_ce"] = -(soft_aux * log_q).sum(1)  # H(o2'', e')
            correct = trains_embedding(o2, target, options)
    # where, not a product: an ignored row's inf or nan never becomes 0 * inf = nan.
    masked = {k: torch.where(correct if k == "embedding_ce" else valid, v, 0.0)
              for k, v in terms.items()}
    return masked, valid, correct


def soft_target(e: Tensor, options: LossOptions) -> Tensor:
    """``e' = softmax(e / T)``, ``T = soft_target_temperature`` (1: the paper's). ``(M, C)``."""
    t = options.soft_target_temperature
    return F.softmax(e if t == 1 else e / t, dim=1)


def trains_embedding(aux_logits: Tensor, target: Tensor, options: LossOptions) -> Tensor:
    """``(M,)`` mask of the ``(M,)`` targets ``embedding_ce`` learns from (``aux_logits``
    ``(M, C)``): not ignored and, with ``mask_wrong``, those the second head gets right
    (Appendix A). Its sum is a part's ``n_correct`` (:class:`Normalizers`)."""
    valid = target != options.ignore_index
    if not options.mask_wrong:  # no argmax: a pass over (M, C) that nothing would read
        return valid
    return valid & (aux_logits.detach().argmax(1) == label_rows(target, aux_logits.shape[1]))


def label_rows(target: Tensor, num_classes: int) -> Tensor:
    """The class each target looks up in the embedding. Any in-range class serves ignored
    (and, while validating, bad) targets: they are masked out or reported, and an index in
    range can never fault."""
    return target.long().clamp(0, num_classes - 1)


def rows(x: Tensor | None) -> Tensor | None:
    """``(N, C, d1, ...)`` logits -> ``(N * d1 * ..., C)`` rows; ``(N, C)`` stays."""
    return x if x is None or x.dim() == 2 else x.movedim(1, -1).flatten(0, -2)


def _hinge(gap: Tensor, kind: str) -> Tensor:
    """The hinge of eq. 12 on ``gap = o2'_y - alpha``: keeps the second head from one-hot."""
    if kind == "l1":
        return F.relu(gap)
    if kind == "l2":
        return F.relu(gap).square()
    return gap.abs()


def _float(x: Tensor) -> Tensor:
    """fp16/bf16 -> float32 (sums of log-probabilities overflow in fp16); float32/64 stay."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def term_weights(options: LossOptions, step: int | Tensor | None = None
                 ) -> dict[str, float | Tensor]:
    """Each term's weight in the loss: the beta split, and ``soft_ce`` off during warm-up.

    With a tensor ``step`` the warm-up switch is a tensor too, so a compiled step never
    branches (or recompiles) on the count.
    """
    w_ce, w_soft = (1.0, 1.0) if options.beta is None else (options.beta, 1.0 - options.beta)
    if options.warmup_steps > 0:
        if step is None:
            raise ValueError("step is required when warmup_steps > 0")
        w_soft = w_soft * (step >= options.warmup_steps)
    return {"ce": w_ce, "soft_ce": w_soft, "aux_ce": 1.0, "aux_hinge": 1.0, "embedding_ce": 1.0}


def weighted_sum(terms: dict[str, Tensor], weights: dict[str, float | Tensor]) -> Tensor:
    """The loss (eq. 14): each term times its weight, summed."""
    return sum(weights[k] * v for k, v in terms.items())
