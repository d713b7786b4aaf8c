"""Calibrated probabilities: temperature scaling and the measures that judge calibration.

The main head of a label embedding network is under-confident: it is trained towards soft
targets that keep probability on similar labels, so its softmax spreads mass that its accuracy
does not justify (docs/RESULTS.md measures how much, per mode). Temperature scaling (Guo et
al., 2017, "On Calibration of Modern Neural Networks") divides the logits by one scalar
``T > 0`` fitted on held-out data by minimising the negative log-likelihood. Dividing by a
positive scalar keeps the order of the logits, so no prediction changes.

Example::

    scaler = TemperatureScaling().fit(dev_logits, dev_target)
    probs = scaler(test_logits).softmax(-1)
    calibration_metrics(test_logits, test_target, temperature=scaler.temperature.item())

The expected calibration error is torchmetrics' (15 equal-width bins, L1), so numbers compare
with what users compute elsewhere; the other measures are a few lines of tensor algebra.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "N_BINS",
    "TemperatureScaling",
    "fit_temperature",
    "calibration_metrics",
    "expected_calibration_error",
    "adaptive_calibration_error",
    "brier_score",
    "reliability_bins",
]

#: Confidence bins of the calibration errors and the reliability diagram.
N_BINS = 15


def _check(logits: Tensor, target: Tensor) -> None:
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, C) and target (N,), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    if len(target) == 0:
        raise ValueError("calibration needs at least one example, got an empty split")
    if not torch.isfinite(logits).all():
        raise ValueError("logits hold nan or inf: no temperature can calibrate them")


def fit_temperature(logits: Tensor, target: Tensor, *, max_iter: int = 100) -> float:
    """The ``T > 0`` that minimises the mean NLL of ``softmax(logits / T)``.

    Shapes: logits ``(N, C)``, target ``(N,)`` class indices. L-BFGS on ``log T`` (so ``T``
    stays positive) in float64, from ``T = 1``; the NLL is convex in ``1 / T``, so the one
    minimum is found from any start.
    """
    _check(logits, target)
    logits, target = logits.detach().double(), target.detach().long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    with torch.enable_grad():  # callers often evaluate under no_grad
        optimizer.step(closure)
    return float(log_t.detach().exp())


class TemperatureScaling(nn.Module):
    """``logits / T`` with ``T`` fitted by :func:`fit_temperature`; ``T`` is a buffer, so it is
    saved in the state dict and moves with ``.to()``. Shape: ``(*, C)`` in, ``(*, C)`` out."""

    temperature: Tensor

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def fit(self, logits: Tensor, target: Tensor) -> "TemperatureScaling":
        """Fit ``T`` on held-out ``logits (N, C)`` and ``target (N,)``; returns ``self``."""
        self.temperature.fill_(fit_temperature(logits, target))
        return self

    def forward(self, logits: Tensor) -> Tensor:
        return logits / self.temperature

    def extra_repr(self) -> str:
        return f"temperature={self.temperature.item():.4f}"


def expected_calibration_error(probs: Tensor, target: Tensor, n_bins: int = N_BINS) -> float:
    """ECE: ``sum_b n_b / N |acc_b - conf_b|`` over ``n_bins`` equal-width confidence bins
    (torchmetrics' ``multiclass_calibration_error``, L1). probs ``(N, C)``, target ``(N,)``."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    return float(multiclass_calibration_error(probs.detach().double(), target.long(),
                                              num_classes=probs.shape[1], n_bins=n_bins,
                                              norm="l1"))


def adaptive_calibration_error(probs: Tensor, target: Tensor, n_bins: int = N_BINS) -> float:
    """ECE over ``n_bins`` equal-mass bins (Nguyen and O'Connor, 2015): the examples sorted by
    confidence and cut into bins of (nearly) equal size, so sparse high-confidence regions do
    not hide in one wide bin. probs ``(N, C)``, target ``(N,)``."""
    conf, pred = probs.detach().double().max(1)
    order = conf.argsort()
    conf, correct = conf[order], (pred == target)[order].double()
    gap = sum((c.mean() - a.mean()).abs() * len(c)
              for c, a in zip(conf.tensor_split(n_bins), correct.tensor_split(n_bins)) if len(c))
    return float(gap / len(conf))


def brier_score(probs: Tensor, target: Tensor) -> float:
    """Mean over examples of ``sum_c (p_c - [c = y])^2``. probs ``(N, C)``, target ``(N,)``."""
    one_hot = F.one_hot(target.long(), probs.shape[1]).to(probs.dtype)
    return float(((probs.detach() - one_hot) ** 2).sum(1).mean())


def reliability_bins(probs: Tensor, target: Tensor, n_bins: int = N_BINS) -> dict[str, list]:
    """Per confidence bin: the number of examples, their mean confidence and their accuracy
    (0 in an empty bin), with torchmetrics' bins ``[b/n, (b+1)/n)`` and confidence 1 in the
    last. What a reliability diagram draws; ``sum(count * |accuracy - confidence|) / N`` is the
    ECE. probs ``(N, C)``, target ``(N,)``."""
    conf, pred = probs.detach().double().max(1)
    bins = (conf * n_bins).floor().long().clamp(max=n_bins - 1)
    count = torch.bincount(bins, minlength=n_bins).double()
    s_conf = torch.bincount(bins, weights=conf, minlength=n_bins)
    s_acc = torch.bincount(bins, weights=(pred == target).double(), minlength=n_bins)
    denom = count.clamp(min=1)
    return {"count": count.long().tolist(), "confidence": (s_conf / denom).tolist(),
            "accuracy": (s_acc / denom).tolist()}


def calibration_metrics(logits: Tensor, target: Tensor, *, temperature: float = 1.0,
                        n_bins: int = N_BINS, bins: bool = False) -> dict[str, Any]:
    """ECE, adaptive ECE, NLL, Brier score and error of ``softmax(logits / temperature)``,
    and with ``bins=True`` its :func:`reliability_bins` under ``"reliability"``.

    Shapes: logits ``(N, C)``, target ``(N,)``. Every value is a fraction (not %)."""
    _check(logits, target)
    scaled = logits.detach().double() / temperature
    probs = scaled.softmax(1)
    return {
        "ece": expected_calibration_error(probs, target, n_bins),
        "adaptive_ece": adaptive_calibration_error(probs, target, n_bins),
        "nll": float(F.cross_entropy(scaled, target.long())),
        "brier": brier_score(probs, target),
        "error": float((probs.argmax(1) != target).double().mean()),
        **({"reliability": reliability_bins(probs, target, n_bins)} if bins else {}),
    }
