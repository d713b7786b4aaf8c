"""Using a trained seq2seq run: load it, translate, score outputs (Tables 3-5); the decoding
itself is :mod:`labelemb.models.decoding`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..chunked import ChunkedLabelEmbeddingLoss
from ..data.parallel_text import ParallelCorpus
from ..data.vocab import PAD, Vocab
from ..embedding import CompressedLabelEmbedding
from ..loss import LabelEmbeddingLoss
from ..models.decoding import corpus_loss, decode_corpus
from ..models.seq2seq import Seq2Seq, Seq2SeqConfig
from ..runs import rundir
from ..runs.checkpoint import load_checkpoint
from ..runs.progress import log
from ..runs.rundir import BEST
from ..baselines import baseline_criterion
from ..runs.config import LOSS_FLAGS, MODES
from ..text_metrics import bleu, rouge

__all__ = ["SRC_VOCAB", "TGT_VOCAB", "TEST_OUTPUT", "DECODING", "seq2seq_criterion",
           "decode_corpus", "score", "corpus_loss", "load_run", "decoding_settings",
           "translate_lines"]

SRC_VOCAB = "vocab.src.json"
TGT_VOCAB = "vocab.tgt.json"
TEST_OUTPUT = "test.hyp.txt"


def seq2seq_criterion(mode: str, tgt_vocab: Vocab, settings: Any) -> nn.Module:
    """The loss of ``mode`` over the target vocabulary, PAD ignored in every term. ``emb``:
    the seq2seq preset over a compressed embedding; with ``settings.chunked_loss`` the head
    and loss together in chunks of tokens (same loss and gradients, same state-dict keys, a
    fraction of the memory). ``settings``: a seq2seq config or its saved dict."""
    get = settings.get if isinstance(settings, dict) else lambda k, d=None: getattr(settings, k, d)
    if not MODES[mode].label_embedding:
        return baseline_criterion(mode, len(tgt_vocab), smoothing=get("smoothing"),
                                  ols_alpha=get("ols_alpha"), ignore_index=PAD)
    options = {k: get(k) for k in LOSS_FLAGS if get(k) is not None}
    embedding = CompressedLabelEmbedding(len(tgt_vocab), get("label_dim"),
                                         class_names=tgt_vocab.itos)
    if get("chunked_loss", False):
        return ChunkedLabelEmbeddingLoss.from_preset(
            "seq2seq", embedding, chunk_size=get("chunk_size"), ignore_index=PAD, **options)
    return LabelEmbeddingLoss.from_preset("seq2seq", embedding, ignore_index=PAD, **options)


def score(metric: str, hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]
          ) -> dict[str, float]:
    """``{"bleu": ...}``, or ``{"rouge1", "rouge2", "rougeL"}`` for a ROUGE ``metric``."""
    return {"bleu": bleu(hyps, refs)} if metric == "bleu" else rouge(hyps, refs)


def load_run(run_dir: str | Path, which: str = BEST, device: str | torch.device = "cpu"
             ) -> tuple[Seq2Seq, nn.Module, Vocab, Vocab, dict]:
    """Model, criterion (holding the label embedding), vocabularies and config.json of a run.
    The vocabulary files must be the ones the checkpoint was trained with (fingerprints)."""
    run_dir = Path(run_dir)
    config = rundir.read_json(run_dir / rundir.CONFIG)
    if not isinstance(config, dict) or config.get("task") != "seq2seq":
        task = config.get("task") if isinstance(config, dict) else None
        raise ValueError(f"{run_dir} is a {task!r} run, not a seq2seq run")
    if config.get("run_format") != rundir.RUN_FORMAT:
        raise ValueError(f"{run_dir}: a run of an older labelemb (format "
                         f"{config.get('run_format')}); train it again with this version")
    if not (run_dir / which).is_file() and which == BEST:
        raise FileNotFoundError(f"{run_dir}: no {BEST} yet (no evaluation has been made)")
    if not rundir.is_complete(run_dir):
        log(f"warning: {run_dir} is unfinished (no {rundir.RESULT}): using its {which} so far")
    ckpt = load_checkpoint(run_dir / which, map_location=device)
    vocabs = [Vocab.load(run_dir / name, config["vocab_fingerprints"][side])
              for name, side in ((SRC_VOCAB, "src"), (TGT_VOCAB, "tgt"))]
    model = Seq2Seq(Seq2SeqConfig(**config["model_config"]),
                    aux_head=MODES[ckpt["mode"]].label_embedding).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    criterion = seq2seq_criterion(ckpt["mode"], vocabs[1], config["settings"]).to(device)
    criterion.load_state_dict(ckpt["criterion"])
    return model, criterion, vocabs[0], vocabs[1], config


#: the decoding keywords a run records and a caller may override
DECODING = ("beam", "max_len", "length_norm", "min_len", "unk_replace")


def decoding_settings(settings: dict[str, Any], **given: Any) -> dict[str, Any]:
    """:func:`decode_corpus`'s decoding keywords (:data:`DECODING`): each one given (not
    ``None``), else the run's own (``settings`` of its config.json)."""
    return {k: settings[k] if given.get(k) is None else given[k] for k in DECODING}


def translate_lines(run_dir: str | Path, lines: Sequence[str], *, batch_size: int = 64,
                    device: str | torch.device = "cpu", which: str = BEST,
                    **decoding: Any) -> list[str]:
    """Translate/summarise raw lines with a trained run: its tokenisation, and its decoding
    settings unless ``decoding`` overrides them (:data:`DECODING`)."""
    model, _, src_vocab, tgt_vocab, config = load_run(run_dir, which, device)
    s = config["settings"]
    corpus = ParallelCorpus(list(lines), [""] * len(lines), s["tokenize"], "input")
    hyps = decode_corpus(model, corpus, src_vocab, tgt_vocab, batch_size=batch_size,
                         device=device, **decoding_settings(s, **decoding))
    sep = "" if s["tokenize"] == "chars" else " "
    return [sep.join(h) for h in hyps]
