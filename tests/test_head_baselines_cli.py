"""The head's stop-gradient, the baselines' call shape and behaviour, the console entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import labelemb
from labelemb import LabelEmbeddingHead, LabelSmoothingLoss, OnlineLabelSmoothingLoss


def test_head_aux_output_never_reaches_the_features():
    h = torch.randn(5, 8, requires_grad=True)
    head = LabelEmbeddingHead(8, 3)
    logits, aux = head(h)
    assert logits.shape == aux.shape == (5, 3)
    aux.sum().backward()
    assert h.grad is None
    assert head.aux_fc.weight.grad.abs().sum() > 0 and head.fc.weight.grad is None
    logits.sum().backward()
    assert h.grad is not None


def test_head_on_sequence_features():
    logits, aux = LabelEmbeddingHead(8, 11)(torch.randn(2, 7, 8))
    assert logits.shape == aux.shape == (2, 7, 11)


def test_label_smoothing_matches_torch_and_ignores_aux():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, -100, 1])
    loss, terms = LabelSmoothingLoss(0.1)(z, None, y)
    torch.testing.assert_close(loss, F.cross_entropy(z, y, label_smoothing=0.1))
    plain, _ = LabelSmoothingLoss(0.0)(z, torch.randn(6, 4), y)
    torch.testing.assert_close(plain, F.cross_entropy(z, y))
    with pytest.raises(TypeError, match="target"):
        LabelSmoothingLoss()(z, None, y.float())


def test_online_label_smoothing_updates_once_per_epoch_from_correct_predictions():
    C = 3
    ols = OnlineLabelSmoothingLoss(C, alpha=0.5, smoothing=0.1)
    start = ols.soft_labels.clone()
    torch.testing.assert_close(start.sum(1), torch.ones(C))
    assert start[0, 0] == pytest.approx(0.9)
    # Two correct predictions of class 0 (duplicate index: both must count), one wrong of class 1.
    z = torch.tensor([[3.0, 1.0, 0.0], [2.0, 0.0, 1.0], [4.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    p = z.softmax(1)
    loss, terms = ols(z, None, y)
    expected_soft = -(start[y] * p.log()).sum(1).mean()
    torch.testing.assert_close(terms["ols_soft_ce"], expected_soft)
    torch.testing.assert_close(loss, 0.5 * F.cross_entropy(z, y) + 0.5 * expected_soft)
    torch.testing.assert_close(ols.soft_labels, start)  # nothing swapped in mid-epoch
    ols.next_epoch()
    torch.testing.assert_close(ols.soft_labels[0], (p[0] + p[1]) / 2)
    torch.testing.assert_close(ols.soft_labels[1], start[1])  # no correct prediction: kept
    # Eval-mode calls do not accumulate.
    ols.eval()
    ols(z, None, y)
    ols.next_epoch()
    torch.testing.assert_close(ols.soft_labels[0], (p[0] + p[1]) / 2)
    state = ols.state_dict()
    assert {"soft_labels", "_sum", "_count"} <= set(state)


def test_every_criterion_has_one_call_shape():
    z = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 1])
    for crit in [
        LabelSmoothingLoss(0.0),
        LabelSmoothingLoss(0.1),
        OnlineLabelSmoothingLoss(3),
        labelemb.LabelEmbeddingLoss(labelemb.LabelEmbedding(3)),
    ]:
        loss, terms = crit(z, torch.randn(4, 3), y)
        assert loss.dim() == 0 and "ce" in terms


def test_console_entry_point_prints_version():
    out = subprocess.run(
        [sys.executable, "-m", "labelemb", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"labelemb {labelemb.__version__}"


def test_public_api_is_importable_from_the_top():
    for name in labelemb.__all__:
        assert hasattr(labelemb, name), name
    assert isinstance(labelemb.LabelEmbeddingHead(2, 2), nn.Module)
