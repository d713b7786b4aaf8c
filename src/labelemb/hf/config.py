"""The configuration of :class:`~labelemb.hf.LabelEmbeddingForSequenceClassification`.

It holds the encoder's own configuration (any ``AutoConfig``) as a sub-config, so
``save_pretrained`` writes one ``config.json`` and ``from_pretrained`` rebuilds the encoder,
the head and the loss (with the learned label embedding, from the weights file).
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

__all__ = ["LabelEmbeddingConfig", "LOSSES", "POOLINGS"]

#: the training losses: ``emb`` label embedding (eq. 14), ``ce`` cross-entropy, ``ls`` label
#: smoothing, ``ols`` online label smoothing (needs :class:`~labelemb.hf.OnlineLabelSmoothingCallback`)
LOSSES = ("emb", "ce", "ls", "ols")
#: the features fed to the head: ``first`` the first token's last hidden state (``[CLS]``),
#: ``pooled`` the encoder's ``pooler_output``, ``mean`` the mean over non-padding tokens
POOLINGS = ("first", "pooled", "mean")


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
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if (self.loss_options or {}).get("reduction", "mean") != "mean":
            raise ValueError("loss_options: reduction must be 'mean' (the Trainer wants a scalar "
                             "normalised by num_items_in_batch)")

