"""What the chunked loss (:mod:`labelemb.chunked`) takes: the output layers it applies
itself, and every input's check before any arithmetic (a ``TypeError`` or ``ValueError`` that
names the argument)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrize import is_parametrized

from .checks import check_inputs
from .functional import LossOptions
from .head import LabelEmbeddingHead

__all__ = ["HeadLayers", "check_chunk_options", "check_chunked"]


class HeadLayers(NamedTuple):
    """Output layers the chunked loss applies itself when they are not a
    :class:`~labelemb.LabelEmbeddingHead`: a language model's own LM head as ``fc`` (a weight
    tied to the input embedding stays tied: it gets one gradient) and a second layer
    ``aux_fc``, fed the detached features, or ``None`` (eq. 17, cross-entropy)."""

    fc: nn.Linear
    aux_fc: nn.Linear | None = None

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    @property
    def in_features(self) -> int:
        return self.fc.in_features

    @property
    def aux(self) -> bool:
        return self.aux_fc is not None

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"{name}.{n}", p) for name, layer in (("fc", self.fc), ("aux_fc", self.aux_fc))
                if layer is not None for n, p in layer.named_parameters()]

    def parameters(self) -> list[nn.Parameter]:
        return [p for _, p in self.named_parameters()]


def check_chunk_options(options: LossOptions, chunk_size: int | None) -> None:
    if options.reduction == "none":
        raise ValueError("reduction must be 'mean' or 'sum' for the chunked loss, got 'none'; "
                         "use label_embedding_loss for per-target losses")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def check_chunked(features: Tensor, target: Tensor, head: LabelEmbeddingHead | HeadLayers,
                   embedding: nn.Module | None, options: LossOptions,
                   chunk_size: int | None) -> HeadLayers:
    """Every input's check before any arithmetic; returns the head's layers."""
    check_chunk_options(options, chunk_size)
    layers = _check_head(head)
    if not isinstance(features, Tensor) or not features.is_floating_point():
        raise TypeError("features must be a floating Tensor")
    if features.dim() < 1 or features.shape[-1] != layers.in_features:
        raise ValueError(f"features must be (*, {layers.in_features}) for this head, got shape "
                         f"{tuple(features.shape)}")
    if embedding is not None and getattr(embedding, "trainable", True) and not layers.aux:
        raise ValueError("the head has no second layer (aux=False) but the embedding is "
                         "trainable: build LabelEmbeddingHead(..., aux=True) or use a "
                         "FixedLabelEmbedding (eq. 17)")
    # The logits' own checks on an empty (0, C) stand-in: target type, class count, devices.
    probe = features.new_empty(0, layers.num_classes)
    check_inputs(probe, target.reshape(-1)[:0] if isinstance(target, Tensor) else target,
                 aux_logits=probe if layers.aux else None, embedding=embedding)
    if tuple(target.shape) != tuple(features.shape[:-1]):
        raise ValueError(f"target shape {tuple(target.shape)} does not match features shape "
                         f"{tuple(features.shape)}: expected {tuple(features.shape[:-1])}")
    autocast = torch.is_autocast_enabled(features.device.type)
    for name, p in layers.named_parameters():
        if p.device != features.device or (p.dtype != features.dtype and not autocast):
            raise ValueError(f"head parameter {name} is {p.dtype} on {p.device} but the "
                             f"features are {features.dtype} on {features.device}")
    return layers


def _check_head(head: object) -> HeadLayers:
    """The chunked loss does the head's products itself, as ``nn.Linear`` does them, so the
    head must be a :class:`LabelEmbeddingHead` or :class:`HeadLayers` whose layers are plain
    ``nn.Linear``: no subclass, parametrization (``weight_norm``), hook or parameter but
    ``weight`` and ``bias``."""
    if isinstance(head, LabelEmbeddingHead):
        if type(head).forward is not LabelEmbeddingHead.forward:
            raise TypeError(f"the chunked loss computes LabelEmbeddingHead's outputs itself; "
                            f"{type(head).__name__} overrides forward")
        head = HeadLayers(head.fc, head.aux_fc)
    if not isinstance(head, HeadLayers):
        raise TypeError(f"head must be a LabelEmbeddingHead or HeadLayers, got "
                        f"{type(head).__name__}")
    for name, layer in (("fc", head.fc), ("aux_fc", head.aux_fc)):
        if layer is None:
            continue
        extra = sorted({n for n, _ in layer.named_parameters()} - {"weight", "bias"})
        hooked = layer._forward_pre_hooks or layer._forward_hooks or layer._backward_hooks
        faults = [fault for fault, found in (
            (f"is a {type(layer).__name__}", type(layer) is not nn.Linear),
            ("has parametrizations", is_parametrized(layer)), ("has hooks", hooked),
            (f"has parameters {extra}", extra)) if found]
        if faults:
            raise TypeError(f"the chunked loss needs plain nn.Linear head layers; head.{name} "
                            + ", ".join(faults))
    aux = head.aux_fc
    if aux is not None and (aux.in_features, aux.out_features) != (head.in_features,
                                                                    head.num_classes):
        raise ValueError(f"head.aux_fc is {aux.in_features} -> {aux.out_features} but head.fc "
                         f"is {head.in_features} -> {head.num_classes}")
    return head
