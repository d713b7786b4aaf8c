"""Head plus label embedding loss in chunks of targets, for very large label sets.

The plain path, ``LabelEmbeddingHead`` then the loss, holds three ``N x C`` tensors (``logits``,
``aux_logits``, the embedding rows ``e``) and their gradients: with ``C = 50,000`` and
``N = 4,096`` targets, 0.8 GB each, several times what plain cross-entropy needs.

:func:`chunked_label_embedding_loss` computes the same loss from the features. An autograd
``Function`` walks the targets in chunks of ``chunk_size`` rows; for each chunk it runs the
head and the one definition of the terms (:func:`labelemb.functional.masked_terms`) under
autograd and takes that chunk's gradients with respect to the features, the head's two outputs
and the embedding rows; the head's weight gradients are then added in place as
``nn.Linear``'s backward makes them, and the embedding's through the rows ``embedding_ce``
trains. Backward hands the sums out. No ``N x C`` tensor is ever held: peak memory is one
chunk's graph plus one gradient per parameter.

Normalisers that depend on the whole batch need no second pass: the number of real targets
comes from ``target`` alone, and the number of targets the second head gets right only divides
``embedding_ce``, whose gradient reaches the embedding and nothing else (its inputs are the
detached ``softmax(o2 / tau)`` and ``e``), so the embedding's summed gradient is divided once
at the end.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, distributed as dist, nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.parametrize import is_parametrized

from .functional import (LossOptions, LossOutput, check_inputs, label_rows, masked_terms,
                         term_divisors, term_weights, weighted_sum)
from .normalizers import Normalizers, whole_batch_counts
from .head import LabelEmbeddingHead
from .loss import LabelEmbeddingLoss

__all__ = ["chunked_label_embedding_loss", "ChunkedLabelEmbeddingLoss", "default_chunk_size"]

#: Elements of one ``chunk x C`` tensor when ``chunk_size`` is not given: 4M floats = 16 MiB,
#: so the chunk's few C-wide tensors stay near the CPU's last-level cache.
_CHUNK_ELEMENTS = 1 << 22


def default_chunk_size(num_classes: int) -> int:
    """Rows per chunk so one ``chunk x C`` float32 tensor is about 16 MiB (at least 16 rows)."""
    return max(16, _CHUNK_ELEMENTS // max(1, num_classes))


def chunked_label_embedding_loss(
    features: Tensor,
    target: Tensor,
    head: LabelEmbeddingHead,
    embedding: nn.Module,
    *,
    chunk_size: int | None = None,
    step: int | Tensor | None = None,
    normalizers: Normalizers | None = None, process_group: dist.ProcessGroup | None = None,
    **options: Any,
) -> LossOutput:
    """``label_embedding_loss(*head(features), target, embedding)`` without any ``N x C`` tensor.

    Args:
        features: the backbone's features ``h``, ``(*, F)``.
        target: class indices, ``(*)`` matching ``features.shape[:-1]``.
        head: the :class:`~labelemb.LabelEmbeddingHead` whose layers make the logits; its
            parameters receive gradients as if ``head(features)`` had been called.
        embedding: a labelemb embedding (full, compressed or fixed).
        chunk_size: targets per chunk; default :func:`default_chunk_size` ``(C)``.
        step: training calls so far; needed with ``warmup_steps``.
        normalizers, process_group: as :func:`~labelemb.functional.label_embedding_loss`.
        **options: as :class:`~labelemb.functional.LossOptions`; ``reduction`` is ``"mean"``
            or ``"sum"`` (per-target losses would need per-target gradients).

    Returns:
        :class:`~labelemb.functional.LossOutput`; equal to the unchunked loss's. Backward
        works once per call (the gradients are computed in forward) and not twice.
    """
    return compute_chunked_loss(features, target, head, embedding, LossOptions(**options),
                                chunk_size, step, (normalizers, process_group))


def compute_chunked_loss(features: Tensor, target: Tensor, head: LabelEmbeddingHead,
                         embedding: nn.Module, options: LossOptions, chunk_size: int | None,
                         step: int | Tensor | None, whole: tuple = (None, None)) -> LossOutput:
    """:func:`chunked_label_embedding_loss` with its options already checked."""
    _check_chunked(features, target, head, embedding, options, chunk_size)
    size = chunk_size or default_chunk_size(head.num_classes)
    weights = term_weights(options, step)
    params = [p for p in (*head.parameters(), *embedding.parameters()) if p.requires_grad]
    if not torch.is_grad_enabled():  # evaluation: the same sums, no gradients
        sums, _ = _walk(features, target, head, embedding, options, weights, size, [], whole)
        return _output(sums, weights)
    names: list[str] = []  # forward fills in the terms' names (outputs must be tensors)
    flat = _ChunkedLoss.apply(head, embedding, options, weights, size, names, whole, target,
                              features, *params)
    return _output(dict(zip(names, flat[1:], strict=True)), weights, flat[0])


def _output(sums: dict[str, Tensor], weights: dict[str, Any], loss: Tensor | None = None
            ) -> LossOutput:
    if loss is None:
        loss = weighted_sum(sums, weights)
    return LossOutput(loss, {k: v.detach() for k, v in sums.items()})


class _ChunkedLoss(torch.autograd.Function):
    """Forward computes the loss, its terms AND every gradient chunk by chunk; backward hands
    the gradients out, scaled by the incoming one."""

    @staticmethod
    def forward(ctx: Any, head: LabelEmbeddingHead, embedding: nn.Module,  # type: ignore[override]
                options: LossOptions, weights: dict[str, Any], size: int, names: list[str],
                whole: tuple, target: Tensor, features: Tensor, *params: Tensor
                ) -> tuple[Tensor, ...]:
        wants = [features] if ctx.needs_input_grad[8] else []
        wants += [p for p, need in zip(params, ctx.needs_input_grad[9:]) if need]
        with torch.enable_grad():
            sums, grads = _walk(features, target, head, embedding, options, weights, size,
                                wants, whole)
        ctx.grads = {id(t): g for t, g in zip(wants, grads)}
        ctx.order = [id(t) for t in (features, *params)]
        loss = weighted_sum(sums, weights)
        terms = tuple(sums.values())
        names.extend(sums)
        ctx.mark_non_differentiable(*terms)
        return (loss, *terms)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: Tensor, *_: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.grads is None:
            raise RuntimeError(
                "the chunked label embedding loss was already backpropagated: its gradients "
                "are computed in forward and handed out once; call the loss again")
        grads, ctx.grads = ctx.grads, None
        out = [grads.get(key) for key in ctx.order]
        if float(grad_loss) != 1.0:  # loss.backward() passes 1: skip a pass over every grad
            out = [None if g is None else g.mul_(grad_loss.to(g.dtype)) for g in out]
        return (None,) * 8 + tuple(out)


def _walk(features: Tensor, target: Tensor, head: LabelEmbeddingHead, embedding: nn.Module,
          options: LossOptions, weights: dict[str, Any], size: int, wants: list[Tensor],
          whole: tuple[Normalizers | None, Any]) -> tuple[dict[str, Tensor], list[Tensor]]:
    """The summed terms over all chunks and the loss's gradient for each tensor in ``wants``
    (``features``, the head's and embedding's parameters), with ``whole``'s counts."""
    h_all, t_all = features.reshape(-1, features.shape[-1]), target.reshape(-1)
    wanted = {id(t) for t in wants}
    grads = {id(t): torch.zeros_like(t, memory_format=torch.contiguous_format)  # summed in
             for t in wants}  # place, chunk by chunk
    grad_h = grads[id(features)].view_as(h_all) if id(features) in wanted else None
    layers = [layer for layer in (head.fc, head.aux_fc) if layer is not None]
    emb_params = [p for p in embedding.parameters() if id(p) in wanted]
    local_valid = (t_all != options.ignore_index).sum()
    n_valid = whole_batch_counts(local_valid, local_valid, *whole)[0]
    # The embedding_ce divisor needs the whole batch: divide that term (and so the
    # embedding's gradient, which only it reaches) once at the end.
    divisors = {**term_divisors(n_valid, n_valid, options, _dtype(features)), "embedding_ce": 1.0}
    sums: dict[str, Tensor] = {}
    n_correct = torch.zeros((), dtype=torch.long, device=t_all.device)
    # In label order a chunk embeds each of its labels once: e_y depends on the label alone.
    y_sorted, order = label_rows(t_all, head.num_classes).sort(stable=True)
    for start in range(0, max(len(t_all), 1), size):  # an empty batch still makes its terms
        rows = order[start : start + size]
        h = h_all[rows].detach().requires_grad_(grad_h is not None)  # the chunk's features
        outputs = head(h)
        labels, inverse = y_sorted[start : start + size].unique_consecutive(return_inverse=True)
        e = embedding(labels)  # (distinct labels, C); its gradient is taken below
        terms, _, correct = masked_terms(*outputs, t_all[rows], embedding, options, e, inverse)
        n_correct += correct.sum()
        chunk = {k: v.sum() for k, v in terms.items()}
        sums = {k: v.detach() + sums[k] if k in sums else v.detach() for k, v in chunk.items()}
        if not wants:
            continue
        objective = sum(weights[k] * v / divisors[k] for k, v in chunk.items())
        trained = [(layer, out) for layer, out in zip(layers, outputs)
                   if out.requires_grad and any(id(p) in wanted for p in layer.parameters())]
        inputs = [h] * (grad_h is not None) + [out for _, out in trained] + [e] * bool(emb_params)
        found = list(torch.autograd.grad(objective, inputs, allow_unused=True))
        if grad_h is not None:
            grad_h.index_copy_(0, rows, found.pop(0))
        for (layer, _), grad_out in zip(trained, found):
            _linear_weight_grads(layer, grad_out, h.detach(), grads)
        if emb_params:
            _embedding_grads(embedding, emb_params, labels, e, found[-1], grads)
    n_correct = whole_batch_counts(local_valid, n_correct, *whole)[1]
    final = term_divisors(n_valid, n_correct, options, _dtype(features))
    for p in emb_params:
        grads[id(p)].div_(final["embedding_ce"])
    return {k: v / final[k] for k, v in sums.items()}, [grads[id(t)] for t in wants]


