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

from torch import Tensor
from transformers import AutoModelForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from .lm import lm_head_layer
from .lm_base import LabelEmbeddingLMBase
from .lm_config import LabelEmbeddingCausalLMConfig

__all__ = ["LabelEmbeddingForCausalLM"]


class LabelEmbeddingForCausalLM(LabelEmbeddingLMBase):
    """A causal LM trained with label embedding (or cross-entropy, label smoothing).

    Args:
        config: a :class:`~labelemb.hf.LabelEmbeddingCausalLMConfig` (``lm``: the wrapped
            model's config).
        model: an already built (e.g. pre-trained) ``AutoModelForCausalLM``; default
            ``AutoModelForCausalLM.from_config(config.lm)``.

    Build from a model with ``LabelEmbeddingForCausalLM.from_model(model, loss="emb",
    label_dim=100, **loss_options)``.

    Shape:
        ``input_ids``, ``attention_mask``, ``labels`` ``(N, T)``; labels are shifted inside
        (position ``t`` predicts ``labels[:, t + 1]``), ``-100`` ignored. Returns
        ``CausalLMOutputWithPast``: ``loss`` given labels, ``logits`` ``(N, T, V)`` unless
        labels are given and ``config.logits_with_loss`` (or ``return_logits``) is false.
    """

    # The Trainer counts num_items_in_batch over labels[:, 1:] for a model whose loss_type
    # is ForCausalLM, which the class name gives.
    config_class = LabelEmbeddingCausalLMConfig
    auto_class = AutoModelForCausalLM

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, num_items_in_batch: Tensor | int | None = None,
                return_logits: bool | None = None, **kwargs: Any
                ) -> CausalLMOutputWithPast | tuple:
        if labels is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              **kwargs)
        tuples = kwargs.pop("return_dict", None) is False
        out = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                    return_dict=True, **kwargs)
        hidden, head = out.last_hidden_state, lm_head_layer(self.model)
        loss = self.lm_loss(hidden[:, :-1], labels[:, 1:].to(hidden.device), head,
                            num_items_in_batch)
        wanted = self.config.logits_with_loss if return_logits is None else return_logits
        output = CausalLMOutputWithPast(loss=loss, logits=head(hidden) if wanted else None,
                                        past_key_values=getattr(out, "past_key_values", None),
                                        hidden_states=getattr(out, "hidden_states", None),
                                        attentions=getattr(out, "attentions", None))
        return output.to_tuple() if tuples else output
