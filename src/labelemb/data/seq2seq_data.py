"""The seq2seq tasks' data: which reader each task uses, the training filter, the vocabularies.

``cfg``: a resolved ``labelemb seq2seq train`` config
(:class:`labelemb.engine.seq2seq.TrainConfig`, passed in: this layer never imports the engine);
its data fields name the files, the filter and the vocabulary sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .parallel_text import ParallelCorpus, load_parallel_dir
from .vocab import Vocab

__all__ = ["TASKS", "load_task", "build_vocabs", "Seq2SeqData", "read_data"]

#: the seq2seq tasks: the paper's two, and any folder of ``<prefix>.<lang>`` files
TASKS = ("iwslt15", "lcsts", "parallel")


def load_task(cfg: Any) -> dict[str, ParallelCorpus | None]:
    """``{"train", "dev", "test"}`` corpora of ``cfg`` (test may be None)."""
    if cfg.task == "iwslt15":
        from .iwslt import load_iwslt15

        return load_iwslt15(cfg.data_dir, str(cfg.src_lang), str(cfg.tgt_lang))
    if cfg.task == "lcsts":
        from .lcsts import load_lcsts

        return load_lcsts(cfg.data_dir, cfg.lcsts_min_score)
    if cfg.src_lang == "src" and not (Path(cfg.data_dir) / f"{cfg.train_prefix}.src").is_file():
        raise FileNotFoundError(f"--data-dir {cfg.data_dir}: no {cfg.train_prefix}.src; name "
                                "the files' extensions with --src-lang and --tgt-lang (e.g. "
                                "en and es for `labelemb data prepare bible-en-es`)")
    return load_parallel_dir(
        cfg.data_dir, str(cfg.src_lang), str(cfg.tgt_lang),
        {"train": cfg.train_prefix, "dev": cfg.dev_prefix, "test": cfg.test_prefix},
        "chars" if cfg.tokenize == "chars" else "words")


def build_vocabs(train: ParallelCorpus, cfg: Any) -> tuple[Vocab, Vocab]:
    """The source and target vocabularies of ``train`` (one shared with ``share_vocab``)."""
    if cfg.share_vocab:
        v = Vocab.build(train.iter_tokens("both"), cfg.vocab_size, cfg.min_count)
        return v, v
    return (Vocab.build(train.iter_tokens("src"), cfg.vocab_size, cfg.min_count),
            Vocab.build(train.iter_tokens("tgt"), cfg.vocab_size, cfg.min_count))


@dataclass
class Seq2SeqData:
    """A study's corpora and vocabularies, read and checked before anything is written."""

    train: ParallelCorpus
    dev: ParallelCorpus
    test: ParallelCorpus | None
    src_vocab: Vocab
    tgt_vocab: Vocab


def read_data(cfg: Any) -> Seq2SeqData:
    """The task's corpora (training pairs filtered by ``max_train_len`` and cut to
    ``max_train_pairs``, dev to ``dev_max_pairs``) and the vocabularies of the training side."""
    splits = load_task(cfg)
    train, dev = splits["train"], splits["dev"]
    assert train is not None and dev is not None
    train = train.filter(cfg.max_train_len).head(cfg.max_train_pairs)
    if len(train) == 0:
        raise ValueError(f"no training pairs left after filtering (--max-train-len "
                         f"{cfg.max_train_len})")
    return Seq2SeqData(train, dev.head(cfg.dev_max_pairs), splits.get("test"),
                       *build_vocabs(train, cfg))