def _embedding_grads(embedding: nn.Module, params: list[Tensor], y: Tensor, e: Tensor,
                     grad_rows: Tensor | None, grads: dict[int, Tensor]) -> None:
    """Backpropagate the gradient of the chunk's rows ``e = embedding(y)`` into the embedding.

    embedding_ce trains only the targets the second head gets right (at first almost none):
    when under half the rows have a gradient, the embedding runs again on those rows alone."""
    fitted = None if grad_rows is None else grad_rows.ne(0).any(1).nonzero().squeeze(1)
    if fitted is None or fitted.numel() == 0:
        return
    if 2 * fitted.numel() < len(y):
        e, grad_rows = embedding(y[fitted]), grad_rows[fitted]
    found = torch.autograd.grad(e, params, grad_rows, allow_unused=True)
    for p, g in zip(params, found):
        if g is not None:
            grads[id(p)].add_(g)


def _linear_weight_grads(layer: nn.Linear, grad_out: Tensor | None, x: Tensor,
                         grads: dict[int, Tensor]) -> None:
    """Add an ``nn.Linear``'s weight and bias gradients for this chunk into ``grads``, in
    place, as its own backward makes them (``dW = g^T x``, ``db = sum g``): a chunk's weight
    gradient never exists as a tensor of its own (100 MB per chunk at C = 50,000)."""
    if grad_out is None:
        return
    dtype = layer.weight.dtype
    grad_out, x = grad_out.to(dtype), x.to(dtype)
    if id(layer.weight) in grads:
        grads[id(layer.weight)].addmm_(grad_out.t(), x)
    if layer.bias is not None and id(layer.bias) in grads:
        grads[id(layer.bias)].add_(grad_out.sum(0))


