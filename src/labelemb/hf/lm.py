"""What the two language models share: their settings, and the loss from hidden states.

A language model's labels are its vocabulary, so :class:`LMLoss` never makes the
``tokens x vocab`` logits: it computes the loss from the last hidden states, chunk by chunk
(:mod:`labelemb.chunked`), through the model's own LM head and, for label embedding, a second
head on the detached hidden states and the compressed label embedding ``ReLU(A[y] B)``.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import Tensor, nn
from transformers import PreTrainedConfig

from ..chunked import ChunkedLabelEmbeddingLoss, HeadLayers, chunked_cross_entropy
from ..embedding import CompressedLabelEmbedding
from ..functional import PRESETS, LossOptions, divides_by_correct
from .criterion import step_normalizers
from .settings import check_choice, check_fraction, check_positive_int, loss_options_over

__all__ = ["LM_LOSSES", "LMLoss", "validate_lm_settings",
           "check_logits_are_the_head_s", "lm_head_layer"]

#: the training losses of the language models: ``emb`` label embedding (the ``seq2seq``
#: preset plus ``loss_options``), ``ce`` cross-entropy, ``ls`` label smoothing
LM_LOSSES = ("emb", "ce", "ls")
#: config fields by which a model's logits are more than ``lm_head(hidden)``: the chunked
#: loss applies the head itself and would silently leave them out
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def lm_options(config: PreTrainedConfig) -> LossOptions:
    """The ``seq2seq`` preset with ``config.loss_options`` over it (a ``ValueError`` naming
    the option when one is unknown or bad)."""
    return loss_options_over(PRESETS["seq2seq"], config.loss_options)


def _check_types(config: PreTrainedConfig) -> None:
    """The fields' types first, so that a string from a config file or a command line is named
    and not compared (``"0.1" < 1.0`` is a ``TypeError``)."""
    check_choice("loss", config.loss, LM_LOSSES)
    check_positive_int("label_dim", config.label_dim)
    if config.chunk_size is not None:
        check_positive_int("chunk_size", config.chunk_size)
    check_fraction("smoothing", config.smoothing)
    if not (config.logits_with_loss is None or isinstance(config.logits_with_loss, bool)):
        raise ValueError(f"logits_with_loss must be True, False or None, got "
                         f"{config.logits_with_loss!r}")


def validate_lm_settings(config: PreTrainedConfig) -> None:
    """The settings both language-model configs share; a ``ValueError`` naming the field."""
    _check_types(config)
    options = lm_options(config)
    if options.reduction != "mean":
        raise ValueError("loss_options: reduction must be 'mean' (the Trainer wants a scalar "
                         "normalised by num_items_in_batch)")
    if config.loss == "emb" and divides_by_correct(options):
        raise ValueError(
            "loss_options: embedding_normalizer='correct' (with mask_wrong) is not available "
            "for language models: the chunked loss cannot divide by a whole step's count of "
            "correct targets under gradient accumulation; use 'valid' (the seq2seq preset's)")


def check_logits_are_the_head_s(config: PreTrainedConfig) -> None:
    """A model whose logits are more than its LM head's output is refused: the loss would not
    be its logits' loss."""
    for name in _LOGIT_TRANSFORMS:
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise ValueError(f"the model's logits are not lm_head(hidden states) ({name}="
                             f"{getattr(config, name)!r}); labelemb cannot compute its loss "
                             "from the hidden states")


def lm_head_layer(model: nn.Module) -> nn.Linear:
    """The model's own LM head (``get_output_embeddings()``), which must be an ``nn.Linear``."""
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"the model's output embedding is a {type(head).__name__}, not an "
                         "nn.Linear: labelemb cannot apply it chunk by chunk")
    return head


class LMLoss(nn.Module):
    """The training loss of a language model, from its hidden states.

    Args:
        config: a language-model config of labelemb (``loss``, ``label_dim``,
            ``loss_options``, ``smoothing``, ``chunk_size``).
        hidden_size, vocab_size: the model's.

    For ``emb`` it owns the second head ``aux_head`` (no bias, as LM heads have none) and the
    criterion with its compressed label embedding; ``ce`` and ``ls`` own nothing.

    Shape:
        ``hidden (*, H)``, ``labels (*)`` (already aligned: shifted for a causal LM), the LM
        head -> a 0-dim loss. With ``num_items_in_batch`` (the Trainer's), the sums are divided
        by it, as :class:`~labelemb.hf.TrainerLoss` does for classification.
    """

    def __init__(self, config: PreTrainedConfig, hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        validate_lm_settings(config)
        self.kind, self.smoothing = config.loss, float(config.smoothing)
        self.chunk_size = config.chunk_size
        self.aux_head: nn.Linear | None = None
        self.criterion: ChunkedLabelEmbeddingLoss | None = None
        if config.loss == "emb":
            self.aux_head = nn.Linear(hidden_size, vocab_size, bias=False)
            embedding = CompressedLabelEmbedding(vocab_size, config.label_dim)
            self.criterion = ChunkedLabelEmbeddingLoss(embedding, config.chunk_size,
                                                       **asdict(lm_options(config)))

    @property
    def label_embedding(self) -> nn.Module | None:
        return None if self.criterion is None else self.criterion.embedding

    def resize(self, vocab_size: int) -> None:
        """The second head and the label embedding to ``vocab_size`` tokens: the kept tokens'
        rows stay, new tokens' rows are a new module's (``nn.Linear``'s draw, ``A`` N(0, 1))."""
        if self.aux_head is None or self.criterion is None:
            return  # ce, ls: nothing of the vocabulary's own
        if vocab_size == self.aux_head.out_features:
            return  # the same parameters: an optimizer built before still trains them
        self.aux_head = _with_rows_of(
            self.aux_head, nn.Linear(self.aux_head.in_features, vocab_size, bias=False))
        old = self.criterion.embedding
        self.criterion.embedding = _with_rows_of(
            old, CompressedLabelEmbedding(vocab_size, old.dim, bias=old.B.bias is not None))

    def forward(self, hidden: Tensor, labels: Tensor, lm_head: nn.Linear,
                num_items_in_batch: Tensor | int | None = None) -> Tensor:
        normalizers = step_normalizers(num_items_in_batch, hidden.device)
        if self.criterion is None:
            return chunked_cross_entropy(hidden, labels, lm_head, chunk_size=self.chunk_size,
                                         smoothing=self.smoothing if self.kind == "ls" else 0.0,
                                         normalizers=normalizers).loss
        head = HeadLayers(lm_head, self.aux_head)
        return self.criterion(hidden, labels, head, normalizers=normalizers).loss

    def extra_repr(self) -> str:
        return f"loss={self.kind!r}" + (f", smoothing={self.smoothing}" if self.kind == "ls"
                                         else "")


@torch.no_grad()
def _with_rows_of(old: nn.Module, new: nn.Module) -> nn.Module:
    """``new``, in ``old``'s dtype and on its device, with the first rows of each of ``old``'s
    parameters (their first dimension is the vocabulary) copied into the same of ``new``'s."""
    new.to(next(old.parameters()))
    with torch.no_grad():
        for before, after in zip(old.parameters(), new.parameters()):
            rows = min(before.shape[0], after.shape[0])
            after[:rows].copy_(before[:rows])
            after.requires_grad_(before.requires_grad)  # a frozen part stays frozen
    return new
