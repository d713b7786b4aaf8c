"""Functional form of the label embedding loss (paper, eq. 14; Appendices A and C).

With ``z1 = logits`` (o1), ``z2 = aux_logits`` (o2, computed on detached features), ``e`` the
label-embedding logits of the target and ``'`` a softmax, the five terms are

====================  ==========================================  =======================
name                  paper                                       gradient reaches
====================  ==========================================  =======================
``ce``                ``H(y, z1')``                               backbone, main head
``soft_ce``           ``H(e', z1')``, ``e'`` detached              backbone, main head
``aux_ce``            ``H(y, z2')``                               auxiliary head
``aux_hinge``         ``max(0, z2'_y - alpha)`` (L1, L2 or abs)   auxiliary head
``embedding_ce``      ``H(z2'', e')``, ``z2'' = softmax(z2/tau)`` embedding only
                      detached, only where ``argmax z2 == y``
====================  ==========================================  =======================

The defaults are the authors' classification code (official-code.md): ``beta = 0.5`` splits
``ce``/``soft_ce``, the soft target uses temperature 1, the hinge is summed over the batch and
``embedding_ce`` is averaged over the samples the auxiliary head gets right.
"""

from __future__ import annotations

import math

from collections.abc import Iterator, Mapping
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import native as _native
from .embedding import LabelEmbedding

__all__ = [
    "LossOutput", "StackedTerms", "label_embedding_loss", "check_classification_inputs",
    "check_options",
]

Reduction = Literal["mean", "sum", "none"]
Hinge = Literal["l1", "l2", "abs"]
Backend = Literal["auto", "native", "autograd"]

_REDUCTIONS = ("mean", "sum", "none")
_HINGES = ("l1", "l2", "abs")
_HINGE_REDUCTIONS = ("sum", "mean")
_EMBEDDING_NORMALIZERS = ("correct", "valid")
_BACKENDS = ("auto", "native", "autograd")


class LossOutput(NamedTuple):
    """``loss`` to backpropagate and its named, detached ``terms`` for logging.

    Unpacks as ``loss, terms = criterion(...)``. With ``reduction="none"`` both the loss and
    every term have the target's shape.
    """

    loss: Tensor
    terms: Mapping[str, Tensor]


class StackedTerms(Mapping[str, Tensor]):
    """Read-only ``{name: term}`` over one stacked ``(K, ...)`` tensor, as the compiled and the
    chunked loss return them; the per-term views are made on first access, so a step that
    never reads the terms pays for none. ``dict(terms)`` gives a plain dict."""

    __slots__ = ("_names", "_stacked", "_views")

    def __init__(self, names: tuple[str, ...], stacked: Tensor) -> None:
        self._names, self._stacked = names, stacked
        self._views: dict[str, Tensor] | None = None

    def _dict(self) -> dict[str, Tensor]:
        if self._views is None:
            self._views = dict(zip(self._names, self._stacked.unbind()))
        return self._views

    def __getitem__(self, name: str) -> Tensor:
        return self._dict()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __repr__(self) -> str:
        return repr(self._dict())


