"""Text to language-model inputs without downloading anything: a byte-level BPE tokenizer
trained on your own training split (GPT-2's kind: any text encodes, no unknown token)."""

from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

__all__ = ["EOS", "PAD", "train_bpe_tokenizer", "encode_lines"]

#: the end-of-text token (also the start of generation) and the padding token: ids 0 and 1
EOS, PAD = "<|endoftext|>", "<pad>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 8000,
                        model_max_length: int | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of ``vocab_size`` tokens learned from ``texts``; give it the
    model's positions as ``model_max_length`` so that ``truncation=True`` (and a pipeline) cuts
    there.

    Like the WordPiece one of :mod:`labelemb.hf.text` it is not reproducible across processes
    (ties between equally frequent pairs are broken in hash-map order): train once and
    ``save_pretrained`` it with the model.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS,
                                   pad_token=PAD, **extra)


def encode_lines(tokenizer: PreTrainedTokenizerFast, lines: Sequence[str], max_length: int
                 ) -> list[dict]:
    """One ``{"input_ids"}`` example per line: its tokens then the end-of-text token, at most
    ``max_length`` in all (``DataCollatorForLanguageModeling(mlm=False)`` pads and labels)."""
    ids = tokenizer(list(lines), truncation=True, max_length=max_length - 1)["input_ids"]
    return [{"input_ids": row + [tokenizer.eos_token_id]} for row in ids]
