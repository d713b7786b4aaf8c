"""Head plus label embedding loss in chunks of targets, for very large label sets.

The plain path, ``LabelEmbeddingHead`` then :func:`~labelemb.functional.label_embedding_loss`,
holds three ``N x C`` tensors (``logits``, ``aux_logits`` and the embedding rows ``e``) plus
their gradients. With ``C = 50,000`` and ``N = 4,096`` targets that is 0.8 GB each, three times
what plain cross-entropy needs.

:func:`chunked_label_embedding_loss` computes the same loss straight from the features. A
custom :class:`torch.autograd.Function` walks the targets in chunks of ``chunk_size`` rows; for
each chunk it builds the three C-wide products, the five terms and their analytic gradients
with respect to the logits, and turns those at once into gradients for the features, the
head's ``weight`` and ``bias`` (rows ``[:C]``: W1, b1 of the main layer; ``[C:]``: W2, b2 of the
auxiliary one, each written in place) and the embedding's parameters. Backward
only scales the stored gradients by the incoming ``grad_output``. No ``N x C`` tensor is ever
held; peak memory is a few ``chunk_size x C`` tensors plus one gradient per parameter.

The gradients are exactly those of the method (paper, eq. 14):

* ``ce`` and ``soft_ce`` (soft target ``softmax(e)`` detached) reach the features and W1;
* ``aux_ce`` and ``aux_hinge`` reach W2 only (the auxiliary head sees detached features);
* ``embedding_ce`` (``softmax(z2 / tau)`` detached, masked to the targets the auxiliary head
  gets right) reaches the embedding only.

Normalisers that depend on the whole batch are handled without a second pass: the number of
valid targets comes from ``target`` alone, and the number of correct auxiliary predictions only
scales ``embedding_ce``, whose gradient reaches the embedding and nothing else, so its
unnormalised gradient is accumulated and scaled once at the end.

Maths is float32 (float64 inputs stay float64) whatever the autocast state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .embedding import CompressedLabelEmbedding, FixedLabelEmbedding, LabelEmbedding
from .functional import Hinge, LossOutput, StackedTerms, check_options
from .head import LabelEmbeddingHead
from .loss import LabelEmbeddingLoss

__all__ = ["chunked_label_embedding_loss", "ChunkedLabelEmbeddingLoss", "default_chunk_size"]

#: Elements of one ``chunk x C`` tensor when ``chunk_size`` is not given: 4M floats = 16 MiB,
#: so the handful of chunk-wide tensors alive at once stay near the CPU's last-level cache.
_CHUNK_ELEMENTS = 1 << 22


def default_chunk_size(num_classes: int) -> int:
    """Rows per chunk so one ``chunk x C`` float32 tensor is about 16 MiB (at least 16 rows)."""
    return max(16, _CHUNK_ELEMENTS // max(1, num_classes))


@dataclass(frozen=True)
class _Plan:
    """Everything the autograd Function needs besides tensors (which autograd must see)."""

    embedding: nn.Module
    kind: Literal["full", "compressed", "fixed"]
    chunk_size: int
    ignore_index: int
    soft_on: bool
    need_aux: bool
    need_embedding_ce: bool
    w_ce: float
    w_soft: float
    tau: float
    alpha: float
    hinge: str
    hinge_reduction: str
    mask_wrong: bool
    embedding_normalizer: str
    reduction: str


def _embedding_kind(embedding: nn.Module) -> Literal["full", "compressed", "fixed"]:
    if isinstance(embedding, FixedLabelEmbedding):
        return "fixed"
    if isinstance(embedding, LabelEmbedding):
        return "full"
    if isinstance(embedding, CompressedLabelEmbedding):
        return "compressed"
    raise TypeError(
        "embedding must be a LabelEmbedding, CompressedLabelEmbedding or FixedLabelEmbedding, "
        f"got {type(embedding).__name__}"
    )


def _embedding_params(embedding: nn.Module, kind: str) -> tuple[Tensor | None, ...]:
    """The trainable tensors autograd must route gradients to, in a fixed order."""
    if kind == "full":
        return (embedding.weight,)
    if kind == "compressed":
        return (embedding.A.weight, embedding.B.weight, embedding.B.bias)
    return ()


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return x @ weight.t() if bias is None else torch.addmm(bias, x, weight.t())


class _ChunkedLabelEmbeddingLoss(torch.autograd.Function):
    """Forward computes the loss AND every gradient chunk by chunk; backward scales them."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        plan: _Plan,
        target: Tensor,
        features: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        *emb_params: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        with torch.autocast(features.device.type, enabled=False):
            loss, terms, grads = _forward_and_gradients(
                plan, target, features, weight, bias, emb_params, ctx.needs_input_grad[2:]
            )
        ctx.grads = grads
        ctx.mark_non_differentiable(terms)
        return loss, terms

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: Tensor, _grad_terms: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.grads is None:
            raise RuntimeError(
                "the chunked label embedding loss was already backpropagated: its gradients "
                "are computed in forward and handed out once; call the loss again"
            )
        grads, ctx.grads = ctx.grads, None  # hand the buffers over, no copy
        if float(grad_loss) != 1.0:  # loss.backward() passes 1: skip a pass over every grad
            grads = tuple(None if g is None else g.mul_(grad_loss.to(g.dtype)) for g in grads)
        return (None, None, *grads)


