"""Text to Trainer inputs without downloading anything: a WordPiece tokenizer trained on your
own training texts with the ``tokenizers`` library, and encoded examples for the Trainer."""

from __future__ import annotations

from typing import Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordPieceTrainer
from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "train_tokenizer", "encode"]

#: BERT's special tokens, ``[PAD]`` first so that its id is 0 (BertConfig's pad_token_id)
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_tokenizer(texts: Sequence[str], vocab_size: int = 8000,
                    model_max_length: int | None = None) -> PreTrainedTokenizerFast:
    """A lower-casing BERT-style WordPiece tokenizer learned from ``texts``. It adds
    ``[CLS] ... [SEP]`` around each text, so the first token's features are a ``[CLS]``
    summary, as BERT's classifiers use.

    ``model_max_length``: the longest input the model takes (:func:`labelemb.hf.max_tokens`
    of its encoder, e.g. a BERT's ``max_position_embeddings``); saved with the tokenizer, it is
    where ``truncation=True`` (in a call or a ``pipeline``) cuts. ``None``: no limit known.

    Not reproducible across processes: ``tokenizers`` breaks ties between equally frequent
    pieces in hash-map order, so two processes can build different vocabularies from the same
    texts. Train once and ``save_pretrained`` it for every run that must share it.
    """
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                               show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    limit = {} if model_max_length is None else {"model_max_length": model_max_length}
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   **limit)


def encode(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str], labels: Sequence[int],
           max_length: int) -> list[dict]:
    """One ``{"input_ids", "attention_mask", "labels"}`` dict per text, truncated to
    ``max_length`` tokens and not padded (``DataCollatorWithPadding`` pads each batch)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [{"input_ids": ids, "attention_mask": mask, "labels": int(y)}
            for ids, mask, y in zip(enc["input_ids"], enc["attention_mask"], labels)]
