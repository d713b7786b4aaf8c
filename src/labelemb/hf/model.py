"""Label embedding on top of any Transformers encoder, trained with the unmodified ``Trainer``.

:class:`LabelEmbeddingForSequenceClassification` is ``AutoModel`` + pooling + dropout +
:class:`~labelemb.LabelEmbeddingHead` + the loss (:func:`~labelemb.hf.criterion.build_criterion`).
The head and the loss, with its learned label embedding, are sub-modules: the Trainer's
optimiser (built from ``model.parameters()``) trains them, and ``save_pretrained`` /
``from_pretrained`` save and load them with the encoder. ``forward`` returns a standard
``SequenceClassifierOutput`` whose ``logits`` are the main head's, so ``evaluate``,
``predict`` and ``compute_metrics`` work as for any classifier.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from ..embedding import save_embedding
from ..head import LabelEmbeddingHead
from ..loss import LabelEmbeddingLoss
from .config import LabelEmbeddingConfig
from .criterion import TrainerLoss, build_criterion

__all__ = ["LabelEmbeddingForSequenceClassification", "pool"]


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
        # The second head exists only for label embedding: the baselines' parameters and
        # seeded initial values are the same model minus it (main layer built first).
        self.head = LabelEmbeddingHead(hidden, config.num_labels, aux=config.loss == "emb")
        self.criterion = build_criterion(config)
        # Not a module: the criterion's normalisation for the Trainer, which keeps the step's
        # count of correct targets (labelemb.hf.criterion.TrainerLoss); nothing to save.
        self.trainer_loss = TrainerLoss(self.criterion)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # The encoder initialises itself (its own post_init, or pre-trained weights); the head
        # keeps nn.Linear's init and the embedding its identity (Appendix A), as in the paper.
        pass

    @property
    def label_embedding(self) -> nn.Module | None:
        """The learned label embedding (``loss="emb"``), else ``None``."""
        c = self.criterion
        return c.embedding if isinstance(c, LabelEmbeddingLoss) else None

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, num_items_in_batch: Tensor | int | None = None,
                **encoder_kwargs: Any) -> SequenceClassifierOutput:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           return_dict=True, **encoder_kwargs)
        features = pool(out.last_hidden_state, attention_mask,
                        getattr(out, "pooler_output", None), self.config.pooling)
        logits, aux_logits = self.head(self.dropout(features))
        loss = None
        if labels is not None:
            loss = self.trainer_loss(logits, aux_logits, labels, num_items_in_batch)
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=getattr(out, "hidden_states", None),
                                        attentions=getattr(out, "attentions", None))

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any
                        ) -> None:
        """``PreTrainedModel.save_pretrained``, plus ``embedding.safetensors`` (the learned
        embedding with the category names) for ``labelemb inspect`` and
        :func:`labelemb.FixedLabelEmbedding.from_file`; the weights file holds it too."""
        super().save_pretrained(save_directory, *args, **kwargs)
        emb = self.label_embedding
        if emb is not None and kwargs.get("is_main_process", True):
            save_embedding(emb, Path(save_directory) / "embedding.safetensors", emb.class_names)

    @torch.no_grad()
    def soft_targets(self) -> Tensor | None:
        """``softmax(E)``, ``(C, C)``: row ``i`` is what label ``i`` has learned to resemble."""
        if self.label_embedding is None:
            return None
        return self.criterion.soft_target(torch.arange(self.config.num_labels,
                                                       device=self.device))