def _dtype(features: Tensor) -> torch.dtype:
    return torch.float64 if features.dtype == torch.float64 else torch.float32


def _check_chunk_options(options: LossOptions, chunk_size: int | None) -> None:
    if options.reduction == "none":
        raise ValueError("reduction must be 'mean' or 'sum' for the chunked loss, got 'none'; "
                         "use label_embedding_loss for per-target losses")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _check_chunked(features: Tensor, target: Tensor, head: LabelEmbeddingHead,
                   embedding: nn.Module, options: LossOptions, chunk_size: int | None) -> None:
    _check_chunk_options(options, chunk_size)
    _check_head(head)
    if not isinstance(features, Tensor) or not features.is_floating_point():
        raise TypeError("features must be a floating Tensor")
    if features.dim() < 1 or features.shape[-1] != head.in_features:
        raise ValueError(f"features must be (*, {head.in_features}) for this head, got shape "
                         f"{tuple(features.shape)}")
    if getattr(embedding, "trainable", True) and not head.aux:
        raise ValueError("the head has no second layer (aux=False) but the embedding is "
                         "trainable: build LabelEmbeddingHead(..., aux=True) or use a "
                         "FixedLabelEmbedding (eq. 17)")
    # The logits' own checks on an empty (0, C) stand-in: target type, class count, devices.
    probe = features.new_empty(0, head.num_classes)
    check_inputs(probe, target.reshape(-1)[:0] if isinstance(target, Tensor) else target,
                 aux_logits=probe if head.aux else None, embedding=embedding)
    if tuple(target.shape) != tuple(features.shape[:-1]):
        raise ValueError(f"target shape {tuple(target.shape)} does not match features shape "
                         f"{tuple(features.shape)}: expected {tuple(features.shape[:-1])}")
    autocast = torch.is_autocast_enabled(features.device.type)
    for name, p in head.named_parameters():
        if p.device != features.device or (p.dtype != features.dtype and not autocast):
            raise ValueError(f"head parameter {name} is {p.dtype} on {p.device} but the "
                             f"features are {features.dtype} on {features.device}")


