"""Head plus label embedding loss in chunks of targets, for very large label sets.

The plain path, ``LabelEmbeddingHead`` then the loss, holds three ``N x C`` tensors (``logits``,
``aux_logits``, the embedding rows ``e``) and their gradients: with ``C = 50,000`` and
``N = 4,096`` targets, 0.8 GB each, several times what plain cross-entropy needs.

:func:`chunked_label_embedding_loss` computes the same loss from the features, walking the
targets in label order. A block (twice the features' width in rows, at most 512) makes the
head's two outputs and the rows ``e`` of its distinct labels once; each chunk of the block runs
the one definition of the terms (:func:`labelemb.functional.masked_terms`) under autograd on
slices of them and takes their gradients; the block's backward is then ``nn.Linear``'s, by
hand, into the features' and weights' gradients, and the embedding's through the rows
``embedding_ce`` trains. Backward hands the sums out. Peak memory is a block's head outputs and
label rows, one chunk's graph and the gradients, never an ``N x C`` tensor. Two sizes, each
from the shapes (:func:`block_size`, :func:`default_chunk_size`): a product on fewer rows than
the features' width re-reads the ``C x F`` weight every few rows (half speed on CPU), while the
terms' dozen ``rows x C`` tensors are cheapest small enough to stay in the cache.

Normalisers that depend on the whole batch need no second pass: the number of real targets
comes from ``target`` alone, and the number of targets the second head gets right only divides
``embedding_ce``, whose gradient reaches the embedding and nothing else (its inputs are the
detached ``softmax(o2 / tau)`` and ``e``), so the embedding's summed gradient is divided once
at the end.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, distributed as dist, nn
from torch.autograd.function import once_differentiable
from torch.profiler import record_function

from .checks import check_values
from .chunked_inputs import HeadLayers, check_chunk_options, check_chunked
from .functional import (LossOptions, LossOutput, _float, label_rows, masked_terms,
                         term_divisors, term_weights, weighted_sum)
from .normalizers import Normalizers, finish_deferred_embedding_ce, whole_batch_counts
from .head import LabelEmbeddingHead
from .loss import LabelEmbeddingLoss

__all__ = ["chunked_label_embedding_loss", "chunked_cross_entropy", "ChunkedLabelEmbeddingLoss",
           "HeadLayers", "default_chunk_size", "block_size"]

#: A default chunk: the rows that make one ``chunk x C`` float32 tensor 2 MiB, so the terms'
#: dozen such tensors stay in the cache; at least 16 (a chunk costs a few dozen operator
#: calls), at most 64 (a larger chunk's graph outweighs cross-entropy's logits at small C).
#: The sweeps behind the three numbers: docs/PERFORMANCE.md ("Sizes from the shapes").
_CHUNK_BYTES, _MIN_CHUNK_ROWS, _MAX_CHUNK_ROWS = 2 << 20, 16, 64


def default_chunk_size(num_classes: int) -> int:
    """Rows per chunk: as many as make one ``chunk x C`` float32 tensor 2 MiB, at least 16 and
    at most 64 (64 at C = 6,698, 26 at 20,000, 16 from 32,768 up)."""
    rows = _CHUNK_BYTES // (4 * max(1, num_classes))
    return max(_MIN_CHUNK_ROWS, min(_MAX_CHUNK_ROWS, rows))


#: Most rows of a block: its three ``block x C`` buffers are 256 MiB each at C = 128,000.
_BLOCK_ROWS = 512


def block_size(chunk_size: int, in_features: int) -> int:
    """Rows per block: the fewest whole chunks that make ``2 F`` rows (``F = in_features``), at
    most 512. A block's products stream the ``C x F`` weights and weight gradients once against
    its ``block x C`` outputs: on ``2 F`` rows that traffic is at most half the outputs'."""
    rows = min(2 * max(in_features, 1), _BLOCK_ROWS)
    return chunk_size * -(-rows // chunk_size)


def chunked_label_embedding_loss(
    features: Tensor,
    target: Tensor,
    head: LabelEmbeddingHead | HeadLayers,
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
        head: the :class:`~labelemb.LabelEmbeddingHead` whose layers make the logits, or
            :class:`HeadLayers` (a language model's own LM head and a second layer); its
            parameters receive gradients as if ``head(features)`` had been called.
        embedding: a labelemb embedding (full, compressed or fixed).
        chunk_size: targets per chunk of the terms; default :func:`default_chunk_size` ``(C)``.
            The head's products run on blocks of :func:`block_size` ``(chunk_size, F)`` rows.
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


def chunked_cross_entropy(
    features: Tensor, target: Tensor, head: nn.Linear | HeadLayers, *, smoothing: float = 0.0,
    chunk_size: int | None = None, normalizers: Normalizers | None = None,
    process_group: dist.ProcessGroup | None = None, ignore_index: int = -100,
    reduction: str = "mean", validate: bool = True,
) -> LossOutput:
    """``F.cross_entropy(head(features), target, label_smoothing=smoothing)`` the same way:
    chunk by chunk, never an ``N x C`` tensor (the baselines of a large-vocabulary model).

    Args:
        features ``(*, F)``, target ``(*)``: as :func:`chunked_label_embedding_loss`.
        head: the ``nn.Linear`` that makes the logits (a language model's LM head).
        smoothing: label smoothing in ``[0, 1)``; 0 is cross-entropy.
        normalizers, process_group: the whole batch's ``n_valid`` (:mod:`labelemb.normalizers`).

    Returns:
        :class:`~labelemb.functional.LossOutput` with one term, ``ce``.
    """
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not (
            0.0 <= smoothing < 1.0):
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    options = LossOptions(ignore_index=ignore_index, reduction=reduction, validate=validate)
    layers = HeadLayers(head) if isinstance(head, nn.Linear) else head
    if layers.aux:
        raise ValueError("chunked_cross_entropy takes one layer; got a head with aux_fc")
    return compute_chunked_loss(features, target, layers, None, options, chunk_size, None,
                                (normalizers, process_group), float(smoothing))


def compute_chunked_loss(features: Tensor, target: Tensor, head: LabelEmbeddingHead | HeadLayers,
                         embedding: nn.Module | None, options: LossOptions,
                         chunk_size: int | None, step: int | Tensor | None,
                         whole: tuple = (None, None), smoothing: float = 0.0) -> LossOutput:
    """:func:`chunked_label_embedding_loss` with its options already checked; without an
    ``embedding``, :func:`chunked_cross_entropy`."""
    layers = check_chunked(features, target, head, embedding, options, chunk_size)
    weights = term_weights(options, step) if embedding is not None else {"ce": 1.0}
    plan = _Plan(layers, embedding, options, weights,
                 chunk_size or default_chunk_size(layers.num_classes), smoothing)
    trained = (*layers.parameters(), *(() if embedding is None else embedding.parameters()))
    params = [p for p in dict.fromkeys(trained) if p.requires_grad]  # a tied weight once
    if not torch.is_grad_enabled():  # evaluation: the same sums, no gradients
        sums, _ = _walk(features, target, plan, [], whole)
        return _output(sums, weights)
    names: list[str] = []  # forward fills in the terms' names (outputs must be tensors)
    flat = _ChunkedLoss.apply(plan, names, whole, target, features, *params)
    return _output(dict(zip(names, flat[1:], strict=True)), weights, flat[0])


class _Plan(NamedTuple):
    """What one call computes: the layers, the terms (label embedding's, or cross-entropy's
    when ``embedding`` is ``None``) and the chunk size."""

    layers: HeadLayers
    embedding: nn.Module | None
    options: LossOptions
    weights: dict[str, Any]
    size: int
    smoothing: float = 0.0

    @property
    def num_classes(self) -> int:
        return self.layers.num_classes


def _output(sums: dict[str, Tensor], weights: dict[str, Any], loss: Tensor | None = None
            ) -> LossOutput:
    if loss is None:
        loss = weighted_sum(sums, weights)
    return LossOutput(loss, {k: v.detach() for k, v in sums.items()})


class _ChunkedLoss(torch.autograd.Function):
    """Forward computes the loss, its terms AND every gradient chunk by chunk; backward hands
    the gradients out, scaled by the incoming one."""

    @staticmethod
    def forward(ctx: Any, plan: _Plan, names: list[str],  # type: ignore[override]
                whole: tuple, target: Tensor, features: Tensor, *params: Tensor
                ) -> tuple[Tensor, ...]:
        wants = [features] if ctx.needs_input_grad[4] else []
        wants += [p for p, need in zip(params, ctx.needs_input_grad[5:]) if need]
        with torch.enable_grad():
            sums, grads = _walk(features, target, plan, wants, whole)
        ctx.grads = {id(t): g for t, g in zip(wants, grads)}
        ctx.order = [id(t) for t in (features, *params)]
        loss = weighted_sum(sums, plan.weights)
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
        return (None,) * 4 + tuple(out)


def _walk(features: Tensor, target: Tensor, plan: _Plan, wants: list[Tensor],
          whole: tuple[Normalizers | None, Any]) -> tuple[dict[str, Tensor], list[Tensor]]:
    """The summed terms over all chunks and the loss's gradient for each tensor in ``wants``
    (``features``, the head's and embedding's parameters), with ``whole``'s counts."""
    options = plan.options
    # Detached once: the walk computes the features' gradient itself.
    h_all, t_all = features.detach().reshape(-1, features.shape[-1]), target.reshape(-1)
    if options.validate and not bool(torch.isfinite(h_all).all()):
        # Named here: a NaN in the features would otherwise be reported in the logits.
        raise ValueError("features contain NaN or inf (pass validate=False to skip this check)")
    local_valid = (t_all != options.ignore_index).sum()
    n_valid = whole_batch_counts(local_valid, local_valid, *whole)[0]
    # The embedding_ce divisor needs the whole batch: divide that term (and so the
    # embedding's gradient, which only it reaches) once at the end.
    divisors = {**term_divisors(n_valid, n_valid, options, _dtype(features)), "embedding_ce": 1.0}
    block = block_size(plan.size, plan.layers.in_features)
    walk = _Walk(plan, divisors, wants, features, min(block, max(len(h_all), 1)))
    # In label order a block embeds each of its labels once: e_y depends on the label alone.
    y_sorted, order = label_rows(t_all, plan.num_classes).sort(stable=True)
    for start in range(0, max(len(t_all), 1), block):  # an empty batch still makes its terms
        rows = order[start : start + block]
        walk.block(h_all[rows], t_all[rows], y_sorted[start : start + block], rows)
    n_correct = whole_batch_counts(local_valid, walk.n_correct, *whole)[1]
    sums = {k: v / divisors[k] for k, v in walk.sums.items()}  # embedding_ce's still summed
    finish_deferred_embedding_ce([walk.grads[id(p)] for p in walk.emb_params], n_valid,
                                 n_correct, options, sums, _dtype(features))
    return sums, [walk.grads[id(t)] for t in wants]


class _Walk:
    """The terms' sums and the loss's gradients of one call, filled in block by block of at most
    ``rows`` rows (the buffers' size)."""

    def __init__(self, plan: _Plan, divisors: dict[str, Any], wants: list[Tensor],
                 features: Tensor, rows: int):
        self.plan, self.embedding, self.options, self.size = (plan, plan.embedding, plan.options,
                                                              plan.size)
        self.weights, self.divisors = plan.weights, divisors
        self.grads = {id(t): torch.zeros_like(t, memory_format=torch.contiguous_format)
                      for t in wants}  # summed in place, block by block
        h_all = features.reshape(-1, features.shape[-1])
        grad_h = self.grads.get(id(features))
        self.grad_h = None if grad_h is None else grad_h.view_as(h_all)
        self.layers = [_Linear(layer, h_all, rows, self.grads) for layer in plan.layers
                       if layer is not None]
        # fc's output needs a gradient for the features too; aux_fc's input is detached.
        self.layers[0].trains |= self.grad_h is not None
        self.emb_params = ([] if self.embedding is None else
                           [p for p in self.embedding.parameters() if id(p) in self.grads])
        self.grad_e: Tensor | None = None  # (rows, C), reused by every block
        self.grad_e_zeroed = False  # for this block, by its first chunk that trains e
        self.sums: dict[str, Tensor] = {}
        self.n_correct = torch.zeros((), dtype=torch.long, device=features.device)

    def block(self, h: Tensor, target: Tensor, y: Tensor, rows: Tensor) -> None:
        """One block, rows ``rows`` of the batch in label order: the head's and the embedding's
        products once, the terms chunk by chunk, then the products' backward."""
        with record_function("labelemb.chunked.forward"):  # the phases, named for profilers
            outputs = [linear.forward(h) for linear in self.layers]  # (rows, C) each
            labels, inverse = y.unique_consecutive(return_inverse=True)
            e = None if self.embedding is None else self.embedding(labels)  # (labels, C)
        grad_e = self._grad_e_buffer(e) if self.emb_params else None
        self.grad_e_zeroed = False
        # Per label row, the targets that train the embedding (only when it trains).
        fitted = None if grad_e is None else torch.zeros(len(labels), dtype=torch.long,
                                                         device=h.device)
        starts = range(0, max(len(target), 1), self.size)
        # Chunk i uses rows [low_i, high_i) of e (labels are sorted): one device sync a block.
        last = [min(start + self.size, len(target)) - 1 for start in starts]
        ranges = (torch.stack([inverse[list(starts)], inverse[last] + 1]).tolist()
                  if len(target) else [[0], [0]])
        e_values = None if e is None else e.detach()  # each chunk's leaves are slices of it
        with record_function("labelemb.chunked.terms"):
            for start, low, high in zip(starts, *ranges):
                self._chunk(outputs, e_values, grad_e, fitted,
                            inverse[start : start + self.size] - low, target,
                            slice(start, start + self.size), slice(low, high))
        with record_function("labelemb.chunked.head_backward"):
            for i, (linear, grad_out) in enumerate(zip(self.layers, outputs)):
                grad_h = linear.backward(grad_out, h, i == 0 and self.grad_h is not None)
                if grad_h is not None:
                    self.grad_h.index_copy_(0, rows, grad_h)
        with record_function("labelemb.chunked.embedding_backward"):
            if grad_e is not None:
                _embedding_grads(self.embedding, self.emb_params, labels, e, grad_e,
                                 fitted.nonzero().squeeze(1), self.grads)

    def _grad_e_buffer(self, e: Tensor) -> Tensor:
        """``e``'s gradient, not zeroed, in one ``(rows, C)`` buffer every block reuses: a block
        none of whose targets trains the embedding never zeroes or reads it."""
        if self.grad_e is None:
            self.grad_e = e.new_empty(len(self.layers[0].buffer), e.shape[1])
        return self.grad_e[: len(e)]

    def _terms(self, leaves: list[Tensor], target: Tensor, rows_e: Tensor | None,
               index: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
        """One chunk's terms by the one definition: :func:`masked_terms`, or cross-entropy's
        ``F.cross_entropy``; and the targets that train the embedding."""
        if self.embedding is None:
            return _cross_entropy_terms(leaves[0], target, self.plan), None
        terms, _, correct = masked_terms(*leaves, *[None] * (2 - len(leaves)), target,
                                         self.embedding, self.options, rows_e, index)
        return terms, correct

    def _chunk(self, outputs: list[Tensor], e: Tensor | None, grad_e: Tensor | None,
               fitted: Tensor | None, index: Tensor, target: Tensor, cut: slice,
               labels: slice) -> None:
        """The terms of one chunk (``cut`` of the block), summed into ``self.sums``; their
        gradients overwrite the chunk's rows of the trained ``outputs`` (no later chunk reads
        them) and are added into its ``labels`` rows of ``grad_e``; target ``i`` of the chunk
        has label row ``index[i]`` of ``e[labels]``. ``fitted`` counts, per label row, the
        targets that train the embedding."""
        leaves = [out[cut].detach().requires_grad_(linear.trains)
                  for out, linear in zip(outputs, self.layers)]
        rows_e = None if e is None else e[labels].requires_grad_(grad_e is not None)
        terms, correct = self._terms(leaves, target[cut], rows_e, index)
        if correct is not None:
            self.n_correct += correct.sum()
        if fitted is not None:
            fitted[labels].index_add_(0, index, correct.long())
        chunk = {k: v.sum() for k, v in terms.items()}
        self.sums = {k: v.detach() + self.sums.get(k, 0) for k, v in chunk.items()}
        trained = [(out[cut], leaf) for out, leaf in zip(outputs, leaves) if leaf.requires_grad]
        # e's rows only take embedding_ce's gradient, zero unless a target here trains e.
        fits = grad_e is not None and _any_trains(correct)
        inputs = [leaf for _, leaf in trained] + ([rows_e] if fits else [])
        if not inputs:
            return
        objective = sum(self.weights[k] * v / self.divisors[k] for k, v in chunk.items())
        found = torch.autograd.grad(objective, inputs, allow_unused=True)
        for (rows, _), grad in zip(trained, found):
            rows.zero_() if grad is None else rows.copy_(grad)
        if fits:
            if not self.grad_e_zeroed:
                grad_e.zero_()
                self.grad_e_zeroed = True
            if found[-1] is not None:
                grad_e[labels] += found[-1]


def _any_trains(correct: Tensor | None) -> bool:
    """Whether any target of a chunk trains the embedding (``correct``, ``(M,)``): free to read
    on CPU; on an accelerator it would wait for the queue, so there it is taken as yes."""
    return correct is not None and (correct.device.type != "cpu" or bool(correct.any()))


def _cross_entropy_terms(logits: Tensor, target: Tensor, plan: _Plan) -> dict[str, Tensor]:
    """``{"ce": (M,)}``: ``F.cross_entropy`` per target with ``plan.smoothing``, 0 where
    ignored; ``logits`` ``(M, C)``."""
    options = plan.options
    if options.validate:
        check_values(target, target != options.ignore_index, logits=logits)
    return {"ce": F.cross_entropy(_float(logits), target.long(), reduction="none",
                                  ignore_index=options.ignore_index,
                                  label_smoothing=plan.smoothing)}


class _Linear:
    """An ``nn.Linear``'s products by hand, in the dtype ``F.linear`` computes in here
    (autocast's included; the weight gradient in the weight's dtype). The outputs go into one buffer
    that every block reuses (on CPU a fresh C-wide tensor costs a page fault per 4 KiB of it on
    first touch); the weight gradients are summed into ``grads`` in place (asking
    autograd would make a ``C x F`` tensor per block)."""

    def __init__(self, layer: nn.Linear, features: Tensor, rows: int, grads: dict[int, Tensor]):
        with torch.no_grad():
            dtype = F.linear(features[:0], layer.weight[:0]).dtype
        self.layer, self.grads = layer, grads
        self.trains = any(id(p) in grads for p in layer.parameters())
        self.weight = layer.weight.detach().to(dtype)
        self.bias = None if layer.bias is None else layer.bias.detach().to(dtype)
        self.buffer = features.new_empty(rows, layer.out_features, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        """``x W^T + b``: ``(rows, in) -> (rows, out)``, in the buffer."""
        x, out = x.to(self.weight.dtype), self.buffer[: len(x)]
        if self.bias is None:
            return torch.mm(x, self.weight.t(), out=out)
        return torch.addmm(self.bias, x, self.weight.t(), out=out)

    def backward(self, grad_out: Tensor, x: Tensor, input_grad: bool) -> Tensor | None:
        """Add ``g^T x`` and ``sum g`` to the weight's and bias's gradients; return the input's
        gradient ``g W`` ``(rows, in)`` if ``input_grad``."""
        weight, bias = self.layer.weight, self.layer.bias
        if id(weight) in self.grads or (bias is not None and id(bias) in self.grads):
            g = grad_out.to(weight.dtype)
            if id(weight) in self.grads:
                self.grads[id(weight)].addmm_(g.t(), x.to(weight.dtype))
            if bias is not None and id(bias) in self.grads:
                self.grads[id(bias)].add_(g.sum(0))
        return torch.mm(grad_out, self.weight).to(x.dtype) if input_grad else None


def _embedding_grads(embedding: nn.Module, params: list[Tensor], y: Tensor, e: Tensor,
                     grad_rows: Tensor, fitted: Tensor, grads: dict[int, Tensor]) -> None:
    """Backpropagate the gradient of the block's rows ``e = embedding(y)`` into the embedding.

    embedding_ce trains only the rows ``fitted`` (the labels of targets the second head gets
    right: at first almost none); the others' gradient is zero. When under half the rows are
    fitted, the embedding runs again on those rows alone."""
    if fitted.numel() == 0:
        return
    if 2 * fitted.numel() < len(y):
        e, grad_rows = embedding(y[fitted]), grad_rows[fitted]
    found = torch.autograd.grad(e, params, grad_rows, allow_unused=True)
    for p, g in zip(params, found):
        if g is not None:
            grads[id(p)].add_(g)


def _dtype(features: Tensor) -> torch.dtype:
    return torch.float64 if features.dtype == torch.float64 else torch.float32


class ChunkedLabelEmbeddingLoss(LabelEmbeddingLoss):
    """:class:`~labelemb.LabelEmbeddingLoss` that also applies the head, chunk by chunk.

    Same options, presets, ``num_updates`` warm-up counter and state-dict keys as
    :class:`~labelemb.LabelEmbeddingLoss`, so the two are interchangeable in checkpoints; the
    call is ``criterion(features, target, head)`` instead of ``criterion(logits, aux_logits,
    target)``. Use it when ``C`` is large (a 50,000-word vocabulary).

    Args:
        embedding: the label embedding this loss owns and trains.
        chunk_size: targets per chunk of the terms (``None``: :func:`default_chunk_size`);
            the head's products run on blocks of :func:`block_size` ``(chunk_size, F)`` rows.
        **options: as :class:`~labelemb.LabelEmbeddingLoss`; ``reduction`` ``"mean"``/``"sum"``.

    Example::

        head = LabelEmbeddingHead(512, 50_000)
        criterion = ChunkedLabelEmbeddingLoss.from_preset(
            "seq2seq", CompressedLabelEmbedding(50_000, 100))
        loss, terms = criterion(decoder_states.flatten(0, 1), target.flatten(), head)
    """

    def __init__(self, embedding: nn.Module, chunk_size: int | None = None, **options: Any):
        super().__init__(embedding, **options)
        check_chunk_options(self.options, chunk_size)
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