def check_classification_inputs(
    logits: Tensor,
    target: Tensor,
    *,
    aux_logits: Tensor | None = None,
    num_classes: int | None = None,
    ignore_index: int = -100,
    validate: bool = True,
) -> None:
    """Raise a ``TypeError``/``ValueError`` naming the argument when inputs are malformed.

    Shape and dtype checks are free and always run. With ``validate`` it also checks, in one
    device sync, that targets are in ``[0, C)`` (or ``ignore_index``) and logits are finite.
    """
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a Tensor, got {type(logits).__name__}")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a Tensor, got {type(target).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got {logits.dtype}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"target must hold integer class indices (torch.long), got {target.dtype}; "
            "soft targets come from the label embedding, not from the caller"
        )
    if logits.dim() < 2:
        raise ValueError(
            f"logits must be (N, C) or (N, C, d1, ...), got shape {tuple(logits.shape)}"
        )
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits shape "
            f"{tuple(logits.shape)}: expected target of shape {expected}"
        )
    if aux_logits is not None:
        if not isinstance(aux_logits, Tensor) or not aux_logits.is_floating_point():
            raise TypeError("aux_logits must be a floating Tensor")
        if aux_logits.shape != logits.shape:
            raise ValueError(
                f"aux_logits shape {tuple(aux_logits.shape)} does not match logits shape "
                f"{tuple(logits.shape)}"
            )
    num_logit_classes = logits.shape[1]
    if num_classes is not None and num_logit_classes != num_classes:
        raise ValueError(
            f"logits have {num_logit_classes} classes (dim 1) but the embedding has "
            f"{num_classes}; for (N, T, C) sequence logits flatten to (N*T, C) or use "
            "logits.transpose(1, 2)"
        )
    if not validate:
        return
    if target.numel() == 0:
        return
    # One reduction per tensor and one sync for all: the smallest and largest target that is
    # not ignore_index, and each logits tensor's min and max (aminmax propagates NaN, so a
    # tensor is finite iff both are). Fewer small ops than isfinite().all() per tensor.
    named = {"logits": logits, "aux_logits": aux_logits}
    named = {k: v for k, v in named.items() if v is not None}
    in_range = torch.where(target != ignore_index, target, 0)
    extremes = torch.cat([torch.stack(torch.aminmax(v)).double()
                          for v in (in_range, *named.values())]).tolist()
    low, high = extremes[:2]
    if low < 0 or high >= num_logit_classes:
        bad_target = ((target < 0) | (target >= num_logit_classes)) & (target != ignore_index)
        value = target[bad_target].flatten()[0].item()
        raise ValueError(
            f"target has class index {value} outside [0, {num_logit_classes}) "
            f"(and not ignore_index={ignore_index})"
        )
    for i, name in enumerate(named):
        if not all(math.isfinite(v) for v in extremes[2 + 2 * i:4 + 2 * i]):
            raise ValueError(f"{name} contain NaN or inf (pass validate=False to skip this check)")


def _full_precision(x: Tensor) -> Tensor:
    """fp16/bf16 -> float32; float32/float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _as_rows(x: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N*d1*..., C)."""
    if x.dim() == 2:
        return x
    return x.movedim(1, -1).reshape(-1, x.shape[1])


