"""The configurations of the two language models: the wrapped model's own config as the
sub-config ``lm``, plus the loss settings.

``save_pretrained`` writes one ``config.json``; ``from_pretrained`` rebuilds the wrapped model
from ``lm``, and the second head and the learned label embedding from the weights file.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .lm import validate_lm_settings

__all__ = ["LM_SETTINGS", "LabelEmbeddingLMConfig", "LabelEmbeddingCausalLMConfig",
           "LabelEmbeddingSeq2SeqLMConfig", "build_config"]


@strict
class LabelEmbeddingLMConfig(PreTrainedConfig):
    """The loss settings both language models share.

    Attributes:
        lm: the wrapped model's config (a ``PreTrainedConfig`` or its dict).
        loss: ``emb``, ``ce`` or ``ls`` (:data:`labelemb.hf.lm.LM_LOSSES`).
        label_dim: ``emb``: the compressed label embedding's size (``ReLU(A[y] B)``, ``A`` is
            ``vocab x label_dim``).
        loss_options: ``emb``: the fields of :class:`labelemb.LossOptions` that differ from
            the ``seq2seq`` preset (its 20,000-step warm-up included); ``reduction`` stays
            ``"mean"`` and ``embedding_normalizer`` ``"valid"``.
        smoothing: ``ls``: the uniform smoothing.
        chunk_size: targets per chunk of the loss (``None``: labelemb's default for the
            vocabulary).
        logits_with_loss: whether a forward given ``labels`` also returns the ``tokens x vocab``
            logits. ``None`` (default): not in training mode (the Trainer's training step
            reads only the loss), yes in eval mode (Transformers' contract, for
            ``compute_metrics`` and ``predict``). ``False``: never, also in evaluation
            (``prediction_loss_only``, perplexity); ``True``: always.
    """

    lm: PreTrainedConfig | dict | None = None
    loss: str = "emb"
    label_dim: int = 100
    loss_options: dict[str, Any] | None = None
    smoothing: float = 0.1
    chunk_size: int | None = None
    logits_with_loss: bool | None = None
    # what the Trainer leaves out of the predictions it gathers: the KV cache, under its name
    # in Transformers 5.0 and in later 5.x releases
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def validate_labelemb(self) -> None:
        """Bad settings raise a ``ValueError`` naming the field (run on construction)."""
        validate_lm_settings(self)

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None
                        ) -> PreTrainedConfig:
        """The wrapped model's text config (its vocabulary, layers, cache settings), itself
        and not a copy: an encoder-decoder config's own ``get_text_config(decoder=True)``
        copies its decoder's fields out, where a setting would be lost."""
        if self.lm is None:
            return super().get_text_config(decoder=decoder, encoder=encoder)
        return self.lm.get_text_config()


#: the settings labelemb adds to the wrapped model's config (the loss's)
LM_SETTINGS = tuple(name for name in LabelEmbeddingLMConfig.__annotations__ if name != "lm")


@strict
class LabelEmbeddingCausalLMConfig(LabelEmbeddingLMConfig):
    """:class:`LabelEmbeddingLMConfig` of a causal LM (``lm``: default a GPT-2 config)."""

    model_type = "labelemb_causal_lm"
    sub_configs_defaults = {"lm": SubConfigSpec(config_class=AutoConfig, model_type="gpt2")}


@strict
class LabelEmbeddingSeq2SeqLMConfig(LabelEmbeddingLMConfig):
    """:class:`LabelEmbeddingLMConfig` of an encoder-decoder LM (``lm``: default a Marian
    config)."""

    model_type = "labelemb_seq2seq_lm"
    sub_configs_defaults = {"lm": SubConfigSpec(config_class=AutoConfig, model_type="marian")}
    is_encoder_decoder: bool = True


def build_config(config_class: type[LabelEmbeddingLMConfig], model: Any, **settings: Any
                 ) -> LabelEmbeddingLMConfig:
    """The config of ``from_model``: ``settings`` that are config fields stay, the others
    are ``loss_options``; a bad one is a ``ValueError`` naming it (not the strict config's
    wrapper). The wrapped model's config goes in as a copy, because building a config resets
    its sub-configs' attention implementation; the model puts its own back."""
    fields = set(config_class.__dataclass_fields__)
    own = {k: v for k, v in settings.items() if k in fields}
    options = {k: v for k, v in settings.items() if k not in fields}
    if options:
        own["loss_options"] = {**(own.get("loss_options") or {}), **options}
    try:
        return config_class(lm=model.config.to_dict(), **own)
    except StrictDataclassError as err:
        cause = err.__cause__ if isinstance(err.__cause__, ValueError) else err
        raise ValueError(str(cause)) from None
