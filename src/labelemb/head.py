"""The two output layers of a label embedding network (paper, Figure 1)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LabelEmbeddingHead"]


class LabelEmbeddingHead(nn.Module):
    """Main output layer plus an auxiliary one on detached features.

    ``logits = W1 h + b1`` (o1 in the paper) is the prediction and trains the backbone.
    ``aux_logits = W2 h.detach() + b2`` (o2) only teaches the label embedding; the detach lives
    here, in one place, so the auxiliary losses can never reach the backbone.

    Both layers live in one parameter, as ``nn.MultiheadAttention`` keeps Q, K and V in one
    ``in_proj_weight``: ``weight`` is ``(2C, F)``, rows ``[:C]`` are W1 and rows ``[C:]`` W2
    (``bias`` likewise). The optimiser then steps one tensor pair, as for a plain classifier,
    instead of two; on a small model that per-tensor cost is a visible part of the step. The
    maths is the two layers' (same outputs and gradients to float rounding, same initialisation).
    Checkpoints with the old separate ``fc`` / ``aux_fc`` layers load unchanged.

    Args:
        in_features: size of the backbone's features ``h``.
        num_classes: ``C``.
        bias: whether both layers have a bias.
        aux: build the auxiliary layer. Not needed with a
            :class:`~labelemb.FixedLabelEmbedding` (eq. 17); then ``weight`` is ``(C, F)`` and
            ``aux_logits`` is ``None``.

    Shape:
        features ``(*, in_features)`` -> ``logits, aux_logits`` each ``(*, C)``.
        For ``(N, T, F)`` sequence features the logits are ``(N, T, C)``: flatten to
        ``(N*T, C)`` or move the class dimension to 1 before the loss.
    """

    def __init__(
        self, in_features: int, num_classes: int, bias: bool = True, aux: bool = True
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.aux = aux
        rows = num_classes * (2 if aux else 1)
        self.weight = nn.Parameter(torch.empty(rows, in_features))
        self.bias = nn.Parameter(torch.empty(rows)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each layer as ``nn.Linear(in_features, C)`` initialises it, main layer first.

        Same random draws in the same order as two separate ``nn.Linear`` layers, so a
        baseline (``aux=False``) and a label embedding head built from one seed share W1, b1.
        """
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        C = self.num_classes
        with torch.no_grad():
            for rows in ((slice(0, C), slice(C, 2 * C)) if self.aux else (slice(0, C),)):
                nn.init.kaiming_uniform_(self.weight[rows], a=math.sqrt(5))
                if self.bias is not None:
                    nn.init.uniform_(self.bias[rows], -bound, bound)

    # Views of the two layers, for reading and for code that needs one of them.
    @property
    def main_weight(self) -> Tensor:
        """W1, ``(C, F)``: a view of ``weight``."""
        return self.weight[: self.num_classes]

    @property
    def main_bias(self) -> Tensor | None:
        return None if self.bias is None else self.bias[: self.num_classes]

    @property
    def aux_weight(self) -> Tensor | None:
        """W2, ``(C, F)``, or None without the auxiliary layer: a view of ``weight``."""
        return self.weight[self.num_classes:] if self.aux else None

    @property
    def aux_bias(self) -> Tensor | None:
        return self.bias[self.num_classes:] if self.aux and self.bias is not None else None

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor | None]:
        if not self.aux:
            return F.linear(features, self.weight, self.bias), None
        if features.dim() == 2:
            return _TwoLayers.apply(features, self.weight, self.bias)
        lead = features.shape[:-1]
        logits, aux_logits = _TwoLayers.apply(features.reshape(-1, self.in_features),
                                              self.weight, self.bias)
        return logits.reshape(*lead, -1), aux_logits.reshape(*lead, -1)

    def main_logits(self, features: Tensor) -> Tensor:
        """``W1 h + b1`` alone, ``(*, F) -> (*, C)``: for decoding, where o2 is not needed."""
        return F.linear(features, self.main_weight, self.main_bias)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Checkpoints from before the two layers were stored together: fc.*, aux_fc.*.
        for name in ("weight", "bias"):
            old = [state_dict.get(f"{prefix}{layer}.{name}") for layer in ("fc", "aux_fc")]
            if old[0] is not None and f"{prefix}{name}" not in state_dict:
                parts = [t for t in old if t is not None]
                state_dict[f"{prefix}{name}"] = torch.cat(parts) if len(parts) > 1 else parts[0]
                for layer in ("fc", "aux_fc"):
                    state_dict.pop(f"{prefix}{layer}.{name}", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, "
                f"bias={self.bias is not None}, aux={self.aux}")


