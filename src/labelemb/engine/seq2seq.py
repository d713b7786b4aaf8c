"""Sequence to sequence: the task adapter of :mod:`labelemb.engine.loop` (paper Section 3.3,
Tables 3-5).

:func:`run_training` reads the data, builds the vocabularies once, and trains every
``(mode, seed)`` into ``OUT/<mode>/seed-<k>/`` with evaluation (greedy dev decoding) every
``eval_every`` updates; the loop keeps the best-dev model in ``best.pt``, from which
:meth:`Seq2SeqTask.finish` decodes the test set. Besides the common files a run holds
``vocab.src.json`` / ``vocab.tgt.json`` and ``test.hyp.txt`` (the test outputs).

Mode ``emb`` trains with :class:`~labelemb.CompressedLabelEmbedding` through the ``seq2seq``
preset, padding excluded from every term; ``baseline`` and ``ls`` train the same model
without the second head.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..atomic import atomic_write_text
from ..chunked import ChunkedLabelEmbeddingLoss
from ..data.parallel_text import Batch, ParallelCorpus, batch_indices, collate, encode_corpus
from ..data.seq2seq_data import TASKS, Seq2SeqData, read_data
from ..models.beam import DEFAULT_LENGTH_NORM, DEFAULT_MIN_LEN
from ..models.seq2seq import SIZES
from ..models.seq2seq import Seq2Seq, Seq2SeqConfig
from ..functional import LossOutput
from ..normalizers import Normalizers
from ..runs.checkpoint import load_checkpoint
from ..runs.progress import log
from ..runs.rundir import BEST, EMBEDDING, RunDir
from ..runs.settings import parse_optional, per_key_text, setting
from ..embedding import save_embedding
from .decoding import (SRC_VOCAB, TEST_OUTPUT, TGT_VOCAB, corpus_loss, decode_corpus,
                       decoding_settings, score, seq2seq_criterion)
from ..runs.device import rank_device
from .loop import Part, run_all
from ..runs.config import MODES, RunSettings

__all__ = ["TASK_DEFAULTS", "SUPPORTED_MODES", "TrainConfig", "Seq2SeqTask", "sequence_loss",
           "run_training"]

SUPPORTED_MODES = ("baseline", "emb", "ls")  # ols would keep a V x V table of soft labels

_TRAINING = dict(batch_size=64, lr=1e-3, clip_norm=5.0, eval_every=500, lr_milestones=[])
_IWSLT = dict(
    src_lang="en", tgt_lang="vi", tokenize="words", share_vocab=False, epochs=25, beam=10,
    max_len=100, max_train_len=100, select="bleu", **_TRAINING, **SIZES["iwslt15"],
)
# Weibo posts have at most 140 characters: 150 drops only malformed pairs.
_LCSTS = dict(
    tokenize="chars", share_vocab=True, epochs=10, beam=1, max_len=50, max_train_len=150,
    select="rougeL", **_TRAINING, **SIZES["lcsts"],
)
#: Per-task defaults: the paper's settings (Section 3.3 and the authors' code).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "iwslt15": _IWSLT, "lcsts": _LCSTS, "parallel": dict(_IWSLT, src_lang="src", tgt_lang="tgt"),
}
_per_task = partial(per_key_text, TASK_DEFAULTS)  # a --task-dependent default, for the help


@dataclass(kw_only=True)
class TrainConfig(RunSettings):
    """``labelemb seq2seq train``: the shared settings and the seq2seq task's own. ``None``:
    the task's default (:data:`TASK_DEFAULTS`)."""

    #: the help's defaults of the shared settings that this task's recipe fills in
    SHOWN_DEFAULTS: ClassVar[dict[str, str]] = {
        **{k: _per_task(k) for k in ("epochs", "batch_size", "lr", "clip_norm", "eval_every",
                                     "lr_milestones")}, "out": "runs/seq2seq-<task>"}

    task: str = setting(help="which data: iwslt15, lcsts, or parallel (any folder of "
                        "<prefix>.<lang> files, e.g. from `labelemb data prepare bible-en-es`)",
                        choices=TASKS)
    data_dir: str = setting(help="directory of the data files")
    src_lang: str | None = setting(None, "source file extension",
                                   default_text=_per_task("src_lang"))
    tgt_lang: str | None = setting(None, "target file extension",
                                   default_text=_per_task("tgt_lang"))
    train_prefix: str = setting("train", "parallel: training files <prefix>.<lang>")
    dev_prefix: str = setting("dev", "parallel: dev files")
    test_prefix: str | None = setting("test", "parallel: test files; 'none' for no test set",
                                      parse=parse_optional)
    tokenize: str | None = setting(None, "words or chars", choices=("words", "chars"),
                                   default_text=_per_task("tokenize"))
    lcsts_min_score: int | None = setting(None, "lcsts: keep dev/test pairs with human_label "
                                          ">= N", default_text="all, the paper's counts")
    vocab_size: int = setting(50_000, "vocabulary cap, specials included", at_least=1)
    min_count: int = setting(1, "drop tokens seen fewer times", at_least=1)
    share_vocab: bool | None = setting(None, "one vocabulary for both sides",
                                       default_text=_per_task("share_vocab"))
    max_train_len: int | None = setting(
        None, "drop training pairs with a longer side (tokens; characters for chars); 0 keeps "
        "all", default_text=_per_task("max_train_len"), at_least=0)
    max_train_pairs: int | None = setting(None, "use only the first N training pairs",
                                          default_text="all", at_least=1)
    dev_max_pairs: int | None = setting(None, "score only the first N dev pairs",
                                        default_text="all", at_least=1)
    emb_dim: int | None = setting(None, "word embedding size", default_text=_per_task("emb_dim"),
                                  at_least=1)
    hidden: int | None = setting(None, "LSTM size", default_text=_per_task("hidden"), at_least=1)
    layers: int | None = setting(None, "LSTM layers", default_text=_per_task("layers"),
                                 at_least=1)
    dropout: float | None = setting(None, "dropout", default_text=_per_task("dropout"),
                                    at_least=0, below=1)
    share_embeddings: bool | None = setting(None, "one word embedding for both sides",
                                            default_text=_per_task("share_embeddings"))
    label_dim: int = setting(512, "emb: compressed label embedding size (512 in the authors' "
                             "code)", at_least=1)
    # Head + loss in chunks of tokens (labelemb.chunked): the same loss and gradients, less
    # time and far less memory than the plain head + LabelEmbeddingLoss (docs/PERFORMANCE.md).
    chunked_loss: bool = setting(True, "emb: head + loss in chunks of tokens, no (B*T) x V "
                                 "tensor; --no-chunked-loss: the plain head + loss")
    chunk_size: int | None = setting(None, "with --chunked-loss: target tokens per chunk; fewer "
                                     "use less memory", on_resume=True, at_least=1,
                                     default_text="sized by labelemb.chunked for V")
    beam: int | None = setting(None, "beam for the test set", default_text=_per_task("beam"),
                               at_least=1)
    dev_beam: int = setting(1, "beam for dev evaluations (1: greedy)", at_least=1)
    max_len: int | None = setting(None, "longest output", default_text=_per_task("max_len"),
                                  at_least=1)
    length_norm: float = setting(DEFAULT_LENGTH_NORM, "rank finished beams by score/len**a "
                                 "(0: raw log-probability)", at_least=0)
    min_len: int = setting(DEFAULT_MIN_LEN, "tokens every output has before it may end (0 "
                           "allows empty outputs)", at_least=0)
    unk_replace: bool = setting(False, "copy the most attended source token for each output <unk>")
    select: str | None = setting(None, "dev metric that picks best.pt",
                                 choices=("bleu", "rouge1", "rouge2", "rougeL"),
                                 default_text=_per_task("select"))

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` filled from the task's defaults, checked."""
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        c = self.filled(TASK_DEFAULTS[self.task], SUPPORTED_MODES)
        c.max_train_len = c.max_train_len or None
        c.out = c.out or str(Path("runs") / f"seq2seq-{c.task}")
        if c.min_len > int(c.max_len):
            raise ValueError(f"--min-len {c.min_len} is above --max-len {c.max_len}")
        if c.share_embeddings and not c.share_vocab:
            raise ValueError("--share-embeddings needs --share-vocab")
        return c


# --------------------------------------------------------------------------- the task


def sequence_loss(model: Seq2Seq, criterion: nn.Module, batch: Batch,
                  normalizers: Normalizers | None = None) -> LossOutput:
    """The loss of a collated ``batch``: the ``(B, T, V)`` logits flattened to ``(B*T, V)``,
    or, for the chunked loss, the ``(B*T, H)`` decoder states with the model's head (no
    ``(B*T, V)`` tensor)."""
    target = batch.tgt_out.reshape(-1)
    if isinstance(criterion, ChunkedLabelEmbeddingLoss):
        states = model.features(batch.src, batch.src_lengths, batch.tgt_in)
        return criterion(states.flatten(0, 1), target, model.head, normalizers=normalizers)
    logits, aux_logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    return criterion(logits.flatten(0, 1), None if aux_logits is None
                     else aux_logits.flatten(0, 1), target, normalizers=normalizers)


class Seq2SeqTask:
    """The seq2seq task for :mod:`labelemb.engine.loop`: batches of similar length, the loss
    per target token, greedy dev decoding, the test set decoded from ``best.pt``."""

    name = "seq2seq"
    extra_files = (SRC_VOCAB, TGT_VOCAB, TEST_OUTPUT)
    data_identity = ("dataset", "num_pairs", "vocab_fingerprints")

    def __init__(self, cfg: TrainConfig, data: Seq2SeqData, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        self.select, self.primary_metric = f"dev_{cfg.select}", f"test_{cfg.select}"
        self.higher_is_better = True
        self.src_ids, self.tgt_ids = encode_corpus(data.train, data.src_vocab, data.tgt_vocab)
        # bucket by both sides
        self.lengths = (self.src_ids.lengths() * 1000 + self.tgt_ids.lengths()).tolist()
        self.model_config = Seq2SeqConfig(
            len(data.src_vocab), len(data.tgt_vocab), int(cfg.emb_dim), int(cfg.hidden),
            int(cfg.layers), float(cfg.dropout), bool(cfg.share_embeddings))

    def build(self, mode: str, seed: int) -> tuple[nn.Module, nn.Module]:
        model = Seq2Seq(self.model_config, aux_head=MODES[mode].label_embedding)
        criterion = seq2seq_criterion(mode, self.data.tgt_vocab, self.cfg)
        return model.to(self.device), criterion.to(self.device)

    def epoch_batches(self, epoch: int, g: torch.Generator) -> list[Tensor]:
        # Each epoch's order from (seed, epoch) alone, as since the first release; the data
        # generator is the run's, seeded with its seed.
        epoch_gen = torch.Generator().manual_seed(g.initial_seed() * 100_003 + epoch)
        return [torch.tensor(b) for b in batch_indices(self.lengths, int(self.cfg.batch_size),
                                                       epoch_gen)]

    def batch(self, idx: Tensor, g: torch.Generator) -> Tensor:
        return idx

    def parts(self, batch: Tensor, rank: int, world: int, accumulate: int
              ) -> tuple[list[Any], int]:
        tokens = int(sum(len(self.tgt_ids[i]) + 1 for i in batch.tolist()))  # + EOS each
        return list(batch[rank::world].tensor_split(accumulate)), tokens

    def loss(self, model: nn.Module, criterion: nn.Module, part: Tensor,
             normalizers: Normalizers | None) -> Part:
        idx = part.tolist()
        b = collate([self.src_ids[i] for i in idx], [self.tgt_ids[i] for i in idx],
                    idx).to(self.device)
        return Part(*sequence_loss(model, criterion, b, normalizers))

    def _decode(self, model: nn.Module, corpus: ParallelCorpus, beam: int,
                show_progress: bool = False) -> tuple[list[list[str]], dict[str, float]]:
        cfg, data = self.cfg, self.data
        decoding = {**decoding_settings(asdict(cfg)), "beam": beam}
        hyps = decode_corpus(model, corpus, data.src_vocab, data.tgt_vocab,
                             batch_size=int(cfg.batch_size), device=self.device,
                             show_progress=show_progress, **decoding)
        refs = [corpus.tgt_tokens(i) for i in range(len(corpus))]
        return hyps, score(str(cfg.select), hyps, refs)

    def evaluate(self, model: nn.Module, criterion: nn.Module) -> dict[str, Any]:
        _, scores = self._decode(model, self.data.dev, self.cfg.dev_beam)
        loss = corpus_loss(model, self.data.dev, self.data.src_vocab, self.data.tgt_vocab,
                           int(self.cfg.batch_size), self.device)
        return {**{f"dev_{k}": v for k, v in scores.items()}, "dev_loss": loss}

    def describe(self, mode: str) -> dict[str, Any]:
        data = self.data
        return {
            "model": "lstm-attention", "dataset": self.cfg.task,
            "model_config": self.model_config.to_dict(),
            "num_pairs": {"train": len(data.train), "dev": len(data.dev),
                          "test": len(data.test) if data.test is not None else 0},
            "vocab_sizes": {"src": len(data.src_vocab), "tgt": len(data.tgt_vocab)},
            "vocab_fingerprints": {"src": data.src_vocab.fingerprint,
                                   "tgt": data.tgt_vocab.fingerprint},
        }

    def start(self, run: RunDir) -> None:
        """The vocabularies the run trains with (rebuilt identically on resume: the settings
        and the data are the run's)."""
        if run.writer:
            self.data.src_vocab.save(run / SRC_VOCAB)
            self.data.tgt_vocab.save(run / TGT_VOCAB)

    def finish(self, run: RunDir, model: nn.Module, criterion: nn.Module, mode: str,
               history: list[dict[str, Any]]) -> dict[str, Any]:
        """The best-dev model's embedding and test outputs (the paper's protocol)."""
        best = load_checkpoint(run / BEST, map_location=self.device)
        model.load_state_dict(best["model"])
        criterion.load_state_dict(best["criterion"])
        if MODES[mode].label_embedding:
            save_embedding(criterion.embedding, run / EMBEDDING)
        result: dict[str, Any] = {"dataset": self.cfg.task, "beam": self.cfg.beam,
                                  f"best_dev_{self.cfg.select}": max(
                                      r[self.select] for r in history)}
        if self.data.test is not None:
            t0 = time.perf_counter()
            hyps, scores = self._decode(model, self.data.test, int(self.cfg.beam), True)
            sep = "" if self.cfg.tokenize == "chars" else " "
            atomic_write_text(run / TEST_OUTPUT, "".join(sep.join(h) + "\n" for h in hyps))
            result.update({f"test_{k}": v for k, v in scores.items()},
                          test_pairs=len(self.data.test),
                          test_decode_seconds=time.perf_counter() - t0)
        log(f"[{mode}] test: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()
                                           if k.startswith("test_") and "seconds" not in k))
        return result


def run_training(config: "TrainConfig | argparse.Namespace | dict") -> list[Path]:
    """Train every ``(mode, seed)`` of ``config`` into ``OUT/<mode>/seed-<k>/``; returns the
    run folders. Every setting, the device and the data are checked before the first run
    folder is made; under ``torchrun`` the ranks train shards of each batch."""
    cfg = TrainConfig.from_any(config).resolved()
    with rank_device(cfg.device, cfg.threads) as device:
        data = read_data(cfg)
        log(f"seq2seq {cfg.task}: {len(data.train)} train pairs, {len(data.dev)} dev, vocab "
            f"{len(data.src_vocab)}/{len(data.tgt_vocab)}, device {device}; out {cfg.out}")
        return run_all(Seq2SeqTask(cfg, data, device))
