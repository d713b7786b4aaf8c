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

from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["LossOutput", "label_embedding_loss", "check_classification_inputs", "check_options"]

Reduction = Literal["mean", "sum", "none"]
Hinge = Literal["l1", "l2", "abs"]

_REDUCTIONS = ("mean", "sum", "none")
_HINGES = ("l1", "l2", "abs")
_HINGE_REDUCTIONS = ("sum", "mean")
_EMBEDDING_NORMALIZERS = ("correct", "valid")


class LossOutput(NamedTuple):
    """``loss`` to backpropagate and its named, detached ``terms`` for logging.

    Unpacks as ``loss, terms = criterion(...)``. With ``reduction="none"`` both the loss and
    every term have the target's shape.
    """

    loss: Tensor
    terms: dict[str, Tensor]


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
    named = {"logits": logits, "aux_logits": aux_logits}
    named = {k: v for k, v in named.items() if v is not None and v.numel() > 0}
    if target.numel() == 0:
        return
    # One reduction per tensor and one sync for all: the smallest and largest target that is
    # not ignore_index, and each logits tensor's min and max (aminmax propagates NaN, so a
    # tensor is finite iff both are).
    in_range = torch.where(target != ignore_index, target, 0)
    extremes = torch.cat([torch.stack(torch.aminmax(v)).double()
                          for v in (in_range, *named.values())]).tolist()
    _raise_on_bad_values(target, ignore_index, num_logit_classes, extremes[:2],
                         {k: extremes[2 + 2 * i:4 + 2 * i] for i, k in enumerate(named)})


