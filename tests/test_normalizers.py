"""A batch split into parts (shards, micro-batches): with the whole batch's counts the parts'
losses, terms and gradients sum to the one-batch loss's, for every loss of the package.

The real multi-process case (torchrun, gloo, process_group=) is in tests/test_train_ddp.py.
"""

from __future__ import annotations

import pytest
import torch

from labelemb import (
    FixedLabelEmbedding, LabelEmbedding, LabelEmbeddingHead, LabelEmbeddingLoss,
    LabelSmoothingLoss, OnlineLabelSmoothingLoss,
)
from labelemb.chunked import ChunkedLabelEmbeddingLoss
from labelemb.functional import term_divisors, trains_embedding
from labelemb.normalizers import Normalizers

F_DIM, C, N = 6, 7, 30
# Uneven parts, so that each part's own counts differ from the batch's share.
PARTS = [slice(0, 7), slice(7, 22), slice(22, N)]


def _batch(seed=0):
    """Features, targets (some ignored; half predicted right by the aux head, most with a
    probability above the hinge's alpha, so the summed hinge is active), head, embedding."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = LabelEmbeddingHead(F_DIM, C).double()
    emb = LabelEmbedding(C).double()
    with torch.no_grad():
        emb.weight.add_(torch.randn(C, C, generator=g, dtype=torch.float64))
        head.aux_fc.weight.mul_(12.0)
    h = torch.randn(N, F_DIM, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (N,), generator=g)
    with torch.no_grad():
        y[: N // 2] = head(h)[1][: N // 2].argmax(1)
    y[3::4] = -100
    return h, y, head, emb


def _params(head, criterion):
    return [*head.parameters(), *(p for p in criterion.parameters() if p.requires_grad)]


def _grads(loss, params):
    return [torch.zeros_like(p) if g is None else g
            for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True))]


def _whole_and_parts(criterion, head, h, y, counts):
    """The one-batch (loss, terms, grads) and the parts' summed ones."""
    params = _params(head, criterion)
    whole = criterion(*head(h), y)
    sums = None
    for rows in PARTS:
        part = criterion(*head(h[rows]), y[rows], normalizers=counts)
        got = [part.loss.detach(), *part.terms.values(), *_grads(part.loss, params)]
        sums = got if sums is None else [a + b for a, b in zip(sums, got)]
    return ([whole.loss.detach(), *whole.terms.values(), *_grads(whole.loss, params)],
            sums, list(whole.terms))


def _counts(y, head, h, criterion):
    n_valid = int((y != -100).sum())
    n_correct = int(trains_embedding(head(h)[1], y, criterion.options).sum()) if head.aux else None
    return n_valid, n_correct


@pytest.mark.parametrize("preset", ["classification", "seq2seq"])
def test_parts_with_the_whole_batch_counts_sum_to_the_batch(preset):
    h, y, head, emb = _batch()
    criterion = LabelEmbeddingLoss.from_preset(preset, emb, warmup_steps=0)
    n_valid, n_correct = _counts(y, head, h, criterion)
    whole, parts, names = _whole_and_parts(criterion, head, h, y, Normalizers(n_valid, n_correct))
    assert whole[1 + names.index("aux_hinge")] > 0.1  # the summed hinge is really active
    for a, b in zip(whole, parts):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_each_part_dividing_by_its_own_counts_is_not_the_batch_loss():
    """The failure this module exists for: the summed hinge and the n_correct ratio."""
    h, y, head, emb = _batch()
    criterion = LabelEmbeddingLoss.from_preset("classification", emb)
    whole = criterion(*head(h), y).terms
    mean_of_parts = {k: sum(criterion(*head(h[r]), y[r]).terms[k] * (r.stop - r.start) / N
                            for r in PARTS) for k in whole}
    assert not torch.allclose(mean_of_parts["aux_hinge"], whole["aux_hinge"], rtol=0.05)
    assert not torch.allclose(mean_of_parts["embedding_ce"], whole["embedding_ce"], rtol=1e-3)


def test_a_deferred_n_correct_leaves_only_the_embedding_to_divide():
    """Gradient accumulation: n_correct is known after the last part; dividing the embedding's
    summed gradient and the summed term once then gives the batch's exactly."""
    h, y, head, emb = _batch()
    criterion = LabelEmbeddingLoss.from_preset("classification", emb)
    n_valid, n_correct = _counts(y, head, h, criterion)
    whole, parts, names = _whole_and_parts(criterion, head, h, y, Normalizers(n_valid, None))
    divisor = term_divisors(torch.tensor(n_valid), torch.tensor(n_correct), criterion.options,
                            torch.float64)["embedding_ce"]
    k_emb = 1 + names.index("embedding_ce")
    assert not torch.allclose(parts[k_emb], whole[k_emb])  # summed: not yet divided
    parts[k_emb] = parts[k_emb] / divisor
    parts[-1] = parts[-1] / divisor  # the embedding's weight, the last parameter
    for a, b in zip(whole[1:], parts[1:]):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_correct", ["given", "deferred"])
def test_the_chunked_loss_takes_the_same_counts(n_correct):
    h, y, head, emb = _batch()
    plain = LabelEmbeddingLoss.from_preset("classification", emb)
    chunked = ChunkedLabelEmbeddingLoss.from_preset("classification", emb, chunk_size=4)
    n_valid, correct = _counts(y, head, h, plain)
    counts = Normalizers(n_valid, correct if n_correct == "given" else None)
    params = _params(head, plain)
    for rows in PARTS:
        a = plain(*head(h[rows]), y[rows], normalizers=counts)
        b = chunked(h[rows], y[rows], head, normalizers=counts)
        torch.testing.assert_close(b.loss, a.loss, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(b.terms, {k: v for k, v in a.terms.items()}, rtol=1e-9,
                                   atol=1e-9)
        torch.testing.assert_close(_grads(b.loss, params), _grads(a.loss, params), rtol=1e-9,
                                   atol=1e-9)


def test_a_fixed_embedding_needs_only_n_valid():
    h, y, head, _ = _batch()
    emb = FixedLabelEmbedding(torch.randn(C, C)).double()
    criterion = LabelEmbeddingLoss.from_preset("classification", emb)
    head.aux_fc = None
    whole, parts, _ = _whole_and_parts(criterion, head, h, y, Normalizers(int((y != -100).sum())))
    for a, b in zip(whole, parts):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: LabelSmoothingLoss(0.0), lambda: LabelSmoothingLoss(0.1),
                                  lambda: OnlineLabelSmoothingLoss(C, smoothing=0.2).double()],
                         ids=["baseline", "ls", "ols"])
def test_the_baselines_take_the_whole_batch_n_valid(make):
    h, y, head, _ = _batch()
    whole, parts, _ = _whole_and_parts(make(), head, h, y, Normalizers(int((y != -100).sum())))
    for a, b in zip(whole, parts):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_normalizers_and_a_process_group_together_are_refused():
    h, y, head, emb = _batch()
    criterion = LabelEmbeddingLoss(emb)
    with pytest.raises(ValueError, match="not both"):
        criterion(*head(h), y, normalizers=Normalizers(N, 3), process_group=object())
    with pytest.raises(TypeError, match="Normalizers"):
        criterion(*head(h), y, normalizers=(N, 3))
