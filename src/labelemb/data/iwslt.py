"""IWSLT'15 English-Vietnamese (the Stanford NMT release used by the paper, Table 4).

Layout of ``data_dir`` (files as published at https://nlp.stanford.edu/projects/nmt/)::

    train.en  train.vi      133,317 pairs
    tst2012.en tst2012.vi   1,553 pairs: development set
    tst2013.en tst2013.vi   1,268 pairs: test set

The text is already tokenised (Moses, with ``&apos;``-style escapes): tokens are split on
whitespace and BLEU is computed on the tokens as they are (sacrebleu ``tokenize="none"``).
"""

from __future__ import annotations

import os

from .parallel_text import ParallelCorpus, load_parallel_dir

__all__ = ["IWSLT15_FILES", "load_iwslt15"]

BASE_URL = "https://nlp.stanford.edu/projects/nmt/data/iwslt15.en-vi/"
#: split -> file prefix
IWSLT15_FILES = {"train": "train", "dev": "tst2012", "test": "tst2013"}


def load_iwslt15(
    data_dir: str | os.PathLike, src_lang: str = "en", tgt_lang: str = "vi"
) -> dict[str, ParallelCorpus | None]:
    """``{"train", "dev", "test"}`` corpora, word level; ``src_lang``/``tgt_lang`` may be swapped
    to translate vi -> en."""
    for lang in (src_lang, tgt_lang):
        if lang not in ("en", "vi"):
            raise ValueError(f"IWSLT15 languages are 'en' and 'vi', got {lang!r}")
    if src_lang == tgt_lang:
        raise ValueError("src_lang and tgt_lang must differ")
    return load_parallel_dir(data_dir, src_lang, tgt_lang, dict(IWSLT15_FILES), "words")
