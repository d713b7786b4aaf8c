"""Argument checks shared by every loss in labelemb: one clear line for every bad input.

Types, shapes, dtypes and devices are checked before any arithmetic (a ``TypeError`` or
``ValueError`` naming the argument, no device sync); values (targets in range, finite logits
and embedding rows) with one sync, or in-graph under ``torch.compile``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["check_inputs", "check_embedding", "check_values"]


def check_inputs(logits: Tensor, target: Tensor, *, aux_logits: Tensor | None = None,
                 embedding: nn.Module | None = None, num_classes: int | None = None) -> None:
    """Types, shapes, dtypes and devices, before any arithmetic: a ``TypeError`` or
    ``ValueError`` that names the argument. Costs no device sync."""
    _check_tensor("logits", logits, floating=True)
    _check_tensor("target", target, floating=False)
    if logits.dim() < 2:
        raise ValueError("logits must be (N, C) or (N, C, d1, ...), got shape "
                         f"{tuple(logits.shape)}")
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits shape "
                         f"{tuple(logits.shape)}: expected target of shape {expected}")
    named = {"logits": logits, "target": target}
    if aux_logits is not None:
        _check_tensor("aux_logits", aux_logits, floating=True)
        if aux_logits.shape != logits.shape:
            raise ValueError(f"aux_logits shape {tuple(aux_logits.shape)} does not match "
                             f"logits shape {tuple(logits.shape)}")
        named["aux_logits"] = aux_logits
    if embedding is not None:
        _check_embedding(embedding, aux_logits)
        num_classes = embedding.num_classes
        named.update((f"embedding ({name})", t) for name, t in
                     (*embedding.named_parameters(), *embedding.named_buffers()))
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(
            f"logits have {logits.shape[1]} classes (dim 1) but the embedding has {num_classes}; "
            "for (N, T, C) sequence logits flatten to (N*T, C) or use logits.transpose(1, 2)")
    devices = {name: t.device for name, t in named.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"all tensors must be on one device, got {listed}")


def _check_tensor(name: str, x: object, *, floating: bool) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}")
    if not floating and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must hold integer class indices (torch.long), got {x.dtype}; "
                        "soft targets come from the label embedding, not from the caller")


def check_embedding(embedding: object) -> None:
    """A labelemb embedding with floating parameters, else a ``TypeError``."""
    if not isinstance(embedding, nn.Module) or not hasattr(embedding, "num_classes"):
        raise TypeError("embedding must be a labelemb embedding (LabelEmbedding, "
                        "CompressedLabelEmbedding or FixedLabelEmbedding), got "
                        f"{type(embedding).__name__}")
    for name, p in embedding.named_parameters():
        if not p.is_floating_point():
            raise TypeError(f"embedding parameter {name} must be floating, got {p.dtype}")


def _check_embedding(embedding: nn.Module, aux_logits: Tensor | None) -> None:
    check_embedding(embedding)
    if aux_logits is None and getattr(embedding, "trainable", True):
        raise ValueError("aux_logits is None but the embedding is trainable: pass the head's "
                         "second output (LabelEmbeddingHead returns both) or use a "
                         "FixedLabelEmbedding (eq. 17)")


def check_values(target: Tensor, valid: Tensor, **named: Tensor | None) -> None:
    """Targets in ``[0, C)`` (where ``valid``) and every named tensor finite.

    Eager: one device sync, then a ``ValueError`` naming the first bad argument. Under
    ``torch.compile`` on CPU the same test is an in-graph assert (no graph break) that raises a
    ``RuntimeError``; on other devices it runs eagerly (a graph break).
    """
    tensors = {k: v for k, v in named.items() if v is not None}
    num_classes = next(iter(tensors.values())).shape[-1]
    bad_target = valid & ((target < 0) | (target >= num_classes))
    flags = torch.stack([bad_target.any(), *(_not_finite(v) for v in tensors.values())])
    if not torch.compiler.is_compiling():
        _raise_for(flags, target, bad_target, num_classes, list(tensors))
    elif target.device.type == "cpu":
        torch._assert_async(~flags.any(), "labelemb: a target is out of range or an input "
                            "holds NaN/inf (run eagerly to see which; validate=False skips)")
    else:  # an in-graph assert on a GPU would be a device-side assert: check on the host.
        # Wrapped here, not at import: torch.compiler.disable imports dynamo (seconds).
        torch.compiler.disable(_raise_for)(flags, target, bad_target, num_classes, list(tensors))


def _not_finite(x: Tensor) -> Tensor:
    """True if ``x`` holds a NaN or inf. One reduction and no (M, C) mask: min and max are
    finite exactly when every element is (both propagate NaN)."""
    if x.numel() == 0:
        return torch.zeros((), dtype=torch.bool, device=x.device)
    return ~torch.isfinite(torch.stack(torch.aminmax(x))).all()


def _raise_for(flags: Tensor, target: Tensor, bad_target: Tensor, num_classes: int,
               names: list[str]) -> None:
    first_bad = [i for i, bad in enumerate(flags.tolist()) if bad]  # the one sync
    if not first_bad:
        return
    if first_bad[0] == 0:
        value = target[bad_target][0].item()
        raise ValueError(f"target has class index {value} outside [0, {num_classes}) "
                         "(and not ignore_index)")
    raise ValueError(f"{names[first_bad[0] - 1]} contain NaN or inf "
                     "(pass validate=False to skip this check)")
