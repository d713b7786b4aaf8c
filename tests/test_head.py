"""LabelEmbeddingHead keeps both layers in one (2C, F) weight: it must behave exactly like two
``nn.Linear`` layers, the auxiliary one on detached features."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import labelemb.head
from labelemb import LabelEmbeddingHead

F_DIM, C = 6, 4


def _two_layers(seed: int, bias: bool = True) -> tuple[nn.Linear, nn.Linear]:
    """The layout before the layers were stored together, built from the same seed."""
    torch.manual_seed(seed)
    return nn.Linear(F_DIM, C, bias=bias), nn.Linear(F_DIM, C, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
def test_initialisation_is_that_of_two_linear_layers_main_first(bias):
    fc, aux_fc = _two_layers(1, bias)
    torch.manual_seed(1)
    head = LabelEmbeddingHead(F_DIM, C, bias=bias)
    assert head.weight.shape == (2 * C, F_DIM)
    assert torch.equal(head.main_weight, fc.weight) and torch.equal(head.aux_weight, aux_fc.weight)
    if bias:
        assert torch.equal(head.main_bias, fc.bias) and torch.equal(head.aux_bias, aux_fc.bias)
    else:
        assert head.bias is None and head.main_bias is None and head.aux_bias is None
    torch.manual_seed(1)
    plain = LabelEmbeddingHead(F_DIM, C, bias=bias, aux=False)
    assert plain.weight.shape == (C, F_DIM) and torch.equal(plain.weight, fc.weight)
    assert plain.aux_weight is None and plain.aux_bias is None


@pytest.fixture(params=["one product", "two products"])
def backward_path(request, monkeypatch):
    """Backward's two ways to the weight gradient: small layers concatenate the halves' output
    gradients for one product; large ones (a vocabulary) write each half in place."""
    if request.param == "two products":
        monkeypatch.setattr(labelemb.head, "_ONE_PRODUCT_MAX", 0)
    return request.param


@pytest.mark.parametrize("shape", [(5,), (3, 7)])
def test_outputs_and_every_gradient_equal_two_linear_layers(shape, backward_path):
    fc, aux_fc = _two_layers(2)
    torch.manual_seed(2)
    head = LabelEmbeddingHead(F_DIM, C)
    x_ref = torch.randn(*shape, F_DIM, requires_grad=True)
    x = x_ref.detach().clone().requires_grad_(True)
    g1, g2 = torch.randn(*shape, C), torch.randn(*shape, C)

    z1_ref, z2_ref = fc(x_ref), aux_fc(x_ref.detach())
    ((z1_ref * g1).sum() + (z2_ref * g2).sum()).backward()
    z1, z2 = head(x)
    ((z1 * g1).sum() + (z2 * g2).sum()).backward()

    assert z1.shape == z2.shape == (*shape, C)
    # One product over both layers instead of two: equal up to float32 summation order.
    tight = dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(z1, z1_ref, **tight)
    torch.testing.assert_close(z2, z2_ref, **tight)
    torch.testing.assert_close(x.grad, x_ref.grad, **tight)  # W1 only: W2 stops at the features
    torch.testing.assert_close(head.weight.grad, torch.cat([fc.weight.grad, aux_fc.weight.grad]),
                               **tight)
    torch.testing.assert_close(head.bias.grad, torch.cat([fc.bias.grad, aux_fc.bias.grad]), **tight)


def test_each_output_alone_and_one_after_the_other(backward_path):
    head = LabelEmbeddingHead(F_DIM, C)
    x = torch.randn(5, F_DIM, requires_grad=True)
    z1, z2 = head(x)
    z2.sum().backward()  # the aux output alone: W2 rows learn, features and W1 get nothing
    assert x.grad is None
    assert head.weight.grad[C:].abs().sum() > 0 and not head.weight.grad[:C].any()
    assert head.bias.grad[C:].abs().sum() > 0 and not head.bias.grad[:C].any()
    head.zero_grad(set_to_none=True)
    z1.sum().backward()  # then the main one, from the same forward
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert head.weight.grad[:C].abs().sum() > 0 and not head.weight.grad[C:].any()


def test_in_place_change_between_forward_and_backward_is_refused():
    head = LabelEmbeddingHead(F_DIM, C)
    x = torch.randn(5, F_DIM, requires_grad=True)
    z1, _ = head(x)
    with torch.no_grad():
        head.weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z1.sum().backward()


def test_double_backward_matches_two_linear_layers():
    """create_graph=True (a gradient penalty, say) differentiates through the head."""
    fc, aux_fc = _two_layers(3)
    torch.manual_seed(3)
    head = LabelEmbeddingHead(F_DIM, C)
    x = torch.randn(5, F_DIM, requires_grad=True)

    def penalty(z1, z2, wrt):
        grads = torch.autograd.grad((z1.tanh().sum() + z2.square().sum()), wrt, create_graph=True)
        return sum(g.square().sum() for g in grads)

    z1, z2 = head(x)
    got = torch.autograd.grad(penalty(z1, z2, [x, head.weight]), [head.weight])[0]
    r1, r2 = fc(x), aux_fc(x.detach())
    ref_w = torch.autograd.grad(penalty(r1, r2, [x, fc.weight, aux_fc.weight]),
                                [fc.weight, aux_fc.weight])
    torch.testing.assert_close(got, torch.cat(ref_w))


def test_autocast_outputs_low_precision_and_float32_gradients():
    head = LabelEmbeddingHead(F_DIM, C)
    x = torch.randn(8, F_DIM, requires_grad=True)
    ref1, ref2 = head(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = head(x)
    assert z1.dtype == z2.dtype == torch.bfloat16
    torch.testing.assert_close(z1.float(), ref1, rtol=2e-2, atol=2e-2)
    (z1.float().sum() + z2.float().sum()).backward()
    assert x.grad.dtype == head.weight.grad.dtype == head.bias.grad.dtype == torch.float32


def test_evaluation_and_frozen_head():
    head = LabelEmbeddingHead(F_DIM, C)
    x = torch.randn(5, F_DIM)
    with torch.no_grad():
        z1, z2 = head(x)
    assert z1.grad_fn is None and torch.equal(z1, head.main_logits(x))
    torch.testing.assert_close(z2, F.linear(x, head.aux_weight, head.aux_bias))
    head.requires_grad_(False)  # a frozen head still passes the features their gradient
    x.requires_grad_(True)
    head(x)[0].sum().backward()
    assert x.grad is not None and head.weight.grad is None


@pytest.mark.parametrize("aux", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_checkpoints_with_separate_fc_and_aux_fc_layers_load(aux, bias):
    fc, aux_fc = _two_layers(4, bias)
    old = {f"head.fc.{k}": v for k, v in fc.state_dict().items()}
    if aux:
        old.update({f"head.aux_fc.{k}": v for k, v in aux_fc.state_dict().items()})
    model = nn.Module()
    model.head = LabelEmbeddingHead(F_DIM, C, bias=bias, aux=aux)
    model.load_state_dict(old)  # strict: no missing and no unexpected keys
    assert torch.equal(model.head.main_weight, fc.weight)
    if aux:
        assert torch.equal(model.head.aux_weight, aux_fc.weight)
    if bias:
        assert torch.equal(model.head.main_bias, fc.bias)
    assert set(model.state_dict()) == {"head.weight"} | ({"head.bias"} if bias else set())