def _raise_on_bad_values(target: Tensor, ignore_index: int, num_classes: int,
                         target_range: list, logit_ranges: dict[str, list]) -> None:
    """Raise for a target outside ``[0, C)`` or non-finite logits, given their extremes."""
    low, high = target_range
    if low < 0 or high >= num_classes:
        bad_target = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
        value = target[bad_target].flatten()[0].item()
        raise ValueError(
            f"target has class index {value} outside [0, {num_classes}) "
            f"(and not ignore_index={ignore_index})"
        )
    for name, extremes in logit_ranges.items():
        if not all(math.isfinite(v) for v in extremes):
            raise ValueError(
                f"{name} contain NaN or inf (pass validate=False to skip this check)"
            )


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

    Returns:
        :class:`LossOutput` ``(loss, terms)``; ``terms`` holds the unweighted, detached terms
        that were computed.
    """
    trainable = getattr(embedding, "trainable", True)
    num_classes = getattr(embedding, "num_classes", None)
    check_options(beta=beta, tau=tau, alpha=alpha, hinge=hinge, hinge_reduction=hinge_reduction,
                  embedding_normalizer=embedding_normalizer, reduction=reduction,
                  warmup_steps=warmup_steps)
    if aux_logits is None and trainable:
        raise ValueError(
            "aux_logits is None but the embedding is trainable: pass the head's second output "
            "(LabelEmbeddingHead returns both) or use a FixedLabelEmbedding (eq. 17)"
        )
    if warmup_steps > 0 and step is None:
        raise ValueError("step is required when warmup_steps > 0")
    fused = FUSED and reduction != "none"
    check_classification_inputs(
        logits, target, aux_logits=aux_logits, num_classes=num_classes,
        ignore_index=ignore_index, validate=validate and not fused,
    )
    soft_on = warmup_steps == 0 or step >= warmup_steps  # type: ignore[operator]
    w_ce, w_soft = (1.0, 1.0) if beta is None else (float(beta), 1.0 - float(beta))

    # float32 maths whatever the autocast dtype: sums of log-probabilities overflow in fp16.
    z1 = _full_precision(_as_rows(logits))
    t = target.reshape(-1)
    valid = t != ignore_index
    t_safe = t.masked_fill(~valid, 0).unsqueeze(1)  # any in-range index; masked out below

    need_embedding_ce = aux_logits is not None and trainable
    if fused:
        if validate:  # checked in the fused path's one sync; until then look up safely
            t_masked, t_safe = t_safe, t_safe.clamp(0, z1.shape[1] - 1)
        # The same sums with their gradients written out: one autograd node (see below).
        return _fused_reduced_loss(
            z1, None if aux_logits is None else _full_precision(_as_rows(aux_logits)),
            embedding(t_safe.squeeze(1)) if soft_on or need_embedding_ce else None,
            t_safe, valid, soft_on=soft_on, need_embedding_ce=need_embedding_ce, w_ce=w_ce,
            w_soft=w_soft, tau=tau, alpha=alpha, hinge=hinge, hinge_reduction=hinge_reduction,
            mask_wrong=mask_wrong, embedding_normalizer=embedding_normalizer,
            reduction=reduction, validate=validate, target=target, ignore_index=ignore_index,
            target_masked=t_masked if validate else None,
        )

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


# ------------------------------------------------------------------ fused mean/sum path

#: ``reduction="mean"``/``"sum"`` run :func:`_fused_reduced_loss`: the same sums as the
#: term-by-term code above, with the gradients w.r.t. the logits written out, so autograd sees
#: one node instead of some fifty small ones (on a small model the loss is most of the
#: method's overhead). False runs the term-by-term autograd code, the definition.
FUSED = True


def _fused_reduced_loss(
    z1: Tensor, z2: Tensor | None, e: Tensor | None, t_safe: Tensor, valid: Tensor,
    **options: Any,
) -> LossOutput:
    """Reduced loss from rows ``z1, z2, e`` ``(M, C)``; gradients flow to all three."""
    names = ["ce"]
    if options["soft_on"]:
        names.append("soft_ce")
    if z2 is not None:
        names += ["aux_ce", "aux_hinge"]
        if options["need_embedding_ce"]:
            names.append("embedding_ce")
    options["names"] = names
    inputs = (z1, z2, e)
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in inputs):
        loss, terms = _FusedLoss.apply(options, t_safe, valid, *inputs)
    else:
        loss, terms, _ = _fused_forward(options, t_safe, valid, *inputs, need_grads=False)
    return LossOutput(loss, dict(zip(names, terms.unbind())))


class _FusedLoss(torch.autograd.Function):
    """Forward computes the loss and d loss / d (z1, z2, e); backward hands them out."""

    @staticmethod
    def forward(ctx, options, t_safe, valid, z1, z2, e):  # type: ignore[override]
        if torch.is_autocast_enabled(z1.device.type):
            with torch.autocast(z1.device.type, enabled=False):
                loss, terms, grads = _fused_forward(options, t_safe, valid, z1, z2, e, True)
        else:
            loss, terms, grads = _fused_forward(options, t_safe, valid, z1, z2, e, True)
        ctx.grads = grads
        ctx.mark_non_differentiable(terms)
        return loss, terms

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss, _grad_terms):  # type: ignore[override]
        grads = ctx.grads
        if float(grad_loss) != 1.0:  # loss.backward() passes 1
            grads = [None if g is None else g * grad_loss for g in grads]
        return (None, None, None, *grads)


def _fused_forward(o: dict, t_safe: Tensor, valid: Tensor, z1: Tensor, z2: Tensor | None,
                   e: Tensor | None, need_grads: bool):
    """Loss, stacked terms and (with ``need_grads``) d loss / d (z1, z2, e).

    Per target, with p1 = z1', p2 = z2', q = e' (softmaxes), s = z2'' = softmax(z2 / tau)
    and 1_y the one-hot target:

    * d ce / d z1 = p1 - 1_y,  d soft_ce / d z1 = p1 - q  (q is a constant),
    * d aux_ce / d z2 = p2 - 1_y,  d aux_hinge / d z2 = hinge'(p2_y) p2_y (1_y - p2),
    * d embedding_ce / d e = q - s  (s is a constant),

    each times the target's share of the reduced loss: its term weight, 1 / normaliser, and
    0 for ignored targets (and, with ``mask_wrong``, for targets the aux head gets wrong).
    On small models the cost is the number of tensor operations, not arithmetic, so the four
    softmaxes run as one on a stack.
    """
    dtype = z1.dtype
    names = o["names"]
    has_aux, emb_ce = z2 is not None, o["need_embedding_ce"]
    # Per-target values, negated for the cross-entropies (the sign is restored below).
    # (Softmaxes run one tensor at a time: stacked, a batch of 100 already crosses the
    # kernel's threshold for going multi-threaded, which costs more than it saves.)
    log_p1 = torch.log_softmax(z1, dim=1)
    per_target = [log_p1.gather(1, t_safe).squeeze(1)]  # -ce
    if e is not None:
        log_q = torch.log_softmax(_full_precision(e.detach()), dim=1)  # log e'
        q = log_q.exp()  # the soft target e', a constant
        log_q, q = log_q.to(dtype), q.to(dtype)  # e may be float32 beside float64 logits
    if o["soft_on"]:
        per_target.append(torch.linalg.vecdot(q, log_p1))  # -soft_ce
    fitted = None
    if has_aux:
        log_p2 = torch.log_softmax(z2, dim=1)
        log_p2_y = log_p2.gather(1, t_safe).squeeze(1)
        per_target.append(log_p2_y)  # -aux_ce
        p2_y = log_p2_y.exp()
        gap = p2_y - o["alpha"]
        if o["hinge"] == "l1":
            hinge, hinge_slope = gap.relu(), (gap > 0).to(dtype)
        elif o["hinge"] == "l2":
            hinge = gap.relu()
            hinge, hinge_slope = hinge.square(), 2.0 * hinge
        else:
            hinge, hinge_slope = gap.abs(), gap.sign()
        per_target.append(hinge)  # aux_hinge
        if emb_ce:
            soft_aux = torch.softmax(z2 / o["tau"], dim=1)  # z2'' (eq. 10), a constant
            per_target.append(torch.linalg.vecdot(soft_aux, log_q))  # -embedding_ce
            fitted = valid  # the targets the embedding learns from (Appendix A)
            if o["mask_wrong"]:
                fitted = (z2.argmax(1) == t_safe.squeeze(1)) & valid

    # Ignored (and unfitted) targets contribute exactly zero: where, not multiply (0 * inf).
    keep = valid if fitted is None or fitted is valid else torch.stack(
        [valid] * (len(names) - 1) + [fitted])
    sums = torch.where(keep, torch.stack(per_target), 0.0).sum(1)

    # One sync: the counts behind the normalisers and, with validate, the input checks.
    checks = o["validate"] and valid.numel() > 0
    counts = [valid.sum(), (valid if fitted is None else fitted).sum()]
    if checks:
        counts += [*torch.aminmax(o["target_masked"]), *torch.aminmax(z1)]
        if has_aux:
            counts += torch.aminmax(z2)
    synced = torch.stack(counts).tolist()  # floats: exact for counts and classes < 2**24
    if checks:
        logit_ranges = {"logits": synced[4:6], "aux_logits": synced[6:8]}
        _raise_on_bad_values(o["target"], o["ignore_index"], z1.shape[1], synced[2:4],
                             {k: v for k, v in logit_ranges.items() if v})
    n_valid, n_fitted = synced[0], synced[1]

    mean = o["reduction"] == "mean"
    norm = 1.0 / max(n_valid, 1.0) if mean else 1.0
    scale = {k: norm for k in ("ce", "soft_ce", "aux_ce", "embedding_ce")}
    scale["aux_hinge"] = norm if o["hinge_reduction"] == "mean" else 1.0
    if mean and o["embedding_normalizer"] == "correct" and o["mask_wrong"]:
        # the authors' 1 / (n_correct + 1e-8); in float32 the 1e-8 only matters at 0
        scale["embedding_ce"] = 1.0 / max(n_fitted, 1e-8)
    weight = {"ce": o["w_ce"], "soft_ce": o["w_soft"]}
    sign = {"aux_hinge": 1.0}
    factors = [sign.get(k, -1.0) * scale[k] for k in names]
    scaled = sums * sums.new_tensor([factors, [f * weight.get(k, 1.0)
                                               for f, k in zip(factors, names)]])
    terms, loss = scaled[0], scaled[1].sum()
    if not need_grads:
        return loss, terms, None

    # d loss / d (z1, z2, e): the directions above times per-target factors.
    all_valid = n_valid == valid.numel()
    w_ce = o["w_ce"] * scale["ce"]
    w_soft = o["w_soft"] * scale["ce"] if o["soft_on"] else 0.0
    grad_z1 = log_p1.exp_()  # p1
    if o["soft_on"]:
        grad_z1.sub_(q, alpha=w_soft / (w_ce + w_soft))
    grad_z1.mul_(w_ce + w_soft).scatter_add_(1, t_safe, _full_like(t_safe, -w_ce, dtype))
    if not all_valid:
        grad_z1.mul_(valid.to(dtype).unsqueeze(1))
    grad_z2 = grad_e = None
    if has_aux:
        # aux_ce and aux_hinge share the direction p2 - 1_y: one factor per target.
        k = scale["aux_ce"] - scale["aux_hinge"] * hinge_slope * p2_y
        if not all_valid:
            k = k * valid.to(dtype)
        grad_z2 = log_p2.exp_().scatter_add_(1, t_safe, _full_like(t_safe, -1.0, dtype))
        grad_z2.mul_(k.unsqueeze(1))
    if e is not None:
        if emb_ce:
            grad_e = q.sub_(soft_aux).mul_((fitted.to(dtype) * scale["embedding_ce"]).unsqueeze(1))
        else:
            grad_e = torch.zeros_like(q)
        grad_e = grad_e.to(e.dtype)
    return loss, terms, (grad_z1, grad_z2, grad_e)


def _full_like(index: Tensor, value: float, dtype: torch.dtype) -> Tensor:
    return torch.full(index.shape, value, dtype=dtype, device=index.device)


def check_options(*, beta, tau, alpha, hinge, hinge_reduction, embedding_normalizer, reduction,
                  warmup_steps, **_: object) -> None:
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
