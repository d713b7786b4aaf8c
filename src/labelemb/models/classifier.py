"""A backbone plus :class:`~labelemb.LabelEmbeddingHead`, the registry of named models, and
a trained classifier's scores on images (error, loss, ECE; temperature scaling), as
:mod:`labelemb.models.decoding` scores a seq2seq model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..calibration import calibration_metrics, expected_calibration_error, fit_temperature
from ..data.transforms import to_float
from ..head import LabelEmbeddingHead
from .mlp import MLP
from .mnist_cnn import MnistCNN
from .resnet import resnet8, resnet8_std, resnet18, resnet18_std

if TYPE_CHECKING:
    from ..data.registry import ImageDataset

__all__ = ["Classifier", "build_model", "MODELS", "predict_logits", "evaluate", "calibrate"]

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


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, ds: ImageDataset,
                   batch_size: int = 1000) -> Tensor:
    """The main head's float32 logits ``(N, C)`` on the CPU for images ``x``, in eval mode.
    On the CPU because CUDA's scatter-adds (in the calibration measures) sum in a
    nondeterministic order."""
    model.eval()
    return torch.cat([model(to_float(x[i:i + batch_size], ds.mean, ds.std))[0].float().cpu()
                      for i in range(0, len(x), batch_size)])


def evaluate(model: nn.Module, x: Tensor, y: Tensor, ds: ImageDataset,
             batch_size: int = 1000) -> dict[str, float]:
    """Error, mean cross-entropy and ECE of the main head."""
    logits, y = predict_logits(model, x, ds, batch_size), y.cpu()
    return {"error": float((logits.argmax(1) != y).float().mean()),
            "loss": float(F.cross_entropy(logits, y)),
            "ece": expected_calibration_error(logits.softmax(1), y)}


def calibrate(model: nn.Module, held_out: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
              ds: ImageDataset, batch_size: int = 1000) -> dict[str, Any]:
    """Temperature scaling of the main head fitted on ``held_out`` (images, labels), and the
    test set's calibration measures and reliability bins before and after it."""
    temperature = fit_temperature(predict_logits(model, held_out[0], ds, batch_size),
                                  held_out[1].cpu())
    logits, y = predict_logits(model, test[0], ds, batch_size), test[1].cpu()
    out: dict[str, Any] = {"temperature": temperature}
    for name, t in (("raw", 1.0), ("calibrated", temperature)):
        out[name] = calibration_metrics(logits, y, temperature=t, bins=True)
    return out
