"""Sequence-to-sequence training, decoding and scoring (paper Section 3.3, Tables 3-5).

:func:`train` reads the data, builds the vocabularies, trains with evaluation every
``eval_every`` updates, keeps the best-dev model in ``best.pt`` and scores the test set from it.
The run directory follows :mod:`labelemb.runs.rundir`; besides the common files it holds
``vocab.src.json`` / ``vocab.tgt.json``, ``best.pt`` and ``test.hyp.txt`` (test outputs).

Mode ``emb`` trains with :class:`~labelemb.CompressedLabelEmbedding` through
``LabelEmbeddingLoss.from_preset("seq2seq", ..., ignore_index=PAD)``: the authors' settings
with padding excluded from every term. Mode ``baseline`` trains with cross-entropy only.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..chunked import ChunkedLabelEmbeddingLoss
from .. import __version__
from ..baselines import LabelSmoothingLoss
from ..data.parallel_text import (
    ParallelCorpus, batch_indices, collate, encode_corpus, load_parallel_dir,
)
from ..data.vocab import PAD, UNK, Vocab
from ..embedding import CompressedLabelEmbedding, save_embedding
from ..functional import PRESETS as LOSS_PRESETS
from ..loss import LabelEmbeddingLoss
from ..models.beam import beam_search, greedy_decode
from ..models.seq2seq import PRESETS as MODEL_PRESETS
from ..models.seq2seq import Seq2Seq, Seq2SeqConfig
from ..atomic import atomic_write_text
from ..runs.checkpoint import (load_checkpoint, restore_training_state, rng_state, save_checkpoint,
                         set_rng_state)
from ..runs.progress import log, progress
from ..runs.ranks import (barrier, check_ranks_agree, is_main_process, rank_and_world,
                          sum_gradients)
from ..runs.rundir import (CHECKPOINT, CONFIG, EMBEDDING, METRICS, RESULT, RUN_FORMAT,
                           MetricsWriter, RunDir, is_complete, read_json, read_metrics, write_json)
from ..runs.seed import seed_everything
from ..runs.settings import check_ranges, may_change_on_resume, setting
from .device import device_of_rank, join_torchrun
from .optim import adam
from .text_metrics import bleu, rouge

__all__ = [
    "TrainConfig", "MODES", "Mode", "TASK_DEFAULTS", "load_task", "build_vocabs", "build_model", "build_criterion",
    "train", "decode_corpus", "decoding_settings", "score", "load_run", "BEST", "SRC_VOCAB",
    "TGT_VOCAB", "TEST_OUTPUT", "backward_batch",
]

BEST = "best.pt"
SRC_VOCAB = "vocab.src.json"
TGT_VOCAB = "vocab.tgt.json"
TEST_OUTPUT = "test.hyp.txt"
TASKS = ("iwslt15", "lcsts", "parallel")


@dataclass(frozen=True)
class Mode:
    """What one seq2seq mode needs; every difference between modes is a field here."""

    label_embedding: bool  # LabelEmbeddingLoss over a compressed embedding, aux head, saved
    help: str


MODES: dict[str, Mode] = {
    "emb": Mode(True, "label embedding loss"),
    "baseline": Mode(False, "cross-entropy only"),
}


def _optional_prefix(text: str) -> str | None:
    """``--test-prefix none`` (or empty): the task has no test set."""
    return None if text.strip().lower() in ("", "none") else text


_IWSLT = dict(
    src_lang="en", tgt_lang="vi", tokenize="words", share_vocab=False, epochs=25, beam=10,
    max_len=100, max_train_len=100, select="bleu", **MODEL_PRESETS["iwslt15"],
)
# Weibo posts have at most 140 characters: 150 drops only malformed pairs.
_LCSTS = dict(
    tokenize="chars", share_vocab=True, epochs=10, beam=1, max_len=50, max_train_len=150,
    select="rougeL", **MODEL_PRESETS["lcsts"],
)
#: Per-task defaults: the paper's settings (Section 3.3 and the authors' code).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "iwslt15": _IWSLT,
    "lcsts": _LCSTS,
    "parallel": dict(_IWSLT, src_lang="src", tgt_lang="tgt"),
}


def _per_task(key: str) -> str:
    """The help's default of a setting that depends on --task, read from TASK_DEFAULTS (so
    never typed twice): "iwslt15, parallel: 512; lcsts: 400"."""
    by_value: dict[str, list[str]] = {}
    for task in TASKS:
        if key in TASK_DEFAULTS[task]:
            value = TASK_DEFAULTS[task][key]
            text = ("on" if value else "off") if isinstance(value, bool) else str(value)
            by_value.setdefault(text, []).append(task)
    return "; ".join(f"{', '.join(tasks)}: {text}" for text, tasks in by_value.items())


@dataclass
class TrainConfig:
    """Every setting of a seq2seq run, declared once: ``labelemb seq2seq train``'s flags are
    generated from these fields. ``None`` means "the task's default" (TASK_DEFAULTS)."""

    task: str = setting(help="which data", choices=TASKS)
    data_dir: str = setting(help="directory of the data files")
    out: str | None = setting(None, "run directory", on_resume=True,
                              default_text="runs/seq2seq-TASK-MODE-seedN")
    mode: str = setting("emb", "; ".join(f"{k}: {m.help}" for k, m in MODES.items()),
                        choices=tuple(MODES))
    seed: int = setting(1, "random seed")
    resume: bool = setting(False, "continue the run in --out (settings must be unchanged)",
                           on_resume=True)
    overwrite: bool = setting(False, "delete the run in --out and start again", on_resume=True)
    threads: int | None = setting(None, "torch CPU threads", on_resume=True,
                                  default_text="torch's choice", at_least=1)
    # data
    src_lang: str | None = setting(None, "source file extension",
                                   default_text=_per_task("src_lang"))
    tgt_lang: str | None = setting(None, "target file extension",
                                   default_text=_per_task("tgt_lang"))
    train_prefix: str = setting("train", "parallel: training files <prefix>.<lang>")
    dev_prefix: str = setting("dev", "parallel: dev files")
    test_prefix: str | None = setting("test", "parallel: test files; 'none' for no test set",
                                      parse=_optional_prefix)
    tokenize: str | None = setting(None, "words or chars", choices=("words", "chars"),
                                   default_text=_per_task("tokenize"))
    lcsts_min_score: int | None = setting(
        None, "lcsts: keep dev/test pairs with human_label >= N",
        default_text="all, the paper's counts")
    vocab_size: int = setting(50_000, "vocabulary cap, specials included", at_least=1)
    min_count: int = setting(1, "drop tokens seen fewer times", at_least=1)
    share_vocab: bool | None = setting(None, "one vocabulary for both sides",
                                       default_text=_per_task("share_vocab"))
    max_train_len: int | None = setting(
        None, "drop training pairs with a longer side (tokens; characters for chars); 0 keeps "
        "all", default_text=_per_task("max_train_len"), at_least=0)
    max_train_pairs: int | None = setting(None, "use only the first N training pairs",
                                          at_least=1)
    dev_max_pairs: int | None = setting(None, "score only the first N dev pairs", at_least=1)
    # model
    emb_dim: int | None = setting(None, "word embedding size", default_text=_per_task("emb_dim"),
                                  at_least=1)
    hidden: int | None = setting(None, "LSTM size", default_text=_per_task("hidden"), at_least=1)
    layers: int | None = setting(None, "LSTM layers", default_text=_per_task("layers"),
                                 at_least=1)
    dropout: float | None = setting(None, "dropout", default_text=_per_task("dropout"),
                                    at_least=0, below=1)
    share_embeddings: bool | None = setting(None, "one word embedding for both sides",
                                            default_text=_per_task("share_embeddings"))
    # 512 in the authors' code
    label_dim: int = setting(512, "compressed label embedding size", at_least=1)
    # training
    batch_size: int = setting(64, "sentence pairs per update", at_least=1)
    lr: float = setting(1e-3, "Adam learning rate", above=0)
    clip_norm: float = setting(5.0, "gradient norm clip", above=0)
    epochs: int | None = setting(None, "training epochs", default_text=_per_task("epochs"),
                                 on_resume=True, at_least=1)
    max_steps: int | None = setting(None, "stop after N updates", on_resume=True, at_least=1)
    warmup_steps: int = setting(LOSS_PRESETS["seq2seq"].warmup_steps,
                                "updates before the soft-target term starts", at_least=0)
    # head + loss in chunks of tokens (labelemb.chunked): no (B*T) x V tensor is held. The
    # default for emb: the same loss and gradients, less time and far less memory than the
    # plain head + LabelEmbeddingLoss (docs/PERFORMANCE.md); the baseline has no chunked form.
    chunked_loss: bool = setting(True, "emb: head + loss in chunks of tokens, no (B*T) x V "
                                 "tensor (same loss, less time and far less memory); "
                                 "--no-chunked-loss: the plain head + LabelEmbeddingLoss")
    # Rows per chunk: the chunked loss's memory knob (the loss and gradients do not change).
    chunk_size: int | None = setting(None, "with --chunked-loss: target tokens per chunk; fewer "
                                     "use less memory", on_resume=True, at_least=1,
                                     default_text="sized by labelemb.chunked for V")
    eval_every: int = setting(500, "updates between dev evaluations", on_resume=True,
                              at_least=1)
    # decoding
    beam: int | None = setting(None, "beam for the test set", default_text=_per_task("beam"),
                               at_least=1)
    dev_beam: int = setting(1, "beam for dev evaluations (1: greedy)", at_least=1)
    max_len: int | None = setting(None, "longest output", default_text=_per_task("max_len"),
                                  at_least=1)
    length_norm: float = setting(0.0, "rank finished beams by score/len**a")
    unk_replace: bool = setting(False, "copy the most attended source token for each output <unk>")
    select: str | None = setting(None, "dev metric that picks best.pt",
                                 choices=("bleu", "rouge1", "rouge2", "rougeL"),
                                 default_text=_per_task("select"))
    device: str | None = setting(None, "cpu or cuda", default_text="cuda when available",
                                 on_resume=True)

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` default filled from the task's preset, checked."""
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {TASKS}, got {self.task!r}")
        if self.mode not in MODES:
            raise ValueError(f"--mode must be one of {tuple(MODES)}, got {self.mode!r}")
        d = asdict(self)
        for key, value in TASK_DEFAULTS[self.task].items():
            if d.get(key) is None:
                d[key] = value
        if d["device"] is None:
            d["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if d["max_train_len"] == 0:
            d["max_train_len"] = None
        if not MODES[self.mode].label_embedding:
            d["chunked_loss"] = False  # cross-entropy is computed plainly
        if d["out"] is None:
            d["out"] = str(Path("runs") / f"seq2seq-{self.task}-{self.mode}-seed{self.seed}")
        cfg = TrainConfig(**d)
        _check_config(cfg)
        return cfg


def _check_config(cfg: TrainConfig) -> None:
    """Refuse settings no run can use, naming the flag (before any file is written)."""
    check_ranges(cfg)  # every number against the range its field declares
    if cfg.tokenize not in ("words", "chars"):
        raise ValueError(f"--tokenize must be 'words' or 'chars', got {cfg.tokenize!r}")
    if cfg.select not in ("bleu", "rouge1", "rouge2", "rougeL"):
        raise ValueError(f"--select must be bleu, rouge1, rouge2 or rougeL, got {cfg.select!r}")
    if cfg.share_embeddings and not cfg.share_vocab:
        raise ValueError("--share-embeddings needs --share-vocab")


# --------------------------------------------------------------------------- data


def load_task(cfg: TrainConfig) -> dict[str, ParallelCorpus | None]:
    """``{"train", "dev", "test"}`` corpora of a resolved config (test may be None)."""
    if cfg.task == "iwslt15":
        from ..data.iwslt import load_iwslt15

        splits = load_iwslt15(cfg.data_dir, cfg.src_lang, cfg.tgt_lang)
    elif cfg.task == "lcsts":
        from ..data.lcsts import load_lcsts

        splits = load_lcsts(cfg.data_dir, cfg.lcsts_min_score)
    else:
        splits = load_parallel_dir(
            cfg.data_dir, cfg.src_lang, cfg.tgt_lang,
            {"train": cfg.train_prefix, "dev": cfg.dev_prefix, "test": cfg.test_prefix},
            cfg.tokenize,  # type: ignore[arg-type]
        )
    return splits


def build_vocabs(train: ParallelCorpus, cfg: TrainConfig) -> tuple[Vocab, Vocab]:
    if cfg.share_vocab:
        v = Vocab.build(train.iter_tokens("both"), cfg.vocab_size, cfg.min_count)
        return v, v
    return (Vocab.build(train.iter_tokens("src"), cfg.vocab_size, cfg.min_count),
            Vocab.build(train.iter_tokens("tgt"), cfg.vocab_size, cfg.min_count))


# --------------------------------------------------------------------------- model, loss


def model_config(cfg: TrainConfig, src_vocab: Vocab, tgt_vocab: Vocab) -> Seq2SeqConfig:
    return Seq2SeqConfig(
        len(src_vocab), len(tgt_vocab), cfg.emb_dim, cfg.hidden, cfg.layers, cfg.dropout,  # type: ignore[arg-type]
        bool(cfg.share_embeddings),
    )


def build_model(mcfg: Seq2SeqConfig, mode: str) -> Seq2Seq:
    """The model of ``mode``: with the auxiliary head where the mode has a label embedding."""
    return Seq2Seq(mcfg, aux_head=MODES[mode].label_embedding)


def build_criterion(mode: str, tgt_vocab: Vocab, label_dim: int, warmup_steps: int,
                    chunked: bool = False, chunk_size: int | None = None) -> nn.Module:
    """``emb``: the seq2seq preset over a compressed label embedding, PAD ignored in every
    term; ``chunked`` computes head and loss together in chunks of ``chunk_size`` tokens (same
    loss and gradients, same state-dict keys, a fraction of the memory). ``baseline``:
    cross-entropy, PAD ignored."""
    if not MODES[mode].label_embedding:
        return LabelSmoothingLoss(0.0, ignore_index=PAD)
    embedding = CompressedLabelEmbedding(len(tgt_vocab), label_dim, class_names=tgt_vocab.itos)
    if chunked:
        return ChunkedLabelEmbeddingLoss.from_preset(
            "seq2seq", embedding, chunk_size=chunk_size, ignore_index=PAD,
            warmup_steps=warmup_steps)
    return LabelEmbeddingLoss.from_preset("seq2seq", embedding, ignore_index=PAD,
                                          warmup_steps=warmup_steps)


def sequence_loss(model: Seq2Seq, criterion: nn.Module, batch,
                  process_group: dist.ProcessGroup | None = None) -> tuple[torch.Tensor, dict]:
    """Loss of one batch: ``(B, T, V)`` logits flattened to ``(B*T, V)``, or, with a chunked
    criterion, the ``(B*T, H)`` states and the model's head. With ``process_group`` the batch
    is this rank's shard and the loss its share (the counts summed over the ranks)."""
    if isinstance(criterion, ChunkedLabelEmbeddingLoss):
        states = model.features(batch.src, batch.src_lengths, batch.tgt_in)
        return criterion(states.flatten(0, 1), batch.tgt_out.reshape(-1), model.head,
                         process_group=process_group)
    logits, aux_logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    vocab = logits.shape[-1]
    return criterion(
        logits.reshape(-1, vocab), None if aux_logits is None else aux_logits.reshape(-1, vocab),
        batch.tgt_out.reshape(-1), process_group=process_group,
    )


# --------------------------------------------------------------------------- decoding


@torch.no_grad()
def decode_corpus(
    model: Seq2Seq, corpus: ParallelCorpus, src_vocab: Vocab, tgt_vocab: Vocab, *,
    beam: int = 1, max_len: int = 100, length_norm: float = 0.0, unk_replace: bool = False,
    batch_size: int = 64, device: str | torch.device = "cpu", show_progress: bool = False,
) -> list[list[str]]:
    """Output tokens for every source sentence of ``corpus``, in corpus order.

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
        if beam == 1:
            dec = greedy_decode(model, src, lengths, max_len=max_len)
        else:
            dec = beam_search(model, src, lengths, beam=beam, max_len=max_len,
                              length_norm=length_norm)
        for row, i in enumerate(idx):
            words = []
            for tok, pos in zip(dec.tokens[row], dec.attention[row]):
                if tok == UNK and unk_replace and pos < len(src_tokens[i]):
                    words.append(src_tokens[i][pos])
                else:
                    words.append(tgt_vocab.itos[tok])
            out[i] = words
    return out


def score(task_metric: str, hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """``{"bleu": ...}`` or ``{"rouge1", "rouge2", "rougeL"}`` depending on the selection metric."""
    if task_metric == "bleu":
        return {"bleu": bleu(hyps, refs)}
    return rouge(hyps, refs)


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


# --------------------------------------------------------------------------- training


def backward_batch(model: Seq2Seq, criterion: nn.Module, src_ids: Any, tgt_ids: Any,
                   idx: list[int], device: torch.device) -> tuple[torch.Tensor, dict, int, Any]:
    """The gradients of the batch of pairs ``idx``, summed into ``.grad``.

    Under torchrun each rank takes the shard ``idx[rank::world]``: its loss is its share of the
    batch's (the token counts summed over the ranks inside the loss, one ``all_reduce``) and
    the ranks' gradients are summed, so every rank holds the one-process gradient on ``idx``.

    Returns this rank's loss and term shares, the batch's target tokens and this rank's batch.
    """
    rank, world = rank_and_world()
    batch = collate([src_ids[i] for i in idx[rank::world]],
                    [tgt_ids[i] for i in idx[rank::world]], idx[rank::world]).to(device)
    ntok = batch.num_tokens if world == 1 else collate(
        [src_ids[i] for i in idx], [tgt_ids[i] for i in idx], idx).num_tokens
    loss, terms = sequence_loss(model, criterion, batch, dist.group.WORLD if world > 1 else None)
    loss.backward()
    sum_gradients([*model.parameters(), *criterion.parameters()])
    return loss, terms, ntok, batch


@dataclass
class _Data:
    """A run's corpora and vocabularies, all read and checked before anything is written."""

    train: ParallelCorpus
    dev: ParallelCorpus
    test: ParallelCorpus | None
    src_vocab: Vocab
    tgt_vocab: Vocab


def _read_data(cfg: TrainConfig, run: RunDir) -> _Data:
    """The task's splits, filtered, and the vocabularies: built from the training set, or
    those of the resumed run (checked against its checkpoint's fingerprints)."""
    splits = load_task(cfg)
    train_set = splits["train"].filter(cfg.max_train_len).head(cfg.max_train_pairs)  # type: ignore[union-attr]
    if len(train_set) == 0:
        raise ValueError(f"no training pairs left after filtering (--max-train-len "
                         f"{cfg.max_train_len})")
    if run.checkpoint is not None:
        prints = run.checkpoint["vocab_fingerprints"]
        vocabs = (Vocab.load(run / SRC_VOCAB, prints["src"]),
                  Vocab.load(run / TGT_VOCAB, prints["tgt"]))
    else:
        vocabs = build_vocabs(train_set, cfg)
    return _Data(train_set, splits["dev"].head(cfg.dev_max_pairs), splits.get("test"),  # type: ignore[union-attr]
                 *vocabs)


def _finished(cfg: TrainConfig, checkpoint: dict[str, Any]) -> bool:
    """Whether a checkpoint's position is at the end that ``cfg`` asks for."""
    return (checkpoint["epoch"] > cfg.epochs  # type: ignore[operator]
            or (cfg.max_steps is not None and checkpoint["step"] >= cfg.max_steps))


class _Trainer:
    """One run's training state (model, optimiser, position in the data, running sums) and the
    steps that advance it: a batch, an evaluation with its checkpoint, the epoch loop."""

    def __init__(self, cfg: TrainConfig, data: _Data, run: RunDir, device: torch.device) -> None:
        self.cfg, self.data, self.run, self.device = cfg, data, run, device
        seed_everything(cfg.seed)
        self.mcfg = model_config(cfg, data.src_vocab, data.tgt_vocab)
        self.model = build_model(self.mcfg, cfg.mode).to(device)
        self.criterion = build_criterion(cfg.mode, data.tgt_vocab, cfg.label_dim,
                                         cfg.warmup_steps, cfg.chunked_loss,
                                         cfg.chunk_size).to(device)
        self.params = [p for p in list(self.model.parameters()) + list(self.criterion.parameters())
                       if p.requires_grad]
        self.optimizer = adam(self.params, cfg.lr)
        self.src_ids, self.tgt_ids = encode_corpus(data.train, data.src_vocab, data.tgt_vocab)
        # bucket by both sides
        self.lengths = (self.src_ids.lengths() * 1000 + self.tgt_ids.lengths()).tolist()
        self.step, self.epoch, self.batch_in_epoch, self.n_evals, self.seconds = 0, 1, 0, 0, 0.0
        self.best: dict[str, Any] = {"score": -math.inf, "step": 0}
        self.writer = MetricsWriter(run / METRICS)
        self.fingerprints = {"src": data.src_vocab.fingerprint, "tgt": data.tgt_vocab.fingerprint}
        self._reset_sums()

    def _reset_sums(self) -> None:
        """Start the running sums of the next evaluation interval."""
        self.acc: dict[str, Any] = {"loss": 0.0, "tokens": 0, "terms": {}, "seconds": 0.0}

    def config_json(self) -> dict[str, Any]:
        """``config.json`` of the run."""
        cfg, data = self.cfg, self.data
        return {
            "run_format": RUN_FORMAT, "labelemb_version": __version__, "task": "seq2seq",
            "mode": cfg.mode, "model": "lstm-attention", "dataset": cfg.task, "seed": cfg.seed,
            "model_config": self.mcfg.to_dict(), "settings": asdict(cfg),
            "num_pairs": {"train": len(data.train), "dev": len(data.dev),
                          "test": len(data.test) if data.test is not None else 0},
            "vocab_sizes": {"src": len(data.src_vocab), "tgt": len(data.tgt_vocab)},
        }

    def start(self) -> None:
        """Write the run's files (fresh) or continue from its checkpoint (resumed)."""
        self.run.start(self.config_json())
        ckpt = self.run.checkpoint
        if ckpt is None:
            if self.run.writer:
                self.data.src_vocab.save(self.run / SRC_VOCAB)
                self.data.tgt_vocab.save(self.run / TGT_VOCAB)
                self.writer.truncate_after(0)
            return
        restore_training_state(ckpt, self.run / CHECKPOINT, self.model, self.criterion,
                               self.optimizer)
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        self.n_evals, self.best, self.seconds = ckpt["n_evals"], ckpt["best"], ckpt["seconds"]
        set_rng_state(ckpt["rng"])
        if not self.run.writer:
            return
        self.writer.truncate_after(self.n_evals)  # records logged after this checkpoint are redone
        if len(read_metrics(self.writer.path)) < self.n_evals and ckpt.get("last_record"):
            self.writer.write(json.loads(ckpt["last_record"]))  # killed between checkpoint and log
        log(f"resumed {self.run.path} at update {self.step} (epoch {self.epoch}, batch "
            f"{self.batch_in_epoch})")

    def train_batch(self, idx: list[int]) -> None:
        """One update on the pairs ``idx``; adds its loss and terms to the running sums."""
        t0 = time.perf_counter()
        if rank_and_world()[1] > 1:  # dropout masks differ per rank; a resume draws the same
            torch.manual_seed((self.cfg.seed * 1_000_003 + self.step) * 1_009
                              + rank_and_world()[0])
        self.optimizer.zero_grad(set_to_none=True)
        loss, terms, ntok, batch = backward_batch(self.model, self.criterion, self.src_ids,
                                                  self.tgt_ids, idx, self.device)
        nn.utils.clip_grad_norm_(self.params, self.cfg.clip_norm)
        self.optimizer.step()
        self.step += 1
        acc = self.acc  # this rank's shares times the batch's tokens: summed over the ranks
        acc["loss"] += float(loss.detach()) * ntok  # at the evaluation
        acc["tokens"] += batch.num_tokens
        for k, v in terms.items():  # every term, every batch (soft_ce weighs 0 in the warm-up)
            acc["terms"][k] = acc["terms"].get(k, 0.0) + float(v) * ntok
        dt = time.perf_counter() - t0
        self.seconds += dt
        acc["seconds"] += dt

    def _dev_record(self, epoch_done: int) -> tuple[dict[str, Any], dict[str, float]]:
        """The metrics record of an evaluation now, and the dev scores."""
        cfg, data = self.cfg, self.data
        hyps = decode_corpus(self.model, data.dev, data.src_vocab, data.tgt_vocab,
                             beam=cfg.dev_beam, max_len=cfg.max_len,  # type: ignore[arg-type]
                             length_norm=cfg.length_norm, unk_replace=cfg.unk_replace,
                             batch_size=cfg.batch_size, device=self.device)
        refs = [data.dev.tgt_tokens(i) for i in range(len(data.dev))]
        dev_scores = score(cfg.select, hyps, refs)  # type: ignore[arg-type]
        dev_loss = corpus_loss(self.model, data.dev, data.src_vocab, data.tgt_vocab,
                               cfg.batch_size, self.device)
        n, acc = max(self.acc["tokens"], 1), self.acc
        return {
            "step": self.step, "epoch": epoch_done, "train_loss": acc["loss"] / n,
            "terms": {k: v / n for k, v in acc["terms"].items()},
            **{f"dev_{k}": v for k, v in dev_scores.items()}, "dev_loss": dev_loss,
            "seconds": acc["seconds"], "total_seconds": self.seconds, "lr": cfg.lr,
        }, dev_scores

    def _sum_over_ranks(self) -> None:
        """The running sums of every rank added up (a collective: every rank calls it)."""
        if rank_and_world()[1] == 1:
            return
        acc, names = self.acc, list(self.acc["terms"])
        packed = torch.tensor([acc["loss"], acc["tokens"], *acc["terms"].values()],
                              dtype=torch.float64, device=self.device)
        dist.all_reduce(packed)
        acc["loss"], acc["tokens"] = float(packed[0]), int(packed[1])
        acc["terms"] = dict(zip(names, packed[2:].tolist()))

    def evaluate_and_checkpoint(self, epoch_done: int, resume_at: tuple[int, int]) -> None:
        """Score dev, keep best.pt, write checkpoint.pt (resuming at ``resume_at`` =
        (epoch, batch)), then log one metrics record: rank 0 alone, the others wait."""
        self._sum_over_ranks()
        if self.run.writer:
            self._evaluate_and_write(epoch_done, resume_at)
        barrier()
        self._reset_sums()
        self.model.train()

    def _evaluate_and_write(self, epoch_done: int, resume_at: tuple[int, int]) -> None:
        record, dev_scores = self._dev_record(epoch_done)
        model_state = {"model": self.model.state_dict(), "criterion": self.criterion.state_dict(),
                       "model_config": self.mcfg.to_dict(), "mode": self.cfg.mode,
                       "step": self.step, "vocab_fingerprints": self.fingerprints}
        current = dev_scores[self.cfg.select]  # type: ignore[index]
        if current > self.best["score"]:
            self.best = {"score": current, "step": self.step}
            save_checkpoint(model_state, self.run / BEST)
        record["best_step"] = self.best["step"]
        self.n_evals += 1
        save_checkpoint({
            **model_state, "optimizer": self.optimizer.state_dict(), "epoch": resume_at[0],
            "batch_in_epoch": resume_at[1], "n_evals": self.n_evals, "best": self.best,
            "seconds": self.seconds, "rng": rng_state(), "last_record": json.dumps(record),
        }, self.run / CHECKPOINT)
        self.writer.write(record)  # after the checkpoint: a resume never logs an evaluation twice
        log(f"update {self.step} epoch {epoch_done}: train loss {record['train_loss']:.4f}, dev "
            + ", ".join(f"{k} {v:.2f}" for k, v in dev_scores.items())
            + f", best {self.cfg.select} {self.best['score']:.2f} at update {self.best['step']}")

    def out_of_steps(self) -> bool:
        """Whether ``--max-steps`` updates are done."""
        return self.cfg.max_steps is not None and self.step >= self.cfg.max_steps

    def train(self) -> None:
        """Epochs from the current position to the end, evaluating every ``eval_every``
        updates and once at the end."""
        cfg = self.cfg
        self.model.train()
        self.criterion.train()
        evaluated_at = self.step if self.run.resumed else -1
        position = (self.epoch, self.batch_in_epoch)
        epoch = self.epoch
        while position[0] <= cfg.epochs and not self.out_of_steps():  # type: ignore[operator]
            epoch = position[0]
            epoch_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            batches = batch_indices(self.lengths, cfg.batch_size, epoch_gen)
            todo = range(position[1], len(batches))
            position = (epoch + 1, 0)
            for bi in progress(todo, total=len(todo), desc=f"epoch {epoch}"):
                if len(batches[bi]) < rank_and_world()[1]:
                    continue  # fewer pairs than ranks (at most the epoch's last batch): skipped
                self.train_batch(batches[bi])
                next_position = (epoch, bi + 1) if bi + 1 < len(batches) else (epoch + 1, 0)
                if self.step % cfg.eval_every == 0:
                    self.evaluate_and_checkpoint(epoch, next_position)
                    evaluated_at = self.step
                if self.out_of_steps():
                    position = next_position
                    break
        if evaluated_at != self.step:
            self.evaluate_and_checkpoint(min(epoch, cfg.epochs), position)  # type: ignore[type-var]


def train(config: TrainConfig) -> dict[str, Any]:
    """Train, keep the best-dev model, score the test set from it; returns ``result.json``.

    Every setting, the device and the data are checked before the run folder is touched;
    ``--resume`` and ``--overwrite`` follow :meth:`~labelemb.runs.rundir.RunDir.open`. Under
    ``torchrun`` the ranks train shards of each batch and rank 0 evaluates and writes; the
    other ranks return ``{}``.
    """
    cfg = config.resolved()
    joined = join_torchrun(cfg.device)
    try:
        return _train(cfg)
    finally:
        if joined:
            dist.destroy_process_group()


def _train(cfg: TrainConfig) -> dict[str, Any]:
    device = device_of_rank(cfg.device)
    run = RunDir.open(cfg.out, asdict(cfg), may_change=may_change_on_resume(TrainConfig),  # type: ignore[arg-type]
                      resume=cfg.resume, overwrite=cfg.overwrite, map_location=device,
                      extra_files=(BEST, SRC_VOCAB, TGT_VOCAB, TEST_OUTPUT),
                      writer=is_main_process())
    if run.resumed and is_complete(run.path) and _finished(cfg, run.checkpoint):  # type: ignore[arg-type]
        log(f"{run.path}: complete ({run.checkpoint['step']} updates), skipped")  # type: ignore[index]
        return read_json(run / RESULT)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    data = _read_data(cfg, run)
    trainer = _Trainer(cfg, data, run, device)
    trainer.start()
    log(f"seq2seq {cfg.task} mode={cfg.mode}: {len(data.train)} train pairs, vocab "
        f"{len(data.src_vocab)}/{len(data.tgt_vocab)}, "
        f"{sum(p.numel() for p in trainer.params):,} parameters, {device}")
    trainer.train()
    result: dict[str, Any] = {}
    if rank_and_world()[1] > 1:
        check_ranks_agree({"model": trainer.model, "criterion": trainer.criterion}, run.path)
    if run.writer:
        result = _finish(run.path, cfg, data.dev, data.test, device, trainer.best, trainer.step,
                         trainer.seconds)
    barrier()
    return result


def _finish(run_dir: Path, cfg: TrainConfig, dev_set: ParallelCorpus,
            test_set: ParallelCorpus | None, device: torch.device, best: dict, step: int,
            seconds: float) -> dict[str, Any]:
    """Score the test set from the best-dev model; write the embedding and result.json."""
    model, criterion, src_vocab, tgt_vocab, _ = load_run(run_dir, which=BEST, device=device)
    if MODES[cfg.mode].label_embedding:
        save_embedding(criterion.embedding, run_dir / EMBEDDING, class_names=tgt_vocab.itos)
    result: dict[str, Any] = {
        "task": "seq2seq", "dataset": cfg.task, "mode": cfg.mode, "seed": cfg.seed,
        "steps": step, "train_seconds": seconds, "best_step": best["step"],
        f"best_dev_{cfg.select}": best["score"], "beam": cfg.beam,
    }
    if test_set is not None:
        t0 = time.perf_counter()
        hyps = decode_corpus(model, test_set, src_vocab, tgt_vocab, beam=cfg.beam,  # type: ignore[arg-type]
                             max_len=cfg.max_len, length_norm=cfg.length_norm,  # type: ignore[arg-type]
                             unk_replace=cfg.unk_replace, batch_size=cfg.batch_size,
                             device=device, show_progress=True)
        sep = "" if cfg.tokenize == "chars" else " "
        atomic_write_text(run_dir / TEST_OUTPUT, "".join(sep.join(h) + "\n" for h in hyps))
        refs = [test_set.tgt_tokens(i) for i in range(len(test_set))]
        result.update({f"test_{k}": v for k, v in score(cfg.select, hyps, refs).items()})  # type: ignore[arg-type]
        result["test_pairs"] = len(test_set)
        result["test_decode_seconds"] = time.perf_counter() - t0
    write_json(run_dir / RESULT, result)
    log("result: " + json.dumps({k: v for k, v in result.items() if k.startswith(("test_", "best_"))}))
    return result


def load_run(run_dir: str | Path, which: str = BEST, device: str | torch.device = "cpu"
             ) -> tuple[Seq2Seq, nn.Module, Vocab, Vocab, dict]:
    """Model, criterion (holding the label embedding), vocabularies and config.json of a run.

    The vocabulary files must be the ones the checkpoint was trained with (fingerprints).
    """
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG)
    if config.get("task") != "seq2seq":
        raise ValueError(f"{run_dir} is a {config.get('task')!r} run, not a seq2seq run")
    ckpt = load_checkpoint(run_dir / which, map_location=device)
    src_vocab = Vocab.load(run_dir / SRC_VOCAB, ckpt["vocab_fingerprints"]["src"])
    tgt_vocab = Vocab.load(run_dir / TGT_VOCAB, ckpt["vocab_fingerprints"]["tgt"])
    mcfg = Seq2SeqConfig(**ckpt["model_config"])
    model = build_model(mcfg, ckpt["mode"]).to(device)
    model.load_state_dict(ckpt["model"])
    model.eval()
    settings = config["settings"]
    criterion = build_criterion(ckpt["mode"], tgt_vocab, settings["label_dim"],
                                settings["warmup_steps"],
                                settings.get("chunked_loss", False),
                                settings.get("chunk_size")).to(device)
    criterion.load_state_dict(ckpt["criterion"])
    return model, criterion, src_vocab, tgt_vocab, config


