"""``LabelEmbeddingLoss``: the module form of :func:`labelemb.functional.label_embedding_loss`.

The loss owns the label embedding, so the embedding's parameters are in
``criterion.parameters()`` and ``criterion.state_dict()``: give them to the optimiser.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import native as _native
from .embedding import LabelEmbedding
from .functional import (LossOutput, StackedTerms, check_options, label_embedding_loss,
                         native_plan)

__all__ = ["LabelEmbeddingLoss", "PRESETS"]

#: The authors' published settings (official-code.md). ``seq2seq`` differs from their code in
#: one way on purpose: padding (``ignore_index``) is excluded from every term.
PRESETS: dict[str, dict[str, Any]] = {
    "classification": dict(
        beta=0.5, tau=2.0, alpha=0.9, hinge="l1", hinge_reduction="sum", mask_wrong=True,
        embedding_normalizer="correct", warmup_steps=0,
    ),
    "seq2seq": dict(
        beta=None, tau=2.0, alpha=0.9, hinge="abs", hinge_reduction="mean", mask_wrong=True,
        embedding_normalizer="valid", warmup_steps=20_000,
    ),
}


class LabelEmbeddingLoss(nn.Module):
    """Label embedding network loss (eq. 14), or eq. 17 with a frozen embedding.

    Args:
        embedding: a :class:`~labelemb.LabelEmbedding`, :class:`~labelemb.CompressedLabelEmbedding`
            or :class:`~labelemb.FixedLabelEmbedding`.
        **options: see :func:`labelemb.functional.label_embedding_loss` (``beta``, ``tau``,
            ``alpha``, ``hinge``, ``hinge_reduction``, ``mask_wrong``,
            ``embedding_normalizer``, ``warmup_steps``, ``ignore_index``, ``reduction``,
            ``validate``, ``backend``). Defaults are the ``"classification"`` preset and
            ``backend="auto"`` (the compiled loss where it applies).

    Shape:
        logits, aux_logits ``(N, C)`` or ``(N, C, d1, ...)``; target ``(N)`` or
        ``(N, d1, ...)``. Returns :class:`~labelemb.functional.LossOutput` ``(loss, terms)``.

    The number of training forward calls is kept in the ``num_updates`` buffer (saved in the
    state dict, so a resumed run keeps its warm-up position); it counts calls made in training
    mode with gradients enabled. The count itself is a Python int that the buffer mirrors
    whenever it is read, saved or loaded: no tensor op, and no GPU sync for the warm-up test,
    on every step.

    Example::

        head = LabelEmbeddingHead(512, 10)
        criterion = LabelEmbeddingLoss(LabelEmbedding(10))
        loss, terms = criterion(*head(features), target)
    """

    def __init__(self, embedding: nn.Module, **options: Any) -> None:
        super().__init__()
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)}; valid: {sorted(_OPTION_NAMES)}")
        if not hasattr(embedding, "num_classes"):
            raise TypeError(
                "embedding must be a labelemb embedding (LabelEmbedding, "
                f"CompressedLabelEmbedding or FixedLabelEmbedding), got {type(embedding).__name__}"
            )
        self.embedding = embedding
        self.options = {**PRESETS["classification"], "ignore_index": -100, "reduction": "mean",
                        "validate": True, "backend": "auto", **options}
        # Fail now, not at the first batch, on a bad option value.
        check_options(**self.options)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._updates = 0
        self._plan_cache: tuple[tuple, _native.Plan] | None = None

    @classmethod
    def from_preset(cls, name: str, embedding: nn.Module, **overrides: Any) -> "LabelEmbeddingLoss":
        """``"classification"`` or ``"seq2seq"`` settings of the authors' code, plus overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(embedding, **{**PRESETS[name], **overrides})

    @property
    def num_classes(self) -> int:
        return int(self.embedding.num_classes)

    def forward(self, logits: Tensor, aux_logits: Tensor | None, target: Tensor) -> LossOutput:
        how = self._direct_plan(logits, aux_logits, target)
        if how is not None:
            # The common case: (N, C) CPU logits, a full embedding, settings already checked.
            # Straight to the compiled loss, skipping the general checks and dispatch (most of
            # the loss's cost on a small model); the result is the function's to the bit.
            loss, stacked = _native.native_label_embedding_loss(
                logits, aux_logits, self.embedding.weight, target, how, True)
            out = LossOutput(loss, StackedTerms(how.names, stacked))
        else:
            out = label_embedding_loss(logits, aux_logits, target, self.embedding,
                                       step=self._updates, **self.options)
        self._count_update()
        return out

    def _direct_plan(self, z1: Any, z2: Any, target: Any) -> _native.Plan | None:
        """The compiled loss's plan when this call needs nothing else, else None.

        Runs on every training step of a small model, right after the forward has pushed
        Python's own data out of the CPU caches: few tensor attribute reads, each once.
        """
        o = self.options
        emb = self.embedding
        if not (type(z1) is Tensor and type(z2) is Tensor and type(target) is Tensor
                and type(emb) is LabelEmbedding and o["backend"] != "autograd"
                and o["reduction"] != "none" and _native.loaded()):
            return None
        shape, dtype, weight = z1.shape, z1.dtype, emb.weight
        if not (len(shape) == 2 and z2.shape == shape and target.shape == shape[:1]
                and shape[1] == emb.num_classes and shape[0] * shape[1] <= _native.MAX_ELEMENTS
                and (dtype is torch.float32 or dtype is torch.float64)  # the kernel's types
                and z2.dtype is dtype and weight.dtype is dtype
                and target.dtype is torch.int64
                and z1.is_cpu and z2.is_cpu and target.is_cpu and weight.is_cpu):
            return None
        warmup = o["warmup_steps"]
        key = (*o.values(), warmup == 0 or self._updates >= warmup)
        cached = self._plan_cache
        if cached is None or cached[0] != key:
            self._plan_cache = cached = (key, native_plan(key[-1], True, True, **o))
        return cached[1]

    def _count_update(self) -> None:
        if self.training and torch.is_grad_enabled():
            self.__dict__["_updates"] += 1  # a plain int: past Module.__setattr__

    # --- num_updates: a Python int, mirrored into the buffer for readers and state dicts ---
    # A property, not a __getattr__ override: Module.__getattr__ serves every submodule and
    # parameter lookup, and the loss looks those up on every call.
    @property
    def num_updates(self) -> Tensor:  # type: ignore[override]
        buffer = self.__dict__["_buffers"].get("num_updates")
        if buffer is None:  # during __init__: lets register_buffer create it
            raise AttributeError("num_updates")
        return buffer.fill_(self._updates)

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        self._buffers["num_updates"].fill_(self._updates)
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        self._buffers["num_updates"].fill_(self._updates)  # kept if the key is missing
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._updates = int(self._buffers["num_updates"])

    @torch.no_grad()
    def soft_target(self, target: Tensor) -> Tensor:
        """``softmax(e_y)``, the soft distribution a target is trained towards: ``(M,) -> (M, C)``."""
        return torch.softmax(self.embedding(target).float(), dim=-1)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())


_OPTION_NAMES = {
    "beta", "tau", "alpha", "hinge", "hinge_reduction", "mask_wrong", "embedding_normalizer",
    "warmup_steps", "ignore_index", "reduction", "validate", "backend",
}

