"""Label embedding on top of any Transformers encoder, trained with the unmodified ``Trainer``.

:class:`LabelEmbeddingForSequenceClassification` is ``AutoModel`` + pooling + dropout +
:class:`~labelemb.LabelEmbeddingHead` + the loss (:func:`~labelemb.hf.criterion.build_criterion`).
The head and the loss, with its learned label embedding, are sub-modules: the Trainer's
optimiser (built from ``model.parameters()``) trains them, and ``save_pretrained`` /
``from_pretrained`` save and load them with the encoder. ``forward`` returns a standard
``SequenceClassifierOutput`` whose ``logits`` are the main head's, so ``evaluate``,
``predict`` and ``compute_metrics`` work as for any classifier.

A saved model loads with the Auto classes and ``pipeline`` (see
:mod:`labelemb.hf.autoload`), and inputs longer than the encoder's positions
are cut to them (:func:`max_tokens`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import can_return_tuple

from ..baselines import OnlineLabelSmoothingLoss
from ..embedding import save_embedding
from ..head import LabelEmbeddingHead
from ..loss import LabelEmbeddingLoss
from .autoload import write_loader
from .config import LabelEmbeddingConfig
from .criterion import TrainerLoss, build_criterion

__all__ = ["LabelEmbeddingForSequenceClassification", "pool", "max_tokens"]

#: the inputs of ``forward`` that have a token axis (dim 1), cut together by :func:`max_tokens`
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")


def max_tokens(encoder: nn.Module) -> int | None:
    """The longest input the encoder's absolute positions allow: ``max_position_embeddings``,
    less RoBERTa-style embeddings' offset (they number positions from ``padding_idx + 1``);
    ``None`` where the config names no limit."""
    positions = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    offset = getattr(getattr(encoder, "embeddings", None), "padding_idx", None)
    return positions - (offset + 1 if isinstance(offset, int) else 0)


def pool(hidden: Tensor, attention_mask: Tensor | None, pooler_output: Tensor | None,
         how: str) -> Tensor:
    """``(N, T, H)`` last hidden states -> ``(N, H)`` features (see ``config.POOLINGS``)."""
    if how == "pooled":
        if pooler_output is None:
            raise ValueError("pooling='pooled' but the encoder returns no pooler_output; "
                             "use pooling='first' or 'mean'")
        return pooler_output
    if how == "mean":
        if attention_mask is None:
            return hidden.mean(1)
        mask = attention_mask[..., None].to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    return hidden[:, 0]


class LabelEmbeddingForSequenceClassification(PreTrainedModel):
    """A sequence classifier trained with label embedding (or a baseline loss).

    Args:
        config: a :class:`LabelEmbeddingConfig` (encoder sub-config, ``num_labels``, loss).
        encoder: an already built (e.g. pre-trained) encoder; default
            ``AutoModel.from_config(config.encoder)``.

    Shape:
        ``input_ids``, ``attention_mask`` ``(N, T)``; ``labels`` ``(N,)``, ``-100`` ignored.
        Returns ``SequenceClassifierOutput`` with ``logits`` ``(N, C)`` (the main head) and,
        given labels, the scalar ``loss``.
    """

    config_class = LabelEmbeddingConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    # What the encoder supports passes through to it: gradient checkpointing (checked against
    # the encoder in gradient_checkpointing_enable) and the attention implementations (the
    # encoder's sub-config gets the one asked for; an encoder without it refuses it itself).
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # forward takes num_items_in_batch: the Trainer then passes it and does not divide the
    # loss by the accumulation steps itself (see labelemb.hf.criterion.TrainerLoss).
    accepts_loss_kwargs = True

    def __init__(self, config: LabelEmbeddingConfig, encoder: PreTrainedModel | None = None
                 ) -> None:
        super().__init__(config)
        config.validate_labelemb()
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config.encoder)
        p = config.classifier_dropout
        if p is None:
            p = getattr(config.encoder, "hidden_dropout_prob", 0.0)
        self.dropout = nn.Dropout(p)
        hidden = config.encoder.hidden_size
        # Built without drawing: post_init's _init_weights draws the head's values once, as
        # it does for missing weights when loading. The second head exists only for label
        # embedding: the baselines' parameters and seeded initial values are the same model
        # minus it (main layer drawn first).
        with init.no_init_weights():
            self.head = LabelEmbeddingHead(hidden, config.num_labels, aux=config.loss == "emb")
            self.criterion = build_criterion(config)
        # Not a module: the criterion's normalisation for the Trainer, which keeps the step's
        # count of correct targets (labelemb.hf.criterion.TrainerLoss); nothing to save.
        self.trainer_loss = TrainerLoss(self.criterion)
        self.epochs_driven = False  # OnlineLabelSmoothingCallback sets it (loss="ols")
        self._warned_undriven = False
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """A fresh model's values, at construction and for whatever a checkpoint lacks: the
        head's layers ``nn.Linear``'s own init, the criterion's parameters and buffers a new
        criterion's (identity embedding, Appendix A; counters 0; OLS's first soft labels).
        Transformers initialises the encoder with its own ``_init_weights``, and guards every
        loaded tensor against these writes."""
        if any(module is layer for layer in self.head.children()):  # fc, aux_fc
            module.reset_parameters()  # torch.nn.init, guarded by Transformers
            return
        name = next((n for n, m in self.criterion.named_modules() if m is module), None)
        if name is not None:  # the criterion or one of its parts (the embedding)
            with torch.device("cpu"):
                fresh = build_criterion(self.config).get_submodule(name)
            values = {**dict(fresh.named_parameters(recurse=False)),
                      **dict(fresh.named_buffers(recurse=False))}
            for key, tensor in [*module.named_parameters(recurse=False),
                                *module.named_buffers(recurse=False)]:
                init.copy_(tensor, values[key])

    def gradient_checkpointing_enable(self, *args: Any, **kwargs: Any) -> None:
        """``PreTrainedModel.gradient_checkpointing_enable``: the encoder's layers checkpoint
        (the head has none); refused, naming it, for an encoder that cannot."""
        if not getattr(self.encoder, "supports_gradient_checkpointing", False):
            raise ValueError(f"gradient checkpointing: the encoder "
                             f"{type(self.encoder).__name__} does not support it")
        super().gradient_checkpointing_enable(*args, **kwargs)

    @property
    def label_embedding(self) -> nn.Module | None:
        """The learned label embedding (``loss="emb"``), else ``None``."""
        c = self.criterion
        return c.embedding if isinstance(c, LabelEmbeddingLoss) else None

    @can_return_tuple  # return_dict=False, or config.return_dict=False: a tuple
    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, num_items_in_batch: Tensor | int | None = None,
                inputs_embeds: Tensor | None = None, **encoder_kwargs: Any
                ) -> SequenceClassifierOutput:
        if inputs_embeds is not None:  # (passed on only when given: not every encoder takes it)
            encoder_kwargs["inputs_embeds"] = inputs_embeds
        inputs = self._fit_positions({"input_ids": input_ids, "attention_mask": attention_mask,
                                      **encoder_kwargs})
        out = self.encoder(**inputs, return_dict=True)
        features = pool(out.last_hidden_state, inputs["attention_mask"],
                        getattr(out, "pooler_output", None), self.config.pooling)
        logits, aux_logits = self.head(self.dropout(features))
        loss = None
        if labels is not None:
            self._check_epochs_driven()
            loss = self.trainer_loss(logits, aux_logits, labels, num_items_in_batch)
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=getattr(out, "hidden_states", None),
                                        attentions=getattr(out, "attentions", None))

    def _fit_positions(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """``inputs`` with each :data:`TOKEN_INPUTS` tensor cut to the encoder's
        :func:`max_tokens` (keeping the first tokens: ``[CLS]`` stays), with a warning; the
        encoder has no position beyond them. ``truncation=True`` in the tokenizer (or the
        pipeline call) cuts there first and keeps the final ``[SEP]``."""
        limit = max_tokens(self.encoder)
        lengths = {v.shape[1] for k, v in inputs.items() if k in TOKEN_INPUTS and v is not None}
        if limit is None or not lengths or max(lengths) <= limit:
            return inputs
        warnings.warn(f"labelemb: inputs of {max(lengths)} tokens cut to the encoder's {limit} "
                      f"positions (pass truncation=True to the tokenizer or pipeline)",
                      stacklevel=3)
        return {k: v[:, :limit] if k in TOKEN_INPUTS and v is not None else v
                for k, v in inputs.items()}

    def _check_epochs_driven(self) -> None:
        """``loss="ols"`` learns its soft labels only when something ends each epoch
        (:class:`~labelemb.hf.OnlineLabelSmoothingCallback`): warned once, at the first
        training step without it."""
        if (self.training and not self.epochs_driven and not self._warned_undriven
                and isinstance(self.criterion, OnlineLabelSmoothingLoss)):
            warnings.warn("labelemb: loss='ols' without OnlineLabelSmoothingCallback trains as "
                          "fixed label smoothing (its soft labels never update): pass "
                          "callbacks=[OnlineLabelSmoothingCallback()] to the Trainer",
                          stacklevel=3)
            self._warned_undriven = True

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any
                        ) -> None:
        """``PreTrainedModel.save_pretrained``, plus ``embedding.safetensors`` (the learned
        embedding with the category names) for ``labelemb inspect`` and
        :func:`labelemb.FixedLabelEmbedding.from_file`; the weights file holds it too."""
        main = kwargs.get("is_main_process", True)
        if main:  # config.json then names the loader: Auto classes without `import labelemb`
            self.config.auto_map = write_loader(save_directory, {
                "AutoConfig": LabelEmbeddingConfig,
                "AutoModel": LabelEmbeddingForSequenceClassification,
                "AutoModelForSequenceClassification": LabelEmbeddingForSequenceClassification})
        super().save_pretrained(save_directory, *args, **kwargs)
        emb = self.label_embedding
        if emb is not None and main:
            save_embedding(emb, Path(save_directory) / "embedding.safetensors", emb.class_names)

    @torch.no_grad()
    def soft_targets(self) -> Tensor | None:
        """``softmax(E)``, ``(C, C)``: row ``i`` is what label ``i`` has learned to resemble."""
        if self.label_embedding is None:
            return None
        return self.criterion.soft_target(torch.arange(self.config.num_labels,
                                                       device=self.device))
