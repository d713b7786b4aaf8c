"""A backbone plus :class:`~labelemb.LabelEmbeddingHead`, and the registry of named models."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from ..head import LabelEmbeddingHead
from .mlp import MLP
from .mnist_cnn import MnistCNN
from .resnet import resnet8, resnet8_std, resnet18, resnet18_std

__all__ = ["Classifier", "build_model", "MODELS"]

_HEADS = ("emb", "plain")


class Classifier(nn.Module):
    """``backbone -> features h -> LabelEmbeddingHead -> (logits, aux_logits)``.

    Args:
        backbone: any module with an ``out_features`` attribute, ``(N, ...) -> (N, F)``.
        num_classes: ``C``.
        head: ``"emb"`` builds both output layers (label embedding network); ``"plain"``
            only the main one (baselines and the frozen embedding of eq. 17), then
            ``aux_logits`` is ``None``.

    The forward needs only the images, never the labels: ``logits`` (o1) is the prediction.

    Shape:
        ``(N, ...)`` -> ``logits (N, C)``, ``aux_logits (N, C)`` or ``None``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, head: str = "emb") -> None:
        super().__init__()
        if head not in _HEADS:
            raise ValueError(f"head must be one of {_HEADS}, got {head!r}")
        out_features = getattr(backbone, "out_features", None)
        if not isinstance(out_features, int):
            raise TypeError(
                f"backbone {type(backbone).__name__} needs an int attribute out_features "
                "(the size of its feature vector)"
            )
        self.backbone = backbone
        # The main layer is built before the auxiliary one, so a baseline and a label
        # embedding model built from one seed share the backbone and main-layer init.
        self.head = LabelEmbeddingHead(out_features, num_classes, aux=head == "emb")
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.head(self.backbone(x))


def _cnn(in_channels: int, image_size: int) -> nn.Module:
    return MnistCNN(in_channels, image_size)


def _mlp(in_channels: int, image_size: int) -> nn.Module:
    return MLP(in_channels * image_size * image_size, (500, 500))


#: name -> ``factory(in_channels, image_size) -> backbone``.
MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "cnn": _cnn,
    "mlp": _mlp,
    "resnet8": resnet8,
    "resnet18": resnet18,
    "resnet8-std": resnet8_std,
    "resnet18-std": resnet18_std,
}


def build_model(
    name: str, in_channels: int, image_size: int, num_classes: int, aux: bool = True
) -> Classifier:
    """A named backbone with a label embedding head (``aux=True``) or a plain one."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    backbone = MODELS[name](in_channels, image_size)
    return Classifier(backbone, num_classes, head="emb" if aux else "plain")
