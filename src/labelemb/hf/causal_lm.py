"""Label embedding for any Transformers causal LM, trained with the unmodified ``Trainer``.

:class:`LabelEmbeddingForCausalLM` wraps an ``AutoModelForCausalLM`` (``model``). Given
``labels``, it runs the wrapped model's base to the last hidden states and computes the loss
from them chunk by chunk (:class:`~labelemb.hf.lm.LMLoss`): the model's own LM head is the
main head (a weight tied to the input embedding stays tied), a second head sees the detached
hidden states, and the vocabulary's label embedding is the compressed ``ReLU(A[y] B)``. No
``tokens x vocab`` tensor larger than one chunk is made in training mode, nor in eval mode with
``config.logits_with_loss=False`` (by default the logits are returned in eval mode, as
Transformers' models return them). Without labels, and in ``generate()``, the wrapped model runs
as it is: the second head is not used at inference.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
import torch
from transformers import AutoModelForCausalLM, PreTrainedModel
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
        ``CausalLMOutputWithPast``: ``loss`` given labels; ``logits`` ``(N, T, V)`` without
        labels, and with them as ``return_logits``, else ``config.logits_with_loss``, else
        ``not self.training`` says (none in a training step, by default).
    """

    # The Trainer counts num_items_in_batch over labels[:, 1:] for a model whose loss_type
    # is ForCausalLM, which the class name gives.
    config_class = LabelEmbeddingCausalLMConfig
    auto_class = AutoModelForCausalLM

    @classmethod
    def from_model(cls, model: PreTrainedModel, loss: str = "emb", label_dim: int = 100,
                   **settings: Any) -> "LabelEmbeddingForCausalLM":
        """Wrap a built causal LM, after checking on a few tokens that its logits are its LM
        head's output on its base model's last hidden states (the loss is computed from those:
        a head with more layers, a logit cap, an added router loss would be left out)."""
        check_logits_from_hidden_states(model)
        return super().from_model(model, loss=loss, label_dim=label_dim, **settings)

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
        self._check_labels(labels, hidden, "input_ids")
        loss = self.lm_loss(hidden[:, :-1], labels[:, 1:].to(hidden.device), head,
                            num_items_in_batch)
        return self._output(CausalLMOutputWithPast, out, loss, head, return_logits, tuples)


@torch.no_grad()
def check_logits_from_hidden_states(model: PreTrainedModel) -> None:
    """A ``ValueError`` unless ``model(ids).logits == lm_head(base_model(ids) hidden states)``
    on four tokens and the model adds no loss of its own (MoE router losses)."""
    name = type(model).__name__
    if getattr(model.config, "output_router_logits", False):
        raise ValueError(f"{name} adds a router load-balancing loss (output_router_logits=True) "
                         "that a loss from the hidden states leaves out; set it to False to wrap")
    vocab = model.get_output_embeddings().out_features
    ids = (torch.arange(1, 5) % vocab).unsqueeze(0).to(model.device)
    was = model.training
    model.eval()
    try:
        logits = model(input_ids=ids).logits.float()
        hidden = model.base_model(input_ids=ids).last_hidden_state
        head = lm_head_layer(model)(hidden).float()
    finally:
        model.train(was)
    if head.shape != logits.shape or not torch.allclose(head, logits, rtol=1e-4, atol=1e-4):
        raise ValueError(f"{name}'s logits are not its LM head's output on its base model's "
                         "hidden states (a head with more layers, a scale or a cap): labelemb "
                         "computes the loss from those and would not train this model's logits")
