"""Label embedding for any Transformers causal LM, trained with the unmodified ``Trainer``.

:class:`LabelEmbeddingForCausalLM` wraps an ``AutoModelForCausalLM`` (``model``). Given
``labels``, it runs the wrapped model's base to the last hidden states and computes the loss
from them chunk by chunk (:class:`~labelemb.hf.lm.LMLoss`): the model's own LM head is the
main head (a weight tied to the input embedding stays tied), a second head sees the detached
hidden states, and the vocabulary's label embedding is the compressed ``ReLU(A[y] B)``. No
``tokens x vocab`` tensor larger than one chunk is made unless the logits are asked for
(``config.logits_with_loss``). Without labels, and in ``generate()``, the wrapped model runs
as it is: the second head is not used at inference.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .lm import LMLoss, check_logits_are_the_head_s, lm_head_layer
from .lm_config import LabelEmbeddingCausalLMConfig, build_config

__all__ = ["LabelEmbeddingForCausalLM"]


class LabelEmbeddingForCausalLM(PreTrainedModel):
    """A causal LM trained with label embedding (or cross-entropy, label smoothing).

    Args:
        config: a :class:`~labelemb.hf.LabelEmbeddingCausalLMConfig` (``lm``: the wrapped
            model's config).
        model: an already built (e.g. pre-trained) ``AutoModelForCausalLM``; default
            ``AutoModelForCausalLM.from_config(config.lm)``.

    Shape:
        ``input_ids``, ``attention_mask``, ``labels`` ``(N, T)``; labels are shifted inside
        (position ``t`` predicts ``labels[:, t + 1]``), ``-100`` ignored. Returns
        ``CausalLMOutputWithPast``: ``loss`` given labels, ``logits`` ``(N, T, V)`` unless
        labels are given and ``config.logits_with_loss`` (or ``return_logits``) is false.
    """

    config_class = LabelEmbeddingCausalLMConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    # forward takes num_items_in_batch: the Trainer passes it (counted over labels[:, 1:], as
    # for its own causal LMs: the class name says ForCausalLM) and does not divide the loss.
    accepts_loss_kwargs = True
    _supports_param_buffer_assignment = False

    def __init__(self, config: LabelEmbeddingCausalLMConfig, model: PreTrainedModel | None = None
                 ) -> None:
        super().__init__(config)
        config.validate_labelemb()
        self.model = model if model is not None else AutoModelForCausalLM.from_config(config.lm)
        config.lm = self.model.config  # one object: what is saved is what runs
        check_logits_are_the_head_s(self.model.config)
        head = lm_head_layer(self.model)
        self.lm_loss = LMLoss(config, head.in_features, head.out_features)
        self.post_init()

    @classmethod
    def from_model(cls, model: PreTrainedModel, loss: str = "emb", label_dim: int = 100,
                   **settings: Any) -> "LabelEmbeddingForCausalLM":
        """Wrap a built ``AutoModelForCausalLM`` (its weights kept). ``settings``: the other
        fields of :class:`~labelemb.hf.LabelEmbeddingCausalLMConfig` and, as keywords, the
        :class:`labelemb.LossOptions` fields (``warmup_steps=0``, ``tau=...``)."""
        config = build_config(LabelEmbeddingCausalLMConfig, model, loss=loss,
                              label_dim=label_dim, **settings)
        return cls(config, model=model)

    def _init_weights(self, module: nn.Module) -> None:
        # The wrapped model initialises itself (or is pre-trained); the second head keeps
        # nn.Linear's init and the label embedding A's N(0, 1), as in the authors' code.
        pass

    @property
    def label_embedding(self) -> nn.Module | None:
        """The learned ``ReLU(A[y] B)`` label embedding (``loss="emb"``), else ``None``."""
        return self.lm_loss.label_embedding

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped model's ``generate()``, unchanged."""
        return self.model.generate(*args, **kwargs)

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, num_items_in_batch: Tensor | int | None = None,
                return_logits: bool | None = None, **kwargs: Any) -> CausalLMOutputWithPast:
        if labels is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              return_dict=True, **kwargs)
        out = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                    return_dict=True, **kwargs)
        hidden, head = out.last_hidden_state, lm_head_layer(self.model)
        loss = self.lm_loss(hidden[:, :-1], labels[:, 1:].to(hidden.device), head,
                            num_items_in_batch)
        wanted = self.config.logits_with_loss if return_logits is None else return_logits
        return CausalLMOutputWithPast(loss=loss, logits=head(hidden) if wanted else None,
                                      past_key_values=getattr(out, "past_key_values", None),
                                      hidden_states=getattr(out, "hidden_states", None),
                                      attentions=getattr(out, "attentions", None))

