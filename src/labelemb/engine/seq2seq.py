"""Sequence-to-sequence training, decoding and scoring (paper Section 3.3, Tables 3-5).

:func:`train` reads the data, builds the vocabularies, trains with evaluation every
``eval_every`` updates, keeps the best-dev model in ``best.pt`` and scores the test set from it.
The run directory follows :mod:`labelemb.engine.rundir`; besides the common files it holds
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
from torch import nn

from ..chunked import ChunkedLabelEmbeddingLoss
from .. import __version__
from ..baselines import LabelSmoothingLoss
from ..data.parallel_text import (
    ParallelCorpus, batch_indices, collate, encode_corpus, load_parallel_dir,
)
from ..data.vocab import PAD, SPECIALS, UNK, Vocab
from ..embedding import CompressedLabelEmbedding, save_embedding
from ..loss import LabelEmbeddingLoss
from ..models.beam import beam_search, greedy_decode
from ..models.seq2seq import PRESETS as MODEL_PRESETS
from ..models.seq2seq import Seq2Seq, Seq2SeqConfig
from ..runs.checkpoint import (load_checkpoint, restore_training_state, rng_state, save_checkpoint,
                         set_rng_state)
from ..runs.progress import log, progress
from ..runs.rundir import CHECKPOINT, CONFIG, EMBEDDING, METRICS, RESULT, RUN_FORMAT, MetricsWriter
from ..runs.rundir import read_json, read_metrics, write_json
from ..runs.seed import seed_everything
from .text_metrics import bleu, rouge

__all__ = [
    "TrainConfig", "TASK_DEFAULTS", "load_task", "build_vocabs", "build_model", "build_criterion",
    "train", "decode_corpus", "score", "load_run", "nearest_labels", "BEST", "SRC_VOCAB",
    "TGT_VOCAB", "TEST_OUTPUT",
]

BEST = "best.pt"
SRC_VOCAB = "vocab.src.json"
TGT_VOCAB = "vocab.tgt.json"
TEST_OUTPUT = "test.hyp.txt"
TASKS = ("iwslt15", "lcsts", "parallel")
MODES = ("emb", "baseline")


@dataclass
class TrainConfig:
    """Every setting of a seq2seq run; ``None`` means "the task's default" (TASK_DEFAULTS)."""

    task: str
    data_dir: str
    out: str
    mode: str = "emb"
    seed: int = 1
    # data
    src_lang: str | None = None  # file extension of the source side
    tgt_lang: str | None = None
    train_prefix: str = "train"  # task "parallel": files <prefix>.<lang>
    dev_prefix: str = "dev"
    test_prefix: str | None = "test"
    tokenize: str | None = None  # "words" | "chars"
    lcsts_min_score: int | None = None
    vocab_size: int = 50_000
    min_count: int = 1
    share_vocab: bool | None = None
    max_train_len: int | None = None  # 0: no limit
    max_train_pairs: int | None = None
    dev_max_pairs: int | None = None
    # model
    emb_dim: int | None = None
    hidden: int | None = None
    layers: int | None = None
    dropout: float | None = None
    share_embeddings: bool | None = None
    label_dim: int = 512  # compressed label embedding size (512 in the authors' code)
    # training
    batch_size: int = 64
    lr: float = 1e-3
    clip_norm: float = 5.0
    epochs: int | None = None
    max_steps: int | None = None
    warmup_steps: int = 20_000
    # head + loss in chunks of tokens (labelemb.chunked): no (B*T) x V tensor is held
    chunked_loss: bool = False
    eval_every: int = 500
    # decoding
    beam: int | None = None
    dev_beam: int = 1
    max_len: int | None = None
    length_norm: float = 0.0
    unk_replace: bool = False
    select: str | None = None  # dev metric that picks the best checkpoint
    device: str | None = None

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` default filled from the task's preset."""
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        d = asdict(self)
        for key, value in TASK_DEFAULTS[self.task].items():
            if d.get(key) is None:
                d[key] = value
        if d["device"] is None:
            d["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if d["max_train_len"] == 0:
            d["max_train_len"] = None
        cfg = TrainConfig(**d)
        for name in ("batch_size", "eval_every", "epochs", "vocab_size", "min_count", "label_dim",
                     "beam", "dev_beam", "max_len"):
            v = getattr(cfg, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if cfg.tokenize not in ("words", "chars"):
            raise ValueError(f"tokenize must be 'words' or 'chars', got {cfg.tokenize!r}")
        if cfg.select not in ("bleu", "rouge1", "rouge2", "rougeL"):
            raise ValueError(f"select must be bleu, rouge1, rouge2 or rougeL, got {cfg.select!r}")
        if cfg.share_embeddings and not cfg.share_vocab:
            raise ValueError("share_embeddings needs share_vocab")
        return cfg


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
    return Seq2Seq(mcfg, aux_head=(mode == "emb"))


def build_criterion(mode: str, tgt_vocab: Vocab, label_dim: int = 512,
                    warmup_steps: int = 20_000, chunked: bool = False) -> nn.Module:
    """``emb``: the seq2seq preset over a compressed label embedding, PAD ignored in every
    term; ``chunked`` computes head and loss together in chunks of tokens (same loss and
    gradients, same state-dict keys, a fraction of the memory). ``baseline``: cross-entropy,
    PAD ignored."""
    if mode == "baseline":
        return LabelSmoothingLoss(0.0, ignore_index=PAD)
    embedding = CompressedLabelEmbedding(len(tgt_vocab), label_dim, class_names=tgt_vocab.itos)
    loss_class = ChunkedLabelEmbeddingLoss if chunked else LabelEmbeddingLoss
    return loss_class.from_preset(
        "seq2seq", embedding, ignore_index=PAD, warmup_steps=warmup_steps
    )


def sequence_loss(model: Seq2Seq, criterion: nn.Module, batch) -> tuple[torch.Tensor, dict]:
    """Loss of one batch: ``(B, T, V)`` logits flattened to ``(B*T, V)``, or, with a chunked
    criterion, the ``(B*T, H)`` states and the model's head."""
    if isinstance(criterion, ChunkedLabelEmbeddingLoss):
        states = model.features(batch.src, batch.src_lengths, batch.tgt_in)
        return criterion(states.flatten(0, 1), batch.tgt_out.reshape(-1), model.head)
    logits, aux_logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    vocab = logits.shape[-1]
    return criterion(
        logits.reshape(-1, vocab), None if aux_logits is None else aux_logits.reshape(-1, vocab),
        batch.tgt_out.reshape(-1),
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


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if not (run_dir / CHECKPOINT).is_file():
            raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {run_dir}")
        return
    if (run_dir / CONFIG).exists():
        raise ValueError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
        )


def _comparable(cfg: dict) -> dict:
    # Settings that may change on resume: where it runs and how long it goes on.
    return {k: v for k, v in cfg.items()
            if k not in ("device", "epochs", "max_steps", "eval_every", "out")}


def train(config: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train, keep the best-dev model, score the test set from it; returns ``result.json``."""
    cfg = config.resolved()
    run_dir = Path(cfg.out)
    _check_run_dir(run_dir, resume)
    device = torch.device(cfg.device)  # type: ignore[arg-type]

    # Read and check every input before writing anything.
    splits = load_task(cfg)
    train_set = splits["train"].filter(cfg.max_train_len).head(cfg.max_train_pairs)  # type: ignore[union-attr]
    dev_set = splits["dev"].head(cfg.dev_max_pairs)  # type: ignore[union-attr]
    test_set = splits.get("test")
    if len(train_set) == 0:
        raise ValueError(f"no training pairs left after filtering (max_train_len={cfg.max_train_len})")
    metric = cfg.select

    if resume:
        saved = read_json(run_dir / CONFIG)
        if _comparable(saved.get("settings", {})) != _comparable(asdict(cfg)):
            diff = sorted(k for k in _comparable(asdict(cfg))
                          if saved.get("settings", {}).get(k) != asdict(cfg).get(k))
            raise ValueError(f"--resume with different settings than {run_dir / CONFIG}: {diff}")
        ckpt = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
        src_vocab = Vocab.load(run_dir / SRC_VOCAB, ckpt["vocab_fingerprints"]["src"])
        tgt_vocab = Vocab.load(run_dir / TGT_VOCAB, ckpt["vocab_fingerprints"]["tgt"])
    else:
        ckpt = None
        src_vocab, tgt_vocab = build_vocabs(train_set, cfg)

    seed_everything(cfg.seed)
    mcfg = model_config(cfg, src_vocab, tgt_vocab)
    model = build_model(mcfg, cfg.mode).to(device)
    criterion = build_criterion(cfg.mode, tgt_vocab, cfg.label_dim, cfg.warmup_steps,
                                cfg.chunked_loss).to(device)
    params = [p for p in list(model.parameters()) + list(criterion.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    src_ids, tgt_ids = encode_corpus(train_set, src_vocab, tgt_vocab)
    lengths = (src_ids.lengths() * 1000 + tgt_ids.lengths()).tolist()  # bucket by both sides

    step, epoch, batch_in_epoch, n_evals, seconds = 0, 1, 0, 0, 0.0
    best = {"score": -math.inf, "step": 0}
    writer = MetricsWriter(run_dir / METRICS)
    if ckpt is not None:
        restore_training_state(ckpt, run_dir / CHECKPOINT, model, criterion, optimizer)
        step, epoch, batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        n_evals, best, seconds = ckpt["n_evals"], ckpt["best"], ckpt["seconds"]
        set_rng_state(ckpt["rng"])
        writer.truncate_after(n_evals)  # records logged after this checkpoint are redone
        if len(read_metrics(writer.path)) < n_evals and ckpt.get("last_record"):
            writer.write(json.loads(ckpt["last_record"]))  # killed between checkpoint and log
        log(f"resumed {run_dir} at update {step} (epoch {epoch}, batch {batch_in_epoch})")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        src_vocab.save(run_dir / SRC_VOCAB)
        tgt_vocab.save(run_dir / TGT_VOCAB)
        write_json(run_dir / CONFIG, {
            "run_format": RUN_FORMAT, "labelemb_version": __version__, "task": "seq2seq",
            "mode": cfg.mode, "model": "lstm-attention", "dataset": cfg.task, "seed": cfg.seed,
            "model_config": mcfg.to_dict(), "settings": asdict(cfg),
            "num_pairs": {"train": len(train_set), "dev": len(dev_set),
                          "test": len(test_set) if test_set is not None else 0},
            "vocab_sizes": {"src": len(src_vocab), "tgt": len(tgt_vocab)},
        })
        writer.path.write_text("", encoding="utf-8")
    log(f"seq2seq {cfg.task} mode={cfg.mode}: {len(train_set)} train pairs, vocab "
        f"{len(src_vocab)}/{len(tgt_vocab)}, {sum(p.numel() for p in params):,} parameters, {device}")

    fingerprints = {"src": src_vocab.fingerprint, "tgt": tgt_vocab.fingerprint}
    acc: dict[str, Any] = {"loss": 0.0, "tokens": 0, "terms": {}, "term_tokens": {}, "seconds": 0.0}

    def evaluate_and_checkpoint(epoch_done: int, resume_at: tuple[int, int]) -> None:
        """Score dev, keep best.pt, write checkpoint.pt (resuming at ``resume_at`` =
        (epoch, batch)), then log one metrics record."""
        nonlocal n_evals, best
        hyps = decode_corpus(model, dev_set, src_vocab, tgt_vocab, beam=cfg.dev_beam,
                             max_len=cfg.max_len, length_norm=cfg.length_norm,  # type: ignore[arg-type]
                             unk_replace=cfg.unk_replace, batch_size=cfg.batch_size, device=device)
        refs = [dev_set.tgt_tokens(i) for i in range(len(dev_set))]
        dev_scores = score(metric, hyps, refs)
        dev_loss = corpus_loss(model, dev_set, src_vocab, tgt_vocab, cfg.batch_size, device)
        n = max(acc["tokens"], 1)
        record = {
            "step": step, "epoch": epoch_done, "train_loss": acc["loss"] / n,
            "terms": {k: v / acc["term_tokens"][k] for k, v in acc["terms"].items()},
            **{f"dev_{k}": v for k, v in dev_scores.items()}, "dev_loss": dev_loss,
            "seconds": acc["seconds"], "total_seconds": seconds, "lr": cfg.lr,
        }
        current = dev_scores[metric]
        if current > best["score"]:
            best = {"score": current, "step": step}
            save_checkpoint({"model": model.state_dict(), "criterion": criterion.state_dict(),
                             "model_config": mcfg.to_dict(), "mode": cfg.mode, "step": step,
                             "vocab_fingerprints": fingerprints}, run_dir / BEST)
        record["best_step"] = best["step"]
        n_evals += 1
        save_checkpoint({
            "model": model.state_dict(), "criterion": criterion.state_dict(),
            "optimizer": optimizer.state_dict(), "model_config": mcfg.to_dict(),
            "mode": cfg.mode, "step": step, "epoch": resume_at[0], "batch_in_epoch": resume_at[1],
            "n_evals": n_evals, "best": best, "seconds": seconds, "rng": rng_state(),
            "vocab_fingerprints": fingerprints, "last_record": json.dumps(record),
        }, run_dir / CHECKPOINT)
        writer.write(record)  # after the checkpoint: a resume never logs an evaluation twice
        log(f"update {step} epoch {epoch_done}: train loss {record['train_loss']:.4f}, dev "
            + ", ".join(f"{k} {v:.2f}" for k, v in dev_scores.items())
            + f", best {metric} {best['score']:.2f} at update {best['step']}")
        acc.update(loss=0.0, tokens=0, terms={}, term_tokens={}, seconds=0.0)
        model.train()

    def out_of_steps() -> bool:
        return cfg.max_steps is not None and step >= cfg.max_steps

    model.train()
    criterion.train()
    evaluated_at = step if ckpt is not None else -1
    position = (epoch, batch_in_epoch)
    while position[0] <= cfg.epochs and not out_of_steps():  # type: ignore[operator]
        epoch = position[0]
        epoch_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        batches = batch_indices(lengths, cfg.batch_size, epoch_gen)
        todo = range(position[1], len(batches))
        position = (epoch + 1, 0)
        for bi in progress(todo, total=len(todo), desc=f"epoch {epoch}"):
            t0 = time.perf_counter()
            idx = batches[bi]
            batch = collate([src_ids[i] for i in idx], [tgt_ids[i] for i in idx], idx).to(device)
            loss, terms = sequence_loss(model, criterion, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.clip_norm)
            optimizer.step()
            step += 1
            ntok = batch.num_tokens
            acc["loss"] += float(loss.detach()) * ntok
            acc["tokens"] += ntok
            for k, v in terms.items():  # soft_ce is absent during the warm-up
                acc["terms"][k] = acc["terms"].get(k, 0.0) + float(v) * ntok
                acc["term_tokens"][k] = acc["term_tokens"].get(k, 0) + ntok
            dt = time.perf_counter() - t0
            seconds += dt
            acc["seconds"] += dt
            next_position = (epoch, bi + 1) if bi + 1 < len(batches) else (epoch + 1, 0)
            if step % cfg.eval_every == 0:
                evaluate_and_checkpoint(epoch, next_position)
                evaluated_at = step
            if out_of_steps():
                position = next_position
                break
    if evaluated_at != step:
        evaluate_and_checkpoint(min(epoch, cfg.epochs), position)  # type: ignore[type-var]
    return _finish(run_dir, cfg, dev_set, test_set, device, best, step, seconds)


def _finish(run_dir: Path, cfg: TrainConfig, dev_set: ParallelCorpus,
            test_set: ParallelCorpus | None, device: torch.device, best: dict, step: int,
            seconds: float) -> dict[str, Any]:
    """Score the test set from the best-dev model; write the embedding and result.json."""
    model, criterion, src_vocab, tgt_vocab, _ = load_run(run_dir, which=BEST, device=device)
    if isinstance(criterion, LabelEmbeddingLoss):
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
        from ..runs.atomic import atomic_write_text

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
                                settings.get("chunked_loss", False)).to(device)
    criterion.load_state_dict(ckpt["criterion"])
    return model, criterion, src_vocab, tgt_vocab, config


@torch.no_grad()
def nearest_labels(
    embedding: nn.Module, vocab: Vocab, words: Sequence[str], k: int = 5
) -> dict[str, list[tuple[str, float]]]:
    """The ``k`` labels each word's learned soft target puts most weight on (paper Table 5).

    :func:`labelemb.report.nearest.nearest_labels` over the asked words' rows only (never
    ``V x V``), leaving out the word itself and the special symbols.
    """
    from ..report.nearest import nearest_labels as _nearest

    unknown = [w for w in words if w not in vocab.stoi]
    if unknown:
        raise ValueError(f"not in the target vocabulary: {unknown}")
    ids = [vocab.stoi[w] for w in words]
    near = _nearest(embedding, ids, k=k, names=vocab.itos, exclude=range(len(SPECIALS)))
    return {w: [(n.name, n.probability) for n in near[i]] for w, i in zip(words, ids)}


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
        model, corpus, src_vocab, tgt_vocab, beam=beam or s["beam"], max_len=max_len or s["max_len"],
        length_norm=s["length_norm"] if length_norm is None else length_norm,
        unk_replace=s["unk_replace"] if unk_replace is None else unk_replace,
        batch_size=batch_size, device=device,
    )
    sep = "" if s["tokenize"] == "chars" else " "
    return [sep.join(h) for h in hyps]
