"""A seq2seq model over a whole corpus: decoded outputs (greedy or beam) and the teacher-forced
cross-entropy, batched by length."""

from __future__ import annotations

import torch

from ..baselines import LabelSmoothingLoss
from ..data.parallel_text import ParallelCorpus, batch_indices, collate, encode_corpus
from ..data.vocab import PAD, UNK, Vocab
from ..runs.progress import log, progress
from .beam import (DEFAULT_LENGTH_NORM, DEFAULT_MIN_LEN, beam_search, empty_outputs_warning,
                   greedy_decode)
from .seq2seq import Seq2Seq

__all__ = ["decode_corpus", "corpus_loss"]


@torch.no_grad()
def decode_corpus(
    model: Seq2Seq, corpus: ParallelCorpus, src_vocab: Vocab, tgt_vocab: Vocab, *,
    beam: int = 1, max_len: int = 100, length_norm: float = DEFAULT_LENGTH_NORM,
    min_len: int = DEFAULT_MIN_LEN, unk_replace: bool = False,
    batch_size: int = 64, device: str | torch.device = "cpu", show_progress: bool = False,
) -> list[list[str]]:
    """Output tokens for every source sentence of ``corpus``, in corpus order; a warning line
    on stderr when many are empty (:func:`~labelemb.models.beam.empty_outputs_warning`).

    With ``unk_replace`` an output ``<unk>`` becomes the source token that had the highest
    attention weight when it was written (Luong et al., 2015).
    """
    model.eval()
    src_tokens = [corpus.src_tokens(i) for i in range(len(corpus))]
    order = sorted(range(len(corpus)), key=lambda i: len(src_tokens[i]))  # less padding
    out: list[list[str]] = [[] for _ in range(len(corpus))]
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in progress(chunks, desc="decode") if show_progress else chunks:
        b = collate([src_vocab.encode(src_tokens[i]) for i in idx], [[] for _ in idx], idx)
        src, lengths = b.src.to(device), b.src_lengths
        dec = (greedy_decode(model, src, lengths, max_len=max_len, min_len=min_len)
               if beam == 1 else beam_search(model, src, lengths, beam=beam, max_len=max_len,
                                             length_norm=length_norm, min_len=min_len))
        for row, i in enumerate(idx):
            out[i] = [src_tokens[i][pos] if tok == UNK and unk_replace
                      and pos < len(src_tokens[i]) else tgt_vocab.itos[tok]
                      for tok, pos in zip(dec.tokens[row], dec.attention[row])]
    warning = empty_outputs_warning(out)
    if warning:
        log(warning)
    return out



@torch.no_grad()
def corpus_loss(model: Seq2Seq, corpus: ParallelCorpus, src_vocab: Vocab, tgt_vocab: Vocab,
                batch_size: int, device: str | torch.device) -> float:
    """Teacher-forced cross-entropy of the main head per real target token."""
    model.eval()
    src, tgt = encode_corpus(corpus, src_vocab, tgt_vocab)
    ce = LabelSmoothingLoss(0.0, ignore_index=PAD, reduction="sum", validate=False)
    total, tokens = 0.0, 0
    for idx in batch_indices(src.lengths().tolist(), batch_size):
        b = collate([src[i] for i in idx], [tgt[i] for i in idx], idx).to(device)
        logits, _ = model(b.src, b.src_lengths, b.tgt_in)
        total += float(ce(logits.reshape(-1, logits.shape[-1]), None, b.tgt_out.reshape(-1)).loss)
        tokens += b.num_tokens
    return total / max(tokens, 1)