def label_embedding_loss(
    logits: Tensor,
    aux_logits: Tensor | None,
    target: Tensor,
    embedding: nn.Module,
    *,
    beta: float | None = 0.5,
    tau: float = 2.0,
    alpha: float = 0.9,
    hinge: Hinge = "l1",
    hinge_reduction: Literal["sum", "mean"] = "sum",
    mask_wrong: bool = True,
    embedding_normalizer: Literal["correct", "valid"] = "correct",
    warmup_steps: int = 0,
    step: int | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    validate: bool = True,
    backend: Backend = "auto",
) -> LossOutput:
    """The label embedding network loss (eq. 14), or eq. 17 with a frozen embedding.

    Args:
        logits: main-head logits ``z1``, ``(N, C)`` or ``(N, C, d1, ...)``.
        aux_logits: auxiliary-head logits ``z2`` on detached features, same shape; ``None``
            with a :class:`~labelemb.FixedLabelEmbedding` (eq. 17).
        target: class indices ``(N)`` or ``(N, d1, ...)``.
        embedding: maps ``(M,)`` targets to ``(M, C)`` label-embedding logits.
        beta: weight of ``ce``; ``soft_ce`` gets ``1 - beta``. ``None``: both weight 1 (the
            authors' seq2seq code).
        tau: temperature of the auxiliary output that the embedding is fitted to (eq. 10).
        alpha: hinge threshold on the auxiliary head's gold probability (eq. 12).
        hinge: ``"l1"`` ``max(0, p - alpha)``, ``"l2"`` its square, ``"abs"`` ``|p - alpha|``
            (two-sided, as in the authors' seq2seq code).
        hinge_reduction: with ``reduction="mean"``, the hinge is summed over targets
            (``"sum"``, the authors' classification code) or averaged (``"mean"``).
        mask_wrong: the embedding learns only from targets the auxiliary head gets right
            (Appendix A).
        embedding_normalizer: with ``reduction="mean"``, ``embedding_ce`` is divided by the
            number of correctly predicted targets (``"correct"``) or of all non-ignored ones
            (``"valid"``, the authors' seq2seq code).
        warmup_steps, step: ``soft_ce`` is off until ``step >= warmup_steps``.
        ignore_index: targets with this value add nothing to any term or gradient.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-target, target-shaped).
        validate: check target range and finiteness of the logits (one sync).
        backend: ``"autograd"`` runs the code below, term by term (the definition; supports
            double backward). ``"native"`` computes the loss and its gradients in one compiled
            call (:mod:`labelemb.native`: CPU, float32/float64, small batches; same results,
            a fraction of the time on small models). ``"auto"`` (default) takes ``"native"``
            where it applies and is built, else ``"autograd"``.

    Returns:
        :class:`LossOutput` ``(loss, terms)``; ``terms`` holds the unweighted, detached terms
        that were computed.
    """
    trainable = getattr(embedding, "trainable", True)
    num_classes = getattr(embedding, "num_classes", None)
    check_options(beta=beta, tau=tau, alpha=alpha, hinge=hinge, hinge_reduction=hinge_reduction,
                  embedding_normalizer=embedding_normalizer, reduction=reduction,
                  warmup_steps=warmup_steps, backend=backend)
    if aux_logits is None and trainable:
        raise ValueError(
            "aux_logits is None but the embedding is trainable: pass the head's second output "
            "(LabelEmbeddingHead returns both) or use a FixedLabelEmbedding (eq. 17)"
        )
    if warmup_steps > 0 and step is None:
        raise ValueError("step is required when warmup_steps > 0")
    # The compiled path checks targets and logits itself, in its first loop over the rows.
    use_native = backend != "autograd" and _native.supports(logits, aux_logits)
    if backend == "native" and not use_native:
        # A malformed input gets its own error first.
        check_classification_inputs(logits, target, aux_logits=aux_logits,
                                    num_classes=num_classes, validate=False)
        raise ValueError(
            "backend='native' needs CPU float32/float64 logits of at most "
            f"{_native.MAX_ELEMENTS} elements and a built library ({_native.status()}); "
            "use backend='auto'"
        )
    check_classification_inputs(
        logits, target, aux_logits=aux_logits, num_classes=num_classes,
        ignore_index=ignore_index, validate=validate and not use_native,
    )
    soft_on = warmup_steps == 0 or step >= warmup_steps  # type: ignore[operator]
    w_ce, w_soft = (1.0, 1.0) if beta is None else (float(beta), 1.0 - float(beta))

    # float32 maths whatever the autocast dtype: sums of log-probabilities overflow in fp16.
    z1 = _full_precision(_as_rows(logits))
    t = target if target.dim() == 1 else target.reshape(-1)
    need_embedding_ce = aux_logits is not None and trainable
    if use_native:
        how = native_plan(soft_on, aux_logits is not None, need_embedding_ce, beta=beta, tau=tau,
                          alpha=alpha, hinge=hinge, hinge_reduction=hinge_reduction,
                          mask_wrong=mask_wrong, embedding_normalizer=embedding_normalizer,
                          ignore_index=ignore_index, reduction=reduction, validate=validate)
        z2 = None if aux_logits is None else _full_precision(_as_rows(aux_logits))
        return _native_loss(z1, z2, t, target, embedding, how)

    valid = t != ignore_index
    t_safe = t.masked_fill(~valid, 0).unsqueeze(1)  # any in-range index; masked out below

    terms: dict[str, Tensor] = {}
    log_p1 = F.log_softmax(z1, dim=1)
    terms["ce"] = -log_p1.gather(1, t_safe).squeeze(1)

    if soft_on or need_embedding_ce:
        log_e = F.log_softmax(_full_precision(embedding(t_safe.squeeze(1))), dim=1)  # log e'
    if soft_on:
        # Soft target softmax(E[y]) at temperature 1, detached: only embedding_ce trains E.
        terms["soft_ce"] = -(log_e.detach().exp() * log_p1).sum(1)

    n_correct = None
    if aux_logits is not None:
        z2 = _full_precision(_as_rows(aux_logits))
        log_p2_y = F.log_softmax(z2, dim=1).gather(1, t_safe).squeeze(1)
        terms["aux_ce"] = -log_p2_y
        gap = log_p2_y.exp() - alpha
        if hinge == "l1":
            terms["aux_hinge"] = F.relu(gap)
        elif hinge == "l2":
            terms["aux_hinge"] = F.relu(gap).square()
        else:
            terms["aux_hinge"] = gap.abs()
        if need_embedding_ce:
            soft_aux = F.softmax(z2.detach() / tau, dim=1)  # z2'' (eq. 10), detached
            emb = -(soft_aux * log_e).sum(1)
            if mask_wrong:
                correct = (z2.detach().argmax(1) == t_safe.squeeze(1)) & valid
                emb = torch.where(correct, emb, 0.0)
                n_correct = correct.sum()
            terms["embedding_ce"] = emb

    # Ignored targets contribute exactly zero (where, not multiply: no 0 * inf = nan).
    terms = {k: torch.where(valid, v, 0.0) for k, v in terms.items()}
    weights = {"ce": w_ce, "soft_ce": w_soft}

    if reduction == "none":
        per_target = sum(weights.get(k, 1.0) * v for k, v in terms.items())
        shape = target.shape
        return LossOutput(
            per_target.reshape(shape), {k: v.detach().reshape(shape) for k, v in terms.items()}
        )

    sums = {k: v.sum() for k, v in terms.items()}
    if reduction == "mean":
        # Divide by the number of real targets; clamp keeps an all-ignored batch at 0, not nan.
        n_valid = valid.sum().clamp(min=1).to(z1.dtype)
        for k in ("ce", "soft_ce", "aux_ce"):
            if k in sums:
                sums[k] = sums[k] / n_valid
        if "aux_hinge" in sums and hinge_reduction == "mean":
            sums["aux_hinge"] = sums["aux_hinge"] / n_valid
        if "embedding_ce" in sums:
            if embedding_normalizer == "correct" and n_correct is not None:
                sums["embedding_ce"] = sums["embedding_ce"] / (n_correct + 1e-8)
            else:
                sums["embedding_ce"] = sums["embedding_ce"] / n_valid
    total = sum(weights.get(k, 1.0) * v for k, v in sums.items())
    return LossOutput(total, {k: v.detach() for k, v in sums.items()})


