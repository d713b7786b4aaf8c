"""Property tests: for any shapes, class counts, ignore masks, dtypes, devices available here and
option values, the loss and the chunked loss return finite values (and finite gradients) or
raise a ValueError/TypeError. Never a NaN in silence, never a crash."""

from __future__ import annotations

import math

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelemb import (ChunkedLabelEmbeddingLoss, CompressedLabelEmbedding, FixedLabelEmbedding,
                      LabelEmbedding, LabelEmbeddingHead, LabelEmbeddingLoss)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Each option's values: most valid, some not (those must raise ValueError).
OPTIONS = {
    "beta": [None, 0.0, 0.5, 1.0, 1.5, -0.1],
    "tau": [0.5, 2.0, 0.0, -1.0],
    "alpha": [0.0, 0.9, 1.0, 1.1],
    "hinge": ["l1", "l2", "abs", "l3"],
    "hinge_reduction": ["sum", "mean", "max"],
    "mask_wrong": [True, False],
    "embedding_normalizer": ["correct", "valid", "x"],
    "warmup_steps": [0, 2, -1],
    "ignore_index": [-100, 0],
}
INVALID = {("beta", 1.5), ("beta", -0.1), ("tau", 0.0), ("tau", -1.0), ("alpha", 1.1),
           ("hinge", "l3"), ("hinge_reduction", "max"), ("embedding_normalizer", "x"),
           ("warmup_steps", -1)}
SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _draw_options(data) -> tuple[dict, bool]:
    options = {k: data.draw(st.sampled_from(v), label=k) for k, v in OPTIONS.items()}
    return options, any((k, v) in INVALID for k, v in options.items())


def _draw_embedding(data, c: int, dtype: torch.dtype):
    kind = data.draw(st.sampled_from(["full", "compressed", "fixed"]), label="embedding")
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    scale = data.draw(st.sampled_from([1.0, 30.0]), label="embedding scale")
    if kind == "compressed":
        emb = CompressedLabelEmbedding(c, 3)
        with torch.no_grad():
            emb.A.weight.mul_(scale)
        return emb.to(dtype)
    weight = torch.randn(c, c) * scale
    return (LabelEmbedding(c) if kind == "full" else FixedLabelEmbedding(weight)).to(dtype)


def _draw_target(data, shape: tuple[int, ...], c: int, ignore_index: int) -> tuple[torch.Tensor, bool]:
    values = st.one_of(st.integers(0, c - 1), st.just(ignore_index), st.just(-100),
                       st.integers(-3, c + 3))
    flat = data.draw(st.lists(values, min_size=math.prod(shape), max_size=math.prod(shape)),
                     label="target")
    target = torch.tensor(flat, dtype=torch.long).reshape(shape)
    bad = any(v != ignore_index and not 0 <= v < c for v in flat)
    return target, bad


def _poison(data, x: torch.Tensor, label: str) -> bool:
    """Sometimes put a NaN or inf into ``x``; True if it did."""
    if x.numel() == 0 or not data.draw(st.booleans(), label=f"poison {label}"):
        return False
    value = data.draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]), label=label)
    x.view(-1)[data.draw(st.integers(0, x.numel() - 1), label=f"{label} index")] = value
    return True


def _poison_embedding(data, embedding, target: torch.Tensor) -> bool:
    """Sometimes put a NaN or inf into one row of a full or fixed embedding; True if a target
    looks that row up (validation checks the rows the loss reads, ignored targets' included)."""
    weight = getattr(getattr(embedding, "inner", embedding), "weight", None)
    if weight is None or not data.draw(st.booleans(), label="poison embedding"):
        return False
    c = weight.shape[0]
    row = data.draw(st.integers(0, c - 1), label="poisoned row")
    with torch.no_grad():
        weight[row, data.draw(st.integers(0, c - 1), label="column")] = float("nan")
    return bool((target.long().clamp(0, c - 1) == row).any())


def _finite_or_refused(call, bad: bool, tensors) -> None:
    """``call()`` raises a ValueError/TypeError exactly when the input is bad; otherwise its
    loss, terms and gradients (w.r.t. ``tensors``) are finite."""
    try:
        out = call()
    except (ValueError, TypeError) as err:
        assert str(err)
        assert bad, f"refused good input: {err}"
        return
    assert not bad, "bad input was accepted"
    _assert_finite(out, tensors)


def _assert_finite(out, tensors) -> None:
    assert torch.isfinite(out.loss).all(), out
    assert all(torch.isfinite(v).all() for v in out.terms.values()), out.terms
    wanted = [t for t in tensors if t.requires_grad]
    if wanted and out.loss.requires_grad:
        grads = torch.autograd.grad(out.loss.sum(), wanted, allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)


@SETTINGS
@given(data=st.data())
def test_label_embedding_loss_is_finite_or_raises(data):
    n = data.draw(st.integers(0, 6), label="N")
    c = data.draw(st.integers(1, 6), label="C")
    extra = data.draw(st.sampled_from([(), (3,)]), label="extra dims")
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    scale = data.draw(st.sampled_from([1.0, 100.0, 3e4]), label="logit scale")
    options, bad_option = _draw_options(data)
    options["reduction"] = data.draw(st.sampled_from(["mean", "sum", "none"]), label="reduction")
    embedding = _draw_embedding(data, c, data.draw(st.sampled_from(DTYPES[:2]), label="emb dtype"))
    shape = (n, c, *extra)
    logits = (torch.randn(shape) * scale).to(dtype)
    aux = None if isinstance(embedding, FixedLabelEmbedding) and data.draw(
        st.booleans(), label="no aux") else (torch.randn(shape) * scale).to(dtype)
    target, bad_target = _draw_target(data, (n, *extra), c, options["ignore_index"])
    poisoned = _poison(data, logits, "logits") | (aux is not None and _poison(data, aux, "aux"))
    poisoned |= not torch.isfinite(logits).all() or (aux is not None and not torch.isfinite(aux).all())
    poisoned |= _poison_embedding(data, embedding, target)
    logits.requires_grad_()

    def call():
        criterion = LabelEmbeddingLoss(embedding, **options)
        for _ in range(2):
            criterion(logits, aux, target)  # through the warm-up switch
        return criterion(logits, aux, target)

    _finite_or_refused(call, bad_option or bad_target or poisoned,
                       [logits, *embedding.parameters()])


@SETTINGS
@given(data=st.data())
def test_chunked_loss_is_finite_or_raises(data):
    n = data.draw(st.integers(0, 9), label="N")
    c = data.draw(st.integers(1, 6), label="C")
    dtype = data.draw(st.sampled_from(DTYPES[:2]), label="dtype")
    options, bad_option = _draw_options(data)
    options["reduction"] = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
    embedding = _draw_embedding(data, c, dtype)
    head = LabelEmbeddingHead(4, c, aux=not isinstance(embedding, FixedLabelEmbedding)).to(dtype)
    features = torch.randn(n, 4, dtype=dtype) * data.draw(st.sampled_from([1.0, 1e3]))
    target, bad_target = _draw_target(data, (n,), c, options["ignore_index"])
    poisoned = _poison(data, features, "features") | _poison_embedding(data, embedding, target)
    features.requires_grad_()
    chunk_size = data.draw(st.integers(1, 4), label="chunk size")

    def call():
        criterion = ChunkedLabelEmbeddingLoss(embedding, chunk_size=chunk_size, **options)
        return criterion(features, target, head)

    _finite_or_refused(call, bad_option or bad_target or poisoned,
                       [features, *head.parameters(), *embedding.parameters()])