#: Gradient names of the embedding's parameters (full: "e"; compressed: A, B and its bias).
_EMBEDDING_GRADS = frozenset({"e", "a", "b", "bias"})


class _GradAccumulator:
    """Gradient buffers filled chunk by chunk; the first write overwrites (no zero-fill pass).

    A name in ``within`` is a block of rows of another name's buffer (``"w1"``: rows
    ``[:C]`` of the head's ``"w"``), so both layers' gradients land in one tensor uncopied.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...] | None], dtype: torch.dtype,
                 device: torch.device, within: dict[str, tuple[str, slice]] | None = None) -> None:
        self.shapes = shapes  # None: not wanted
        self.dtype, self.device = dtype, device
        self.within = within or {}
        self.grads: dict[str, Tensor] = {}
        self.written: set[str] = set()

    def wants(self, name: str) -> bool:
        return self.shapes.get(name) is not None

    def _buffer(self, name: str) -> Tensor:
        g = self.grads.get(name)
        if g is None:
            if name in self.within:
                parent, rows = self.within[name]
                g = self._buffer(parent)[rows]
            else:
                g = torch.empty(self.shapes[name], dtype=self.dtype, device=self.device)
            self.grads[name] = g
        return g

    def _target(self, name: str) -> tuple[Tensor, float]:
        """The gradient buffer and the ``beta`` to add into it: 0 on first use, so the
        uninitialised buffer is overwritten (BLAS ignores it when beta is 0), else 1."""
        g = self._buffer(name)
        if name in self.written:
            return g, 1.0
        self.written.add(name)
        return g, 0.0

    def addmm(self, name: str, a: Tensor, b: Tensor, alpha: float = 1.0) -> None:
        """``grad[name] += alpha * a @ b``."""
        g, beta = self._target(name)
        g.addmm_(a, b, beta=beta, alpha=alpha)

    def addmv(self, name: str, a: Tensor, v: Tensor, alpha: float = 1.0) -> None:
        """``grad[name] += alpha * a @ v``."""
        g, beta = self._target(name)
        g.addmv_(a, v, beta=beta, alpha=alpha)

    def rows(self, name: str) -> Tensor:
        """The buffer itself, zero-initialised, for row-wise ``index_add_``/``index_copy_``."""
        g = self._buffer(name)
        if name not in self.written:
            g.zero_()
            self.written.add(name)
        return g

    def get(self, name: str, scale: float = 1.0) -> Tensor | None:
        if not self.wants(name):
            return None
        blocks = [part for part, (parent, _) in self.within.items() if parent == name]
        for part in blocks:
            self.rows(part)  # zeros where a block was never written
        g = self._buffer(name) if blocks else self.rows(name)  # zeros if never written
        return g.mul_(scale) if scale != 1.0 else g


def _forward_and_gradients(
    plan: _Plan,
    target: Tensor,
    features: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    emb_params: tuple[Tensor | None, ...],
    needs_grad: tuple[bool, ...],
) -> tuple[Tensor, Tensor, tuple[Tensor | None, ...]]:
    """Loss, stacked reduced terms, and gradients aligned with (features, weight, bias, *emb)."""
    dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    device = features.device
    h_all = features.reshape(-1, features.shape[-1])
    t_all = target.reshape(-1)
    C = weight.shape[0] // 2 if plan.need_aux else weight.shape[0]
    params = (features, weight, bias, *emb_params)
    names = ("h", "head_w", "head_b",
             *(("e",) if plan.kind == "full" else ("a", "b", "bias")[:len(emb_params)]))
    # The embedding is trained by embedding_ce alone; without it, it gets no gradient.
    trains = {n: need and p is not None and (n not in _EMBEDDING_GRADS or plan.need_embedding_ce)
              for n, p, need in zip(names, params, needs_grad)}
    shapes = {n: (tuple(h_all.shape) if n == "h" else tuple(p.shape)) if trains[n] else None
              for n, p in zip(names, params)}
    # Each layer's gradient is a block of rows of the head's one weight (and bias) gradient.
    blocks = {"w1": ("head_w", slice(0, C)), "b1": ("head_b", slice(0, C))}
    if plan.need_aux:
        blocks.update(w2=("head_w", slice(C, 2 * C)), b2=("head_b", slice(C, 2 * C)))
    for part, (parent, _) in blocks.items():
        shapes[part], trains[part] = shapes[parent], trains[parent]
    acc = _GradAccumulator(shapes, dtype, device, within=blocks)
    w, b, *emb = (None if p is None else p.to(dtype) for p in params[1:])
    w1, w2 = w[:C], w[C:] if plan.need_aux else None
    b1, b2 = (None, None) if b is None else (b[:C], b[C:] if plan.need_aux else None)

    # Ignored targets add nothing to any term or gradient: only valid rows are visited.
    valid_rows = (t_all != plan.ignore_index).nonzero().squeeze(1)
    n_valid = int(valid_rows.numel())

    # Per-target weights of the terms; for "mean" they carry the 1/n_valid normaliser.
    norm = 1.0 / max(n_valid, 1) if plan.reduction == "mean" else 1.0
    c_ce = plan.w_ce * norm
    c_soft = plan.w_soft * norm if plan.soft_on else 0.0
    c_main = c_ce + c_soft  # d(loss)/d(z1) = c_main * p1 - c_soft * q - c_ce * onehot(y)
    c_aux = norm
    c_hinge = norm if plan.hinge_reduction == "mean" else 1.0
    train_main = c_main != 0.0 and (trains["h"] or trains["w1"] or trains["b1"])
    train_aux = plan.need_aux and (trains["w2"] or trains["b2"])

    sums = {k: torch.zeros((), dtype=dtype, device=device)
            for k in ("ce", "soft_ce", "aux_ce", "aux_hinge", "embedding_ce")}
    n_correct = 0

    for start in range(0, n_valid, plan.chunk_size):
        rows = valid_rows[start:start + plan.chunk_size]
        h = h_all.index_select(0, rows).to(dtype)
        y = t_all.index_select(0, rows)
        y_col = y.unsqueeze(1)
        ones = h.new_ones(len(rows))

        # --- auxiliary head z2 = W2 h.detach(): aux_ce, aux_hinge, and the embedding's target
        fit = None  # rows whose embedding is fitted to z2'' (None: all rows)
        if plan.need_aux:
            z2 = _linear(h, w2, b2)
            if plan.need_embedding_ce:
                if plan.mask_wrong:  # only targets the auxiliary head gets right (Appendix A)
                    fit = (z2.argmax(1) == y).nonzero().squeeze(1)
                    n_correct += fit.numel()
                # z2'' = softmax(z2 / tau), detached: what the embedding is fitted to (eq. 10)
                scaled = z2 / plan.tau if fit is None else _take(z2, fit).div_(plan.tau)
                soft_aux = torch.softmax(scaled, dim=1)
                del scaled
            log_p2 = torch.log_softmax(z2, dim=1)
            del z2
            log_p2_y = log_p2.gather(1, y_col).squeeze(1)
            sums["aux_ce"] -= log_p2_y.sum()
            p2_y = log_p2_y.exp()
            gap = p2_y - plan.alpha
            # hinge value and its derivative w.r.t. p2_y (0 at the kink, as autograd has it)
            if plan.hinge == "l1":
                hinge, slope = gap.relu(), (gap > 0).to(dtype)
            elif plan.hinge == "l2":
                hinge, slope = gap.relu().square(), 2.0 * gap.relu()
            else:
                hinge, slope = gap.abs(), gap.sign()
            sums["aux_hinge"] += hinge.sum()
            if train_aux:
                # d(aux_ce + aux_hinge)/d z2 = k * (p2 - onehot(y)) with a per-target
                # k = c_aux - c_hinge * slope * p2_y; k scales h's rows, not a C-wide tensor.
                k = c_aux - c_hinge * slope * p2_y
                grad_z2 = log_p2.exp_().scatter_add_(1, y_col, _fill(y_col, -1.0, dtype))
                if acc.wants("w2"):
                    acc.addmm("w2", grad_z2.t(), h * k.unsqueeze(1))
                if acc.wants("b2"):
                    acc.addmv("b2", grad_z2.t(), k)
                del grad_z2
            del log_p2

        # --- label embedding e = embedding(y); q = softmax(e) is the soft target -----------
        if plan.soft_on or plan.need_embedding_ce:
            # Rows whose e is needed: all for soft_ce, else only the fitted ones.
            e_rows = None if plan.soft_on else fit
            y_e = _take(y, e_rows)
            if plan.kind == "full":
                e = emb[0].index_select(0, y_e)
            elif plan.kind == "compressed":
                a = emb[0].index_select(0, y_e)
                e = _linear(a, emb[1], emb[2]).relu_()
            else:
                e = plan.embedding(y_e).to(dtype)
            log_e = torch.log_softmax(e, dim=1)
            q = log_e.exp()
            if plan.need_embedding_ce:
                # rows of the e-tensors that are fitted
                sel = fit if plan.soft_on else None
                sums["embedding_ce"] -= torch.vdot(soft_aux.flatten(), _take(log_e, sel).flatten())
                # d embedding_ce / d e = softmax(e) - z2'' (unnormalised; scaled at the end)
                grad_e = _take(q, sel).sub_(soft_aux) if sel is not None else q - soft_aux
                del soft_aux
                y_fit = _take(y, fit)
                if plan.kind == "full":
                    if acc.wants("e"):
                        acc.rows("e").index_add_(0, y_fit, grad_e)
                else:  # compressed: e = ReLU(A[y] B^T + bias)
                    grad_pre = torch.ops.aten.threshold_backward(grad_e, _take(e, sel), 0.0)
                    del grad_e
                    a_fit = _take(a, sel)
                    if acc.wants("b"):
                        acc.addmm("b", grad_pre.t(), a_fit)
                    if acc.wants("bias"):
                        acc.addmv("bias", grad_pre.t(), a_fit.new_ones(len(a_fit)))
                    if acc.wants("a"):
                        acc.rows("a").index_add_(0, y_fit, grad_pre @ emb[1])
                    del grad_pre
                grad_e = None
            del log_e, e

        # --- main head z1 = W1 h: ce and soft_ce ------------------------------------------
        log_p1 = torch.log_softmax(_linear(h, w1, b1), dim=1)
        sums["ce"] -= log_p1.gather(1, y_col).sum()
        if plan.soft_on:
            sums["soft_ce"] -= torch.vdot(q.flatten(), log_p1.flatten())
        if train_main:
            # grad_z1 / c_main = p1 - (c_soft / c_main) q - (c_ce / c_main) onehot(y)
            grad_z1 = log_p1.exp_()
            if plan.soft_on:
                grad_z1.sub_(q, alpha=c_soft / c_main)
            grad_z1.scatter_add_(1, y_col, _fill(y_col, -c_ce / c_main, dtype))
            if acc.wants("w1"):
                acc.addmm("w1", grad_z1.t(), h, alpha=c_main)
            if acc.wants("b1"):
                acc.addmv("b1", grad_z1.t(), ones, alpha=c_main)
            if acc.wants("h"):
                acc.rows("h").index_copy_(0, rows, torch.mm(grad_z1, w1).mul_(c_main))
            del grad_z1
        del log_p1
        if plan.soft_on:
            del q

    # --- whole-batch normalisers --------------------------------------------------------
    emb_scale = 1.0
    if plan.reduction == "mean":
        by_correct = plan.embedding_normalizer == "correct" and plan.mask_wrong
        # the authors' 1 / (n_correct + 1e-8); in float32 the 1e-8 only matters at 0
        emb_scale = 1.0 / max(n_correct, 1e-8) if by_correct else norm
    for k in ("ce", "soft_ce", "aux_ce"):
        sums[k] = sums[k] * norm
    sums["aux_hinge"] = sums["aux_hinge"] * c_hinge
    sums["embedding_ce"] = sums["embedding_ce"] * emb_scale

    names_on = term_names(plan)
    loss = plan.w_ce * sums["ce"] + sum(
        (plan.w_soft if k == "soft_ce" else 1.0) * sums[k] for k in names_on if k != "ce"
    )
    terms = torch.stack([sums[k] for k in names_on])
    grads = tuple(
        None if g is None else g.to(p.dtype).reshape(p.shape)
        for g, p in ((acc.get(n, emb_scale if n in _EMBEDDING_GRADS else 1.0), p)
                     for n, p in zip(names, params))
    )
    return loss, terms, grads


def _take(x: Tensor, rows: Tensor | None) -> Tensor:
    """``x[rows]`` (a copy), or ``x`` itself when ``rows`` is None (all rows)."""
    return x if rows is None else x.index_select(0, rows)


def _fill(like: Tensor, value: float, dtype: torch.dtype) -> Tensor:
    return torch.full(like.shape, value, dtype=dtype, device=like.device)


def term_names(plan: _Plan) -> list[str]:
    """Names of the terms computed under ``plan``, in the order of the unchunked loss."""
    names = ["ce"]
    if plan.soft_on:
        names.append("soft_ce")
    if plan.need_aux:
        names += ["aux_ce", "aux_hinge"]
        if plan.need_embedding_ce:
            names.append("embedding_ce")
    return names


def chunked_label_embedding_loss(
    features: Tensor,
    target: Tensor,
    head: LabelEmbeddingHead,
    embedding: nn.Module,
    *,
    chunk_size: int | None = None,
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
    reduction: Literal["mean", "sum"] = "mean",
    validate: bool = True,
) -> LossOutput:
    """``label_embedding_loss(*head(features), target, embedding)`` without any ``N x C`` tensor.

    Args:
        features: the backbone's features ``h``, ``(N, F)`` or ``(*, F)``.
        target: class indices, ``(N,)`` or ``(*)`` matching ``features.shape[:-1]``.
        head: the :class:`~labelemb.LabelEmbeddingHead` whose weights produce the logits; its
            parameters receive gradients as if ``head(features)`` had been called.
        embedding: a :class:`~labelemb.LabelEmbedding`,
            :class:`~labelemb.CompressedLabelEmbedding` or :class:`~labelemb.FixedLabelEmbedding`.
        chunk_size: targets per chunk; default :func:`default_chunk_size` ``(C)``.
        validate: check the target range and that the features are finite (one sync).
        Other options: as :func:`~labelemb.functional.label_embedding_loss`; ``reduction`` is
            ``"mean"`` or ``"sum"`` (per-target losses would need per-target gradients).

    Returns:
        :class:`~labelemb.functional.LossOutput`; ``terms`` equal the unchunked loss's.
        Backward works once per call (the gradients were computed in forward) and not twice.
    """
    if not isinstance(head, LabelEmbeddingHead):
        raise TypeError(f"head must be a LabelEmbeddingHead, got {type(head).__name__}")
    kind = _embedding_kind(embedding)
    check_options(beta=beta, tau=tau, alpha=alpha, hinge=hinge, hinge_reduction=hinge_reduction,
                  embedding_normalizer=embedding_normalizer, reduction=reduction,
                  warmup_steps=warmup_steps)
    if reduction == "none":
        raise ValueError(
            "reduction must be 'mean' or 'sum' for the chunked loss, got 'none'; use "
            "label_embedding_loss for per-target losses"
        )
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if warmup_steps > 0 and step is None:
        raise ValueError("step is required when warmup_steps > 0")
    _check_inputs(features, target, head, embedding, ignore_index, validate)
    trainable = kind != "fixed"
    need_aux = head.aux
    if trainable and not need_aux:
        raise ValueError(
            "the head has no auxiliary layer (aux=False) but the embedding is trainable: build "
            "LabelEmbeddingHead(..., aux=True) or use a FixedLabelEmbedding (eq. 17)"
        )
    w_ce, w_soft = (1.0, 1.0) if beta is None else (float(beta), 1.0 - float(beta))
    plan = _Plan(
        embedding=embedding, kind=kind,
        chunk_size=chunk_size or default_chunk_size(head.num_classes),
        ignore_index=ignore_index,
        soft_on=warmup_steps == 0 or step >= warmup_steps,  # type: ignore[operator]
        need_aux=need_aux, need_embedding_ce=need_aux and trainable,
        w_ce=w_ce, w_soft=w_soft, tau=float(tau), alpha=float(alpha), hinge=hinge,
        hinge_reduction=hinge_reduction, mask_wrong=bool(mask_wrong),
        embedding_normalizer=embedding_normalizer, reduction=reduction,
    )
    inputs = (features, head.weight, head.bias, *_embedding_params(embedding, kind))
    if torch.is_grad_enabled():
        loss, terms = _ChunkedLabelEmbeddingLoss.apply(plan, target, *inputs)
    else:  # evaluation: the same loss, no gradients computed
        with torch.autocast(features.device.type, enabled=False):
            loss, terms, _ = _forward_and_gradients(plan, target, *inputs[:3], inputs[3:],
                                                    (False,) * len(inputs))
    return LossOutput(loss, StackedTerms(tuple(term_names(plan)), terms))


def _check_inputs(features: Tensor, target: Tensor, head: LabelEmbeddingHead,
                  embedding: nn.Module, ignore_index: int, validate: bool) -> None:
    if not isinstance(features, Tensor) or not features.is_floating_point():
        raise TypeError("features must be a floating Tensor")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices (torch.long), got {target.dtype}")
    if features.dim() < 1 or features.shape[-1] != head.in_features:
        raise ValueError(
            f"features must be (*, {head.in_features}) for this head, got shape "
            f"{tuple(features.shape)}"
        )
    if tuple(target.shape) != tuple(features.shape[:-1]):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match features shape "
            f"{tuple(features.shape)}: expected {tuple(features.shape[:-1])}"
        )
    if head.num_classes != embedding.num_classes:
        raise ValueError(
            f"the head has {head.num_classes} classes but the embedding has "
            f"{embedding.num_classes}"
        )
    if not validate:
        return
    num_classes = head.num_classes
    bad = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
    flags = torch.stack([bad.any(), ~torch.isfinite(features).all()]).tolist()  # one sync
    if flags[0]:
        value = target[bad].flatten()[0].item()
        raise ValueError(
            f"target has class index {value} outside [0, {num_classes}) "
            f"(and not ignore_index={ignore_index})"
        )
    if flags[1]:
        raise ValueError("features contain NaN or inf (pass validate=False to skip this check)")


class ChunkedLabelEmbeddingLoss(LabelEmbeddingLoss):
    """:class:`~labelemb.LabelEmbeddingLoss` that also applies the head, chunk by chunk.

    Same options, presets, ``num_updates`` warm-up counter and state-dict keys as
    :class:`~labelemb.LabelEmbeddingLoss`, so the two are interchangeable in checkpoints; the
    call is ``criterion(features, target, head)`` instead of ``criterion(logits, aux_logits,
    target)``. Use it when ``C`` is large (a 50,000-word vocabulary).

    Args:
        embedding: the label embedding this loss owns and trains.
        chunk_size: targets per chunk (``None``: about 16 MiB per ``chunk x C`` tensor).
        **options: as :class:`~labelemb.LabelEmbeddingLoss`; ``reduction`` ``"mean"``/``"sum"``.

    Example::

        head = LabelEmbeddingHead(512, 50_000)
        criterion = ChunkedLabelEmbeddingLoss.from_preset(
            "seq2seq", CompressedLabelEmbedding(50_000, 100))
        loss, terms = criterion(decoder_states.flatten(0, 1), target.flatten(), head)
    """

    def __init__(self, embedding: nn.Module, chunk_size: int | None = None, **options: Any):
        if "backend" in options:
            raise TypeError("ChunkedLabelEmbeddingLoss has no backend option: it always runs "
                            "its own chunked autograd Function")
        super().__init__(embedding, **options)
        del self.options["backend"]
        _embedding_kind(embedding)
        if self.options["reduction"] == "none":
            raise ValueError("reduction must be 'mean' or 'sum' for ChunkedLabelEmbeddingLoss")
        if chunk_size is not None and (isinstance(chunk_size, bool)
                                       or not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        self.chunk_size = chunk_size

    def forward(  # type: ignore[override]
        self, features: Tensor, target: Tensor, head: LabelEmbeddingHead
    ) -> LossOutput:
        out = chunked_label_embedding_loss(
            features, target, head, self.embedding, chunk_size=self.chunk_size,
            step=self._updates, **self.options,
        )
        self._count_update()
        return out

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size!r}, " + super().extra_repr()
