"""LSTM encoder-decoder with Luong "general" attention and a label-embedding head.

The paper's seq2seq model (Section 3.3): a unidirectional LSTM encoder, an LSTM decoder started
from the encoder's final state, global attention with the "general" score
``h_t^T W_a h_s`` (Luong et al., 2015) and NO input feeding, so teacher-forced training runs
the decoder LSTM over the whole target in one call. The attentional state
``h~_t = tanh(W_c [c_t; h_t])`` feeds a :class:`~labelemb.LabelEmbeddingHead`, which returns
``(logits, aux_logits)`` per target token.

Padding never changes a result: the encoder runs on packed sequences, attention gives padded
source positions zero weight, and the decoder is causal, so PAD columns appended to a batch
leave every real position's output unchanged (the loss then ignores PAD targets).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..data.vocab import PAD
from ..head import LabelEmbeddingHead

__all__ = ["Seq2SeqConfig", "SIZES", "Seq2Seq", "EncoderOutput", "State"]


@dataclass
class Seq2SeqConfig:
    """Sizes of the model. ``share_embeddings`` needs one vocabulary for both sides."""

    src_vocab_size: int
    tgt_vocab_size: int
    emb_dim: int = 512
    hidden: int = 512
    layers: int = 2
    dropout: float = 0.2
    share_embeddings: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


#: The paper's sizes (Section 3.3; the authors' code, docs/SEQ2SEQ.md).
SIZES: dict[str, dict] = {
    "iwslt15": dict(emb_dim=512, hidden=512, layers=2, dropout=0.2, share_embeddings=False),
    "lcsts": dict(emb_dim=400, hidden=500, layers=1, dropout=0.0, share_embeddings=True),
}


State = tuple[Tensor, Tensor]  # LSTM (h, c), each (layers, B, hidden)


class EncoderOutput(NamedTuple):
    """``memory (B, S, H)``, ``keys = memory W_a^T (B, S, H)`` (precomputed for attention),
    ``mask (B, S)`` True at real source tokens, ``state`` to start the decoder."""

    memory: Tensor
    keys: Tensor
    mask: Tensor
    state: State

    def index_select(self, index: Tensor) -> "EncoderOutput":
        """Rows ``index`` (beam search repeats and reorders sentences)."""
        h, c = self.state
        return EncoderOutput(
            self.memory.index_select(0, index), self.keys.index_select(0, index),
            self.mask.index_select(0, index), (h.index_select(1, index), c.index_select(1, index)),
        )


class Seq2Seq(nn.Module):
    """Attention encoder-decoder whose output layer is a :class:`~labelemb.LabelEmbeddingHead`.

    Args:
        config: a :class:`Seq2SeqConfig`.
        aux_head: build the auxiliary output layer (needed by the label embedding loss; the
            cross-entropy baseline does not need it).

    Shape:
        ``forward(src (B, S), src_lengths (B,), tgt_in (B, T))`` ->
        ``logits, aux_logits`` each ``(B, T, V)`` (``aux_logits`` None without ``aux_head``).
    """

    def __init__(self, config: Seq2SeqConfig, aux_head: bool = True) -> None:
        super().__init__()
        c = config
        if c.share_embeddings and c.src_vocab_size != c.tgt_vocab_size:
            raise ValueError(
                "share_embeddings needs one vocabulary: src_vocab_size "
                f"{c.src_vocab_size} != tgt_vocab_size {c.tgt_vocab_size}"
            )
        if not 0.0 <= c.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {c.dropout}")
        self.config = c
        self.src_embed = nn.Embedding(c.src_vocab_size, c.emb_dim, padding_idx=PAD)
        self.tgt_embed = (
            self.src_embed if c.share_embeddings
            else nn.Embedding(c.tgt_vocab_size, c.emb_dim, padding_idx=PAD)
        )
        lstm_dropout = c.dropout if c.layers > 1 else 0.0
        self.encoder = nn.LSTM(c.emb_dim, c.hidden, c.layers, batch_first=True, dropout=lstm_dropout)
        self.decoder = nn.LSTM(c.emb_dim, c.hidden, c.layers, batch_first=True, dropout=lstm_dropout)
        self.attn_in = nn.Linear(c.hidden, c.hidden, bias=False)  # W_a of the "general" score
        self.attn_out = nn.Linear(2 * c.hidden, c.hidden, bias=False)  # W_c
        self.dropout = nn.Dropout(c.dropout)
        self.head = LabelEmbeddingHead(c.hidden, c.tgt_vocab_size, aux=aux_head)

    # ------------------------------------------------------------------ encoder
    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderOutput:
        """``src (B, S)`` padded with PAD, ``src_lengths (B,)`` >= 1."""
        if src.dim() != 2:
            raise ValueError(f"src must be (B, S), got shape {tuple(src.shape)}")
        lengths = src_lengths.detach().to("cpu", torch.long)
        if bool((lengths < 1).any()) or int(lengths.max()) > src.shape[1]:
            raise ValueError("src_lengths must be in [1, S]")
        emb = self.dropout(self.src_embed(src))
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < lengths.to(src.device)[:, None]
        return EncoderOutput(memory, self.attn_in(memory), mask, state)

    # ------------------------------------------------------------------ decoder
    def attend(self, dec: Tensor, enc: EncoderOutput) -> tuple[Tensor, Tensor]:
        """Luong global attention. ``dec (B, T, H)`` -> attentional state ``(B, T, H)`` and
        weights ``(B, T, S)``."""
        scores = torch.bmm(dec, enc.keys.transpose(1, 2))  # h_t^T W_a h_s
        scores = scores.masked_fill(~enc.mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights, enc.memory)
        attentional = torch.tanh(self.attn_out(torch.cat([context, dec], dim=-1)))
        return self.dropout(attentional), weights

    def decode(
        self, tgt_in: Tensor, enc: EncoderOutput, state: State | None = None
    ) -> tuple[Tensor, State, Tensor]:
        """Run the decoder over ``tgt_in (B, T)``: attentional states ``(B, T, H)``, the new
        LSTM state, attention weights ``(B, T, S)``."""
        emb = self.dropout(self.tgt_embed(tgt_in))
        dec, state = self.decoder(emb, enc.state if state is None else state)
        attentional, weights = self.attend(dec, enc)
        return attentional, state, weights

    def features(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """The attentional states ``(B, T, H)`` that the head turns into logits (teacher
        forcing); a chunked loss takes these instead of ``(B, T, V)`` logits."""
        enc = self.encode(src, src_lengths)
        attentional, _, _ = self.decode(tgt_in, enc)
        return attentional

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        return self.head(self.features(src, src_lengths, tgt_in))

    @torch.no_grad()
    def step(
        self, tokens: Tensor, enc: EncoderOutput, state: State
    ) -> tuple[Tensor, State, Tensor]:
        """One decoding step for inference: ``tokens (B,)`` -> log-probabilities ``(B, V)``
        from the main head, the new state, attention weights ``(B, S)``."""
        attentional, state, weights = self.decode(tokens[:, None], enc, state)
        logits = self.head.fc(attentional[:, 0])
        return F.log_softmax(logits.float(), dim=-1), state, weights[:, 0]

    @torch.no_grad()
    def sequence_log_prob(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, tgt_out: Tensor
    ) -> Tensor:
        """Teacher-forced ``log p(tgt_out | src)`` per sentence ``(B,)``, PAD positions
        excluded: the score every decoder is judged by."""
        logits, _ = self(src, src_lengths, tgt_in)
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, tgt_out.clamp(min=0)[..., None])[..., 0]
        return torch.where(tgt_out != PAD, logp, 0.0).sum(1)
