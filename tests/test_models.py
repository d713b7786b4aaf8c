"""Backbones: feature sizes, the authors' widths, head wiring and the model registry."""

import pytest
import torch

from labelemb.models.classifier import MODELS, Classifier, build_model
from labelemb.models.mlp import MLP
from labelemb.models.mnist_cnn import MnistCNN
from labelemb.models.resnet import resnet8, resnet18


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    "name, channels, size, classes",
    [("cnn", 1, 28, 10), ("mlp", 1, 28, 10), ("resnet8", 3, 32, 10), ("resnet8-std", 3, 32, 10),
     ("resnet18-std", 3, 32, 100), ("resnet8", 1, 28, 10), ("cnn", 3, 32, 5)],
)
def test_every_model_outputs_logits_and_aux_logits(name, channels, size, classes):
    model = build_model(name, channels, size, classes)
    x = torch.randn(3, channels, size, size)
    feats = model.backbone(x)
    assert feats.shape == (3, model.backbone.out_features)
    logits, aux = model(x)
    assert logits.shape == aux.shape == (3, classes)
    plain_logits, none = build_model(name, channels, size, classes, aux=False)(x)
    assert none is None and plain_logits.shape == (3, classes)


def test_cnn_matches_the_tf_same_padding_layout():
    cnn = MnistCNN(1, 28)
    assert cnn.fc.in_features == 7 * 7 * 64 and cnn.out_features == 1024


def test_mlp_is_784_500_500():
    mlp = MLP()
    sizes = [(l.in_features, l.out_features) for l in mlp.layers if isinstance(l, torch.nn.Linear)]
    assert sizes == [(784, 500), (500, 500)]
    with pytest.raises(ValueError, match="784"):
        mlp(torch.randn(2, 3, 28, 28))


def test_resnets_have_the_authors_widths():
    r8 = resnet8()
    assert r8.out_features == 2048  # 2x2x512 after the 4x4 average pool
    assert 4.8e6 < _n_params(Classifier(r8, 10)) < 5.0e6
    r18 = resnet18()
    assert r18.out_features == 1024
    assert 44e6 < _n_params(r18) < 46e6
    assert r18(torch.randn(1, 3, 32, 32)).shape == (1, 1024)


def test_aux_head_sees_detached_features_only():
    torch.manual_seed(0)
    model = build_model("mlp", 1, 28, 10)
    _, aux = model(torch.randn(4, 1, 28, 28))
    aux.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.head.aux_fc.weight.grad.abs().sum() > 0  # W2 learns, W1 does not
    assert model.head.fc.weight.grad is None


def test_same_seed_gives_same_backbone_with_or_without_aux_head():
    torch.manual_seed(3)
    a = build_model("cnn", 1, 28, 10, aux=True)
    torch.manual_seed(3)
    b = build_model("cnn", 1, 28, 10, aux=False)
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sb) == {k for k in sa if not k.startswith("head.aux_fc.")}
    for k, v in sb.items():  # the main layer W1, b1 too
        assert torch.equal(sa[k], v), k


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg", 3, 32, 10)
    with pytest.raises(ValueError, match="head"):
        Classifier(MLP(), 10, head="both")
    with pytest.raises(TypeError, match="out_features"):
        Classifier(torch.nn.Flatten(), 10)
    with pytest.raises(ValueError, match="too small"):
        resnet8(3, 8)
    assert set(MODELS) == {"cnn", "mlp", "resnet8", "resnet18", "resnet8-std", "resnet18-std"}