def native_plan(soft_on: bool, has_aux: bool, embedding_ce: bool, *, beta: float | None,
                tau: float, alpha: float, hinge: str, hinge_reduction: str, mask_wrong: bool,
                embedding_normalizer: str, ignore_index: int, reduction: str, validate: bool,
                **_: object) -> _native.Plan:
    """The compiled loss's settings for these options (cached in :func:`labelemb.native.plan`)."""
    w_ce, w_soft = (1.0, 1.0) if beta is None else (float(beta), 1.0 - float(beta))
    return _native.plan(soft_on, has_aux, embedding_ce, w_ce, w_soft, tau, alpha, hinge,
                        hinge_reduction, mask_wrong, embedding_normalizer, ignore_index,
                        reduction, validate)


def _native_loss(z1: Tensor, z2: Tensor | None, t: Tensor, target: Tensor, embedding: nn.Module,
                 how: _native.Plan) -> LossOutput:
    """The same loss through :mod:`labelemb.native`, from rows ``z1, z2 (M, C)``, ``t (M,)``."""
    # A full embedding's matrix goes in whole and the kernel reads row y itself (for a reduced
    # loss; per-target losses need per-target rows, which backward scales one by one).
    by_target = (type(embedding) is LabelEmbedding and how.reduced
                 and embedding.weight.dtype == z1.dtype)
    if by_target:
        e = embedding.weight
    elif "soft_ce" in how.names or "embedding_ce" in how.names:
        # Any in-range index serves the ignored targets (the kernel skips them): one op, not a
        # mask. Out-of-range targets are reported by the kernel.
        e = embedding(t.clamp(0, z1.shape[1] - 1))
    else:
        e = None
    loss, stacked = _native.native_label_embedding_loss(z1, z2, e, t, how, by_target)
    if not how.reduced and target.dim() != 1:  # per-target values in target's shape
        loss, stacked = loss.view(target.shape), stacked.view(len(how.names), *target.shape)
    return LossOutput(loss, StackedTerms(how.names, stacked))


def check_options(*, beta, tau, alpha, hinge, hinge_reduction, embedding_normalizer, reduction,
                  warmup_steps, backend="auto", **_: object) -> None:
    """Raise ``ValueError`` naming the first option whose value is out of range."""
    if beta is not None and not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be in [0, 1] or None, got {beta!r}")
    if not float(tau) > 0.0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if hinge not in _HINGES:
        raise ValueError(f"hinge must be one of {_HINGES}, got {hinge!r}")
    if hinge_reduction not in _HINGE_REDUCTIONS:
        raise ValueError(f"hinge_reduction must be one of {_HINGE_REDUCTIONS}, got {hinge_reduction!r}")
    if embedding_normalizer not in _EMBEDDING_NORMALIZERS:
        raise ValueError(
            f"embedding_normalizer must be one of {_EMBEDDING_NORMALIZERS}, got "
            f"{embedding_normalizer!r}"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
