"""LabelEmbeddingHead: two plain layers, the second on detached features; checkpoints from the
one-weight layout (both layers in one (2C, F) ``weight``) still load."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from labelemb import LabelEmbeddingHead

F_DIM, C = 6, 4


def test_initialisation_is_two_linear_layers_main_first():
    torch.manual_seed(0)
    fc, aux_fc = nn.Linear(F_DIM, C), nn.Linear(F_DIM, C)
    torch.manual_seed(0)
    head = LabelEmbeddingHead(F_DIM, C)
    assert torch.equal(head.fc.weight, fc.weight) and torch.equal(head.aux_fc.weight, aux_fc.weight)
    assert torch.equal(head.fc.bias, fc.bias) and torch.equal(head.aux_fc.bias, aux_fc.bias)
    torch.manual_seed(0)
    plain = LabelEmbeddingHead(F_DIM, C, aux=False)
    assert torch.equal(plain.fc.weight, fc.weight) and plain.aux_fc is None and not plain.aux


@pytest.mark.parametrize("shape", [(5, F_DIM), (2, 3, F_DIM)])
def test_outputs_are_the_two_layers_and_only_the_main_one_trains_the_features(shape):
    head = LabelEmbeddingHead(F_DIM, C)
    x = torch.randn(*shape, requires_grad=True)
    logits, aux_logits = head(x)
    torch.testing.assert_close(logits, head.fc(x))
    torch.testing.assert_close(aux_logits, head.aux_fc(x))
    aux_logits.sum().backward()
    assert x.grad is None and head.fc.weight.grad is None
    assert head.aux_fc.weight.grad.abs().sum() > 0
    logits.sum().backward()
    torch.testing.assert_close(x.grad, head.fc.weight.sum(0).expand(*shape))


@pytest.mark.parametrize("aux", [True, False])
@pytest.mark.parametrize("shape", [(3, F_DIM - 1), (2, 5, F_DIM + 1), (F_DIM, 1), ()])
def test_features_of_the_wrong_size_are_refused_naming_in_features(shape, aux):
    """``LabelEmbeddingHead(7, 5)`` on 6 features gave torch's matmul error, naming neither."""
    head = LabelEmbeddingHead(F_DIM, C, aux=aux)
    with pytest.raises(ValueError, match=rf"in_features={F_DIM}\), got shape "
                                         rf"{re.escape(str(shape))}"):
        head(torch.randn(shape))


def test_without_aux_layer_the_second_output_is_none():
    logits, aux_logits = LabelEmbeddingHead(F_DIM, C, aux=False, bias=False)(torch.randn(3, F_DIM))
    assert logits.shape == (3, C) and aux_logits is None


def test_autocast_gives_low_precision_logits():
    head = LabelEmbeddingHead(F_DIM, C)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, aux_logits = head(torch.randn(5, F_DIM))
    assert logits.dtype == aux_logits.dtype == torch.bfloat16


@pytest.mark.parametrize("aux", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_checkpoints_of_the_one_weight_layout_load(aux, bias):
    torch.manual_seed(4)
    fc, aux_fc = nn.Linear(F_DIM, C, bias=bias), nn.Linear(F_DIM, C, bias=bias)
    layers = (fc, aux_fc) if aux else (fc,)
    old = {"head.weight": torch.cat([layer.weight for layer in layers]).detach()}
    if bias:
        old["head.bias"] = torch.cat([layer.bias for layer in layers]).detach()
    model = nn.Module()
    model.head = LabelEmbeddingHead(F_DIM, C, bias=bias, aux=aux)
    model.load_state_dict(old)  # strict: no missing and no unexpected keys
    assert torch.equal(model.head.fc.weight, fc.weight)
    if aux:
        assert torch.equal(model.head.aux_fc.weight, aux_fc.weight)
    if bias:
        assert torch.equal(model.head.fc.bias, fc.bias)
    assert set(model.state_dict()) == {f"head.{layer}.{p}" for layer in ("fc", "aux_fc")[:1 + aux]
                                       for p in ("weight", "bias")[:1 + bias]}


def test_a_one_weight_checkpoint_of_the_wrong_size_is_refused():
    head = LabelEmbeddingHead(F_DIM, C)
    with pytest.raises(RuntimeError, match="size mismatch"):
        head.load_state_dict({"weight": torch.zeros(2 * C, F_DIM + 1), "bias": torch.zeros(2 * C)})