def decoding_settings(settings: dict[str, Any], *, beam: int | None = None,
                      max_len: int | None = None, length_norm: float | None = None,
                      unk_replace: bool | None = None) -> dict[str, Any]:
    """:func:`decode_corpus`'s decoding keywords: each one given, else the run's own
    (``settings`` of its config.json)."""
    given = dict(beam=beam, max_len=max_len, length_norm=length_norm, unk_replace=unk_replace)
    return {k: settings[k] if v is None else v for k, v in given.items()}


def translate_lines(
    run_dir: str | Path, lines: Sequence[str], *, beam: int | None = None,
    max_len: int | None = None, length_norm: float | None = None, unk_replace: bool | None = None,
    batch_size: int = 64, device: str | torch.device = "cpu", which: str = BEST,
) -> list[str]:
    """Translate/summarise raw lines with a trained run (its tokenisation and defaults)."""
    model, _, src_vocab, tgt_vocab, config = load_run(run_dir, which, device)
    s = config["settings"]
    corpus = ParallelCorpus(list(lines), [""] * len(lines), s["tokenize"], "input")
    hyps = decode_corpus(
        model, corpus, src_vocab, tgt_vocab, batch_size=batch_size, device=device,
        **decoding_settings(s, beam=beam, max_len=max_len, length_norm=length_norm,
                            unk_replace=unk_replace),
    )
    sep = "" if s["tokenize"] == "chars" else " "
    return [sep.join(h) for h in hyps]
