"""Label embedding for Transformers encoder-decoder LMs (BART, Marian, ...), trained with the
unmodified ``Seq2SeqTrainer``, ``predict_with_generate`` included.

:class:`LabelEmbeddingForSeq2SeqLM` wraps an ``AutoModelForSeq2SeqLM`` (``model``) as
:class:`~labelemb.hf.LabelEmbeddingForCausalLM` wraps a causal LM: given ``labels`` the loss
comes from the decoder's last hidden states chunk by chunk, through the model's own LM head
(and its ``final_logits_bias``, if it has one); ``generate()`` is the wrapped model's.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers import AutoModelForSeq2SeqLM, PreTrainedModel
from transformers.modeling_outputs import Seq2SeqLMOutput

from .lm import lm_head_layer
from .lm_base import LabelEmbeddingLMBase
from .lm_config import LabelEmbeddingSeq2SeqLMConfig

__all__ = ["LabelEmbeddingForSeq2SeqLM"]


class LabelEmbeddingForSeq2SeqLM(LabelEmbeddingLMBase):
    """An encoder-decoder LM trained with label embedding (or cross-entropy, label smoothing).

    Args:
        config: a :class:`~labelemb.hf.LabelEmbeddingSeq2SeqLMConfig`.
        model: an already built ``AutoModelForSeq2SeqLM`` whose ``base_model`` returns the
            decoder's hidden states (BART, Marian, mBART, Pegasus); default one from
            ``config.lm``.

    Shape:
        ``input_ids``, ``attention_mask`` ``(N, S)``; ``labels`` ``(N, T)``, not shifted: the
        decoder's inputs are the labels shifted right (the model's own
        ``prepare_decoder_input_ids_from_labels``) unless ``decoder_input_ids`` are given;
        ``-100`` ignored. Returns ``Seq2SeqLMOutput``, its ``logits`` ``(N, T, V)`` as the
        causal LM's (none in a training step given labels, by default).
    """

    config_class = LabelEmbeddingSeq2SeqLMConfig
    auto_class = AutoModelForSeq2SeqLM

    def __init__(self, config: LabelEmbeddingSeq2SeqLMConfig,
                 model: PreTrainedModel | None = None) -> None:
        super().__init__(config, model)
        if self.model.base_model is self.model:
            raise ValueError(f"{type(self.model).__name__} has no base model that returns the "
                             "decoder's hidden states (T5 computes its logits itself): use a "
                             "BART- or Marian-like model")

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                decoder_input_ids: Tensor | None = None, labels: Tensor | None = None,
                num_items_in_batch: Tensor | int | None = None,
                return_logits: bool | None = None, **kwargs: Any) -> Seq2SeqLMOutput | tuple:
        if labels is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              decoder_input_ids=decoder_input_ids, **kwargs)
        if decoder_input_ids is None and kwargs.get("decoder_inputs_embeds") is None:
            decoder_input_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
        tuples = kwargs.pop("return_dict", None) is False
        out = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                    decoder_input_ids=decoder_input_ids, return_dict=True,
                                    **kwargs)
        hidden, head = out.last_hidden_state, self._head()
        self._check_labels(labels, hidden, "decoder_input_ids")
        loss = self.lm_loss(hidden, labels.to(hidden.device), head, num_items_in_batch)
        return self._output(Seq2SeqLMOutput, out, loss, head, return_logits, tuples)

    def _head(self) -> nn.Linear:
        """The LM head as the logits see it: BART and Marian add a ``final_logits_bias``
        buffer, which becomes the bias of a linear layer sharing the head's weight."""
        head = lm_head_layer(self.model)
        bias = getattr(self.model, "final_logits_bias", None)
        if bias is None:
            return head
        # sized by the weight: a tied head resized by Transformers keeps a stale out_features
        layer = nn.Linear(*head.weight.shape[::-1], bias=False, device="meta")
        layer.weight = head.weight
        layer.bias = nn.Parameter(bias.reshape(-1), requires_grad=False)  # the buffer's memory
        return layer