class _TwoLayers(torch.autograd.Function):
    """``[z1, z2] = x [W1; W2]^T + [b1; b2]``, one product; only z1's gradient reaches ``x``
    (the auxiliary layer sees ``x.detach()``).

    One matrix product forward and two backward (features, weight), as for a single
    ``nn.Linear``: two separate layers make five. On a small model each product has a fixed
    cost (threads to wake) larger than its arithmetic, so the count is what a step pays for.
    Under autocast the inputs are cast as ``F.linear`` would cast them, and backward uses the
    cast copies. Backward is made of differentiable ops, so ``create_graph=True`` works.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight, bias = (None if t is None or t.dtype == torch.float64 else t.to(dtype)
                               for t in (x, weight, bias))
        C = weight.shape[0] // 2
        both = F.linear(x, weight, bias)
        # Kept on ctx, not save_for_backward: the two outputs may be backpropagated one at a
        # time (aux loss, then main loss), as two separate layers allow; save_for_backward would
        # free them after the first. The version check autograd would make is made by hand.
        ctx.inputs, ctx.versions = (x, weight), (x._version, weight._version)
        ctx.has_bias = bias is not None
        ctx.set_materialize_grads(False)  # an unused output's gradient is None, not zeros
        # Views, no copies: the compiled loss reads rows where they lie.
        return both.narrow(1, 0, C), both.narrow(1, C, C)

    @staticmethod
    def backward(ctx: Any, g1: Tensor | None, g2: Tensor | None) -> tuple[Tensor | None, ...]:
        x, weight = ctx.inputs
        if (x._version, weight._version) != ctx.versions:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                "inplace operation: the features or the weight of a LabelEmbeddingHead changed "
                "between its forward and this backward"
            )
        C = weight.shape[0] // 2
        need_x, need_w, need_b = ctx.needs_input_grad
        g1 = None if g1 is None else g1.to(x.dtype)
        g2 = None if g2 is None else g2.to(x.dtype)
        grad_x = g1.mm(weight[:C]) if need_x and g1 is not None else None
        need_b = need_b and ctx.has_bias
        if not (need_w or need_b):
            return grad_x, None, None
        if torch.is_grad_enabled() or (g1 is not None and g2 is not None
                                       and g1.numel() <= _ONE_PRODUCT_MAX):
            # One product over both halves: on a small layer each product's fixed cost is
            # what counts. Differentiable, for create_graph=True.
            zeros = x.new_zeros(x.shape[0], C) if g1 is None or g2 is None else None
            grad_out = torch.cat((zeros if g1 is None else g1, zeros if g2 is None else g2), 1)
            return (grad_x, grad_out.t().mm(x) if need_w else None,
                    grad_out.sum(0) if need_b else None)
        # A large layer (a vocabulary): each half straight into its rows, no (N, 2C) copy.
        grad_w = weight.new_empty(weight.shape) if need_w else None
        grad_b = weight.new_empty(2 * C) if need_b else None
        for g, rows in ((g1, slice(0, C)), (g2, slice(C, 2 * C))):
            if g is None:  # that output was not used: its layer gets zeros
                for buffer in (grad_w, grad_b):
                    if buffer is not None:
                        buffer[rows].zero_()
                continue
            if grad_w is not None:
                torch.mm(g.t(), x, out=grad_w[rows])
            if grad_b is not None:
                torch.sum(g, 0, out=grad_b[rows])
        return grad_x, grad_w, grad_b


#: Largest ``N x C`` half for which backward concatenates the two halves' gradients and makes
#: one weight-gradient product; above it, two products write into one buffer (no copy).
_ONE_PRODUCT_MAX = 1 << 16