def _check_head(head: object) -> None:
    """The head's weight gradients are summed as ``nn.Linear``'s backward makes them, so its
    layers must be plain ``nn.Linear`` (no subclass, no parametrization such as weight_norm)."""
    if not isinstance(head, LabelEmbeddingHead):
        raise TypeError(f"head must be a LabelEmbeddingHead, got {type(head).__name__}")
    for name, layer in (("fc", head.fc), ("aux_fc", head.aux_fc)):
        if layer is not None and (type(layer) is not nn.Linear or is_parametrized(layer)):
            raise TypeError(f"the chunked loss needs plain nn.Linear head layers; head.{name} "
                            f"is a {type(layer).__name__}"
                            f"{' with parametrizations' if is_parametrized(layer) else ''}")


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
        super().__init__(embedding, **options)
        _check_chunk_options(self.options, chunk_size)
        self.chunk_size = chunk_size

    def forward(self, features: Tensor, target: Tensor,  # type: ignore[override]
                head: LabelEmbeddingHead, *, normalizers: Normalizers | None = None,
                process_group: dist.ProcessGroup | None = None) -> LossOutput:
        out = compute_chunked_loss(features, target, head, self.embedding, self.options,
                                   self.chunk_size, self.num_updates, (normalizers, process_group))
        self._count_update()
        return out

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size!r}, " + super().extra_repr()
