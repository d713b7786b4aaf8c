"""The configuration of :class:`~labelemb.hf.LabelEmbeddingForSequenceClassification`.

It holds the encoder's own configuration (any ``AutoConfig``) as a sub-config, so
``save_pretrained`` writes one ``config.json`` and ``from_pretrained`` rebuilds the encoder,
the head and the loss (with the learned label embedding, from the weights file).
"""

from __future__ import annotations

import os
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ..functional import PRESETS
from .settings import check_choice, check_fraction, loss_options_over

__all__ = ["LabelEmbeddingConfig", "LOSSES", "POOLINGS", "PROBLEM_TYPES"]

#: the training losses: ``emb`` label embedding (eq. 14), ``ce`` cross-entropy, ``ls`` label
#: smoothing, ``ols`` online label smoothing (needs :class:`~labelemb.hf.OnlineLabelSmoothingCallback`)
LOSSES = ("emb", "ce", "ls", "ols")
#: the features fed to the head: ``first`` the first token's last hidden state (``[CLS]``),
#: ``pooled`` the encoder's ``pooler_output``, ``mean`` the mean over non-padding tokens
POOLINGS = ("first", "pooled", "mean")
#: the ``problem_type`` values the model trains: one class per sequence (the paper's task;
#: ``None`` means the same). Multi-label and regression have no label embedding.
PROBLEM_TYPES = (None, "single_label_classification")


@strict
class LabelEmbeddingConfig(PreTrainedConfig):
    """Encoder sub-config plus the head and loss settings.

    Attributes:
        encoder: the encoder's config (a ``PreTrainedConfig`` or its dict); default a BERT.
        loss: one of :data:`LOSSES`.
        pooling: one of :data:`POOLINGS`.
        loss_options: for ``emb``, the fields of :class:`labelemb.LossOptions` that differ from
            the ``classification`` preset (``reduction`` must stay ``"mean"``).
        smoothing: ``ls``: the uniform smoothing; ``ols``: the first epoch's smoothing.
        ols_alpha: ``ols``: weight of the hard cross-entropy.
        classifier_dropout: dropout on the pooled features (``None``: the encoder's
            ``hidden_dropout_prob`` if it has one, else 0).
        num_labels / id2label / label2id: as for any Transformers classifier.

    ``from_pretrained`` of a folder holding another model's config (an encoder checkpoint,
    e.g. a saved ``BertModel``) takes that config as ``encoder``; the model's
    ``from_pretrained`` then loads the encoder's weights and initialises the head and the
    label embedding as a fresh model's.
    """

    model_type = "labelemb"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    loss: str = "emb"
    pooling: str = "first"
    loss_options: dict[str, Any] | None = None
    smoothing: float = 0.1
    ols_alpha: float = 0.5
    classifier_dropout: float | None = None

    def validate_labelemb(self) -> None:
        """Bad settings raise a ``ValueError`` naming the field. As a ``validate_*`` method of
        a strict config it runs on construction (wrapped in huggingface_hub's error)."""
        check_choice("loss", self.loss, LOSSES)
        check_choice("pooling", self.pooling, POOLINGS)
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES} (label embedding "
                             f"classifies one label per sequence), got {self.problem_type!r}")
        check_fraction("smoothing", self.smoothing)
        check_fraction("ols_alpha", self.ols_alpha, closed=True)
        if self.classifier_dropout is not None:
            check_fraction("classifier_dropout", self.classifier_dropout)
        options = loss_options_over(PRESETS["classification"], self.loss_options)
        if options.reduction != "mean":
            raise ValueError("loss_options: reduction must be 'mean' (the Trainer wants a scalar "
                             "normalised by num_items_in_batch)")

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None
                        ) -> PreTrainedConfig:
        """The encoder's text config: ``resize_token_embeddings`` writes ``vocab_size`` there,
        the config the encoder is rebuilt from."""
        return self.encoder.get_text_config(decoder=decoder, encoder=encoder)

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``PreTrainedConfig.get_config_dict``; another model type's config becomes the
        ``encoder`` of a default label-embedding config."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if config_dict.get("model_type", cls.model_type) != cls.model_type:
            config_dict = {"model_type": cls.model_type, "encoder": config_dict}
        return config_dict, kwargs
