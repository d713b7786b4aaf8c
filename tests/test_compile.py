"""torch.compile: the loss compiles whole (fullgraph), never recompiles as the warm-up clock
ticks, and gives the eager loss's values and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
from torch import nn

from labelemb import (ChunkedLabelEmbeddingLoss, CompressedLabelEmbedding, LabelEmbedding,
                      LabelEmbeddingHead, LabelEmbeddingLoss)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _batch(n=32, f=16, c=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, f, generator=g), torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("embedding", [LabelEmbedding(10), CompressedLabelEmbedding(10, 4)],
                         ids=["full", "compressed"])
def test_compiled_criterion_is_one_graph_through_the_warm_up(embedding):
    torch.manual_seed(0)
    head = LabelEmbeddingHead(16, 10)
    eager = LabelEmbeddingLoss(embedding, warmup_steps=2)
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)  # fullgraph: no break
    x, y = _batch()
    with torch._dynamo.config.patch(error_on_recompile=True):  # a recompile is an error
        for _ in range(4):  # steps 0, 1 warm up; 2, 3 with soft_ce
            a, b = eager(*head(x), y), compiled(*head(x), y)
            torch.testing.assert_close(b.loss, a.loss)
            torch.testing.assert_close(b.terms, a.terms)
            ga = torch.autograd.grad(a.loss, list(eager.parameters()))
            gb = torch.autograd.grad(b.loss, list(twin.parameters()))
            torch.testing.assert_close(gb, ga)
    assert int(twin.num_updates) == int(eager.num_updates) == 4


def test_compiled_validation_still_refuses_bad_targets_and_non_finite_logits():
    criterion = torch.compile(LabelEmbeddingLoss(LabelEmbedding(5)), backend="aot_eager",
                              fullgraph=True)
    z = torch.randn(4, 5)
    criterion(z, z, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(RuntimeError, match="out of range or an input holds NaN"):
        criterion(z, z, torch.tensor([0, 1, 2, 7]))
    with pytest.raises(RuntimeError, match="out of range or an input holds NaN"):
        criterion(z, torch.full_like(z, float("nan")), torch.tensor([0, 1, 2, 3]))


def test_a_compiled_training_step_with_inductor_matches_eager():
    """Model, head and loss in one compiled function, with the real compiler (inductor)."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
    head = LabelEmbeddingHead(32, 10)
    criterion = LabelEmbeddingLoss(LabelEmbedding(10))

    def loss_of(x, y):
        return criterion(*head(backbone(x)), y).loss

    compiled = torch.compile(loss_of, fullgraph=True)
    params = [*backbone.parameters(), *head.parameters(), *criterion.parameters()]
    x, y = _batch(f=16)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for seed in range(3):
            x, y = _batch(f=16, seed=seed)
            a, b = loss_of(x, y), compiled(x, y)
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(torch.autograd.grad(b, params),
                                       torch.autograd.grad(a, params), rtol=1e-4, atol=1e-5)


def test_chunked_module_runs_under_compile():
    """The chunked loss's autograd Function is a graph break by design; it must still work."""
    torch.manual_seed(0)
    head = LabelEmbeddingHead(16, 10)
    criterion = ChunkedLabelEmbeddingLoss(LabelEmbedding(10), chunk_size=7)
    x, y = _batch()
    eager = criterion(x, y, head).loss
    compiled = torch.compile(criterion, backend="aot_eager")(x, y, head).loss
    torch.testing.assert_close(compiled, eager)
