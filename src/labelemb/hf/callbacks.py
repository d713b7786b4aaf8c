"""Trainer callbacks the baselines need."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ..baselines import OnlineLabelSmoothingLoss

__all__ = ["OnlineLabelSmoothingCallback"]


class OnlineLabelSmoothingCallback(TrainerCallback):
    """Online label smoothing swaps in the soft labels it gathered at each epoch's end;
    a no-op for the other losses. Pass it to the Trainer with ``loss="ols"`` (without it the
    model warns at its first training step)."""

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        if model is not None:
            model.epochs_driven = True

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None,
                     **kwargs: Any) -> None:
        criterion = getattr(model, "criterion", None)
        if isinstance(criterion, OnlineLabelSmoothingLoss):
            criterion.next_epoch()
