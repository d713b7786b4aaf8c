"""THE training loop of every task: one step loop, one crash protocol, one distributed rule.

A task (:class:`Task`: image classification, seq2seq) says what a batch is, its loss, how to
evaluate and how to finish; this module owns, once each:

* **the step** (:func:`step_gradients`): the batch split into ``world`` rank shards and
  ``accumulate`` micro-batches; every part's loss divides by the whole batch's counts
  (:class:`~labelemb.normalizers.Normalizers`), so the parts' gradients *sum* to the
  one-batch gradient; the ranks' gradients are summed (:func:`~labelemb.runs.ranks.sum_gradients`,
  no DDP wrapper); ``embedding_ce``'s deferred division
  (:func:`~labelemb.normalizers.finish_deferred_embedding_ce`); gradient clipping; Adam; the
  learning-rate schedule (milestones in epochs); the warm-up clock (one tick per update).
* **the position**: ``step`` (updates done), ``epoch`` (epochs done), ``batch`` (batches done
  in the current epoch, whose order is kept in the checkpoint with the data generator).
* **the crash protocol** at each evaluation, in this order: ``best.pt`` (when the dev metric
  improved), ``embedding.safetensors``, ``checkpoint.pt`` (holding the record), then the record
  appended to ``metrics.jsonl``. On resume the log is cut to the checkpoint's count and the
  record re-appended if a kill came between the last two writes. ``result.json`` last.
* **the run layout**: ``OUT/<mode>/seed-<k>/`` for every task (:mod:`labelemb.runs.rundir`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from .. import __version__
from ..embedding import save_embedding
from ..functional import term_weights
from ..loss import LabelEmbeddingLoss
from ..normalizers import Normalizers, defers_embedding_ce, finish_deferred_embedding_ce
from ..runs import rundir
from ..runs.checkpoint import (load_checkpoint, restore_training_state, rng_state,
                               save_checkpoint, set_rng_state)
from ..runs.progress import log, progress
from ..runs.ranks import (barrier, check_ranks_agree, is_main_process, rank_and_world,
                          sum_gradients)
from ..runs.rundir import RunDir
from ..runs.seed import seed_everything
from ..runs.settings import may_change_on_resume
from ..runs.config import MODES, RunSettings

__all__ = ["Task", "Part", "fit", "run_all", "step_gradients", "adam"]


@dataclass
class Part:
    """One micro-batch's loss (its share of the batch's), its terms (shares too) and counts
    summed over its examples (``n_correct`` when the criterion defers ``embedding_ce``;
    ``error``: wrong predictions, logged as ``train_error``)."""

    loss: Tensor
    terms: dict[str, Tensor]
    counts: dict[str, Tensor] = field(default_factory=dict)


class Task(Protocol):
    """What the loop asks of a task. ``cfg`` is resolved (recipe filled in)."""

    name: str  # "classification" | "seq2seq": config.json's task
    cfg: RunSettings
    select: str  # the dev record key that picks best.pt ("dev_error", "dev_bleu")
    higher_is_better: bool
    primary_metric: str  # result.json's key of the task's main test measure
    extra_files: tuple[str, ...]  # files of a run besides the common ones
    data_identity: tuple[str, ...]  # config.json keys that say which data the run trains on

    def build(self, mode: str, seed: int) -> tuple[nn.Module, nn.Module]:
        """``(model, criterion)`` on the device, freshly initialised (after seeding)."""

    def epoch_batches(self, epoch: int, g: torch.Generator) -> list[Tensor]:
        """Epoch ``epoch``'s (1-based) batches, as index tensors; may draw from ``g``."""

    def batch(self, idx: Tensor, g: torch.Generator) -> Any:
        """The whole batch of indices ``idx`` (augmentation draws from ``g`` here, the same
        on every rank)."""

    def parts(self, batch: Any, rank: int, world: int, accumulate: int) -> tuple[list[Any], int]:
        """This rank's micro-batches of ``batch``, and the whole batch's target count."""

    def loss(self, model: nn.Module, criterion: nn.Module, part: Any,
             normalizers: Normalizers | None) -> Part:
        """The loss of one micro-batch."""

    def evaluate(self, model: nn.Module, criterion: nn.Module) -> dict[str, Any]:
        """The metrics record's evaluation keys (``dev_*``, ``test_*``)."""

    def describe(self, mode: str) -> dict[str, Any]:
        """``config.json``'s task keys (the loop adds the common ones)."""

    def start(self, run: RunDir) -> None:
        """Write the task's own files of a run (after config.json), or check them on resume."""

    def finish(self, run: RunDir, model: nn.Module, criterion: nn.Module, mode: str,
               history: list[dict[str, Any]]) -> dict[str, Any]:
        """``result.json``'s task keys: the final (or best) model's test scores."""


@dataclass
class _State:
    """What one run trains and where it is."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    data_rng: torch.Generator
    mode: str
    seed: int
    step: int = 0
    epoch: int = 0
    batch: int = 0
    order: list[Tensor] | None = None
    records: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"score": None, "step": None})
    train_seconds: float = 0.0
    eval_seconds: float = 0.0

    def checkpoint(self, record: dict[str, Any]) -> dict[str, Any]:
        """Everything an exact resume needs, and the record of this evaluation."""
        return {
            "run_format": rundir.RUN_FORMAT, "mode": self.mode, "seed": self.seed,
            "model": self.model.state_dict(), "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch": self.batch,
            "order": self.order, "data_rng": self.data_rng.get_state(), "rng": rng_state(),
            "records": self.records, "record": record, "best": self.best,
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
        }

    def restore(self, ckpt: dict[str, Any], source: Path) -> None:
        restore_training_state(ckpt, source, self.model, self.criterion, self.optimizer)
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        self.data_rng.set_state(ckpt["data_rng"])
        for k in ("step", "epoch", "batch", "order", "records", "best", "train_seconds",
                  "eval_seconds"):
            setattr(self, k, ckpt[k])


# --------------------------------------------------------------------------- the step


def step_gradients(task: Task, model: nn.Module, criterion: nn.Module, batch: Any
                   ) -> tuple[dict[str, Tensor], int]:
    """The gradients of one global ``batch`` (the same on every rank), summed into ``.grad``
    of the model's and criterion's parameters on every rank: this rank's shard, in
    ``accumulate`` micro-batches, each dividing by the whole batch's counts.

    Returns this rank's shares times the batch's target count (``loss``, the terms and the
    counts: they sum over ranks to the batch's sums) and that count.
    """
    rank, world = rank_and_world()
    parts, n_valid = task.parts(batch, rank, world, task.cfg.accumulate)
    whole = None if len(parts) == 1 and world == 1 else Normalizers(n_valid)
    # The warm-up clock counts updates: every micro-batch of this one reads the same value.
    warm = _with_warmup(criterion)
    clock = None if warm is None else (warm.num_updates, warm.num_updates.clone())  # now, start
    shares: dict[str, Tensor] = {}  # "loss" and the terms: this rank's shares of the batch's
    counts: dict[str, Tensor] = {}
    for part in parts:
        if clock is not None:
            clock[0].copy_(clock[1])
        out = task.loss(model, criterion, part, whole)
        out.loss.backward()
        for into, new in ((shares, {"loss": out.loss, **out.terms}), (counts, out.counts)):
            for k, v in new.items():
                into[k] = into.get(k, 0.0) + v.detach()
    if clock is not None and criterion.training:
        clock[0].copy_(clock[1] + 1)
    sum_gradients(_trained(model, criterion))
    n_correct = counts.pop("n_correct", None)
    if whole is not None and defers_embedding_ce(criterion):
        finish_deferred_embedding_ce([p.grad for p in _trained(criterion) if p.grad is not None],
                                     n_valid, _summed(n_correct), criterion.options, shares)
    n = float(n_valid)  # shares -> sums over the batch's targets
    return {"loss": shares.pop("loss") * n, **{f"term/{k}": v * n for k, v in shares.items()},
            **{f"count/{k}": v for k, v in counts.items()}}, n_valid


def _trained(*modules: nn.Module) -> list[nn.Parameter]:
    """The parameters an update changes: the modules' (model, criterion) that need a gradient."""
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def _with_warmup(criterion: nn.Module) -> LabelEmbeddingLoss | None:
    """The loss if it keeps a warm-up clock (``num_updates``: the updates done, against
    ``options.warmup_steps``), ``None`` for one without (the baselines)."""
    return criterion if isinstance(criterion, LabelEmbeddingLoss) else None


def _summed(t: Tensor) -> Tensor:
    """``t`` summed over the ranks."""
    if rank_and_world()[1] > 1:
        t = t.clone()
        torch.distributed.all_reduce(t)
    return t


def _train_step(task: Task, s: _State, idx: Tensor, sums: dict[str, Any]) -> None:
    """One update on the batch ``idx``; adds its sums to ``sums``."""
    cfg = task.cfg
    rank, world = rank_and_world()
    if world > 1:  # dropout masks differ per rank; a resume draws the same
        torch.manual_seed((s.seed * 1_000_003 + s.step) * 1_009 + rank)
    t0 = time.perf_counter()
    s.optimizer.zero_grad(set_to_none=True)
    stats, n_valid = step_gradients(task, s.model, s.criterion, task.batch(idx, s.data_rng))
    if cfg.clip_norm:
        nn.utils.clip_grad_norm_(_trained(s.model, s.criterion), cfg.clip_norm)
    sums["lr"] = s.optimizer.param_groups[0]["lr"]  # the lr this interval trained with
    warm = _with_warmup(s.criterion)
    if warm is not None:  # and soft_ce's weight (the clock has ticked for this update)
        sums["soft_ce_weight"] = float(term_weights(warm.options, warm.num_updates - 1)["soft_ce"])
    s.optimizer.step()
    s.step += 1
    for k, v in stats.items():
        sums[k] = sums.get(k, 0.0) + v.detach().double()
    sums["n_valid"] = sums.get("n_valid", 0) + n_valid
    sums["seconds"] = sums.get("seconds", 0.0) + time.perf_counter() - t0


# --------------------------------------------------------------------------- evaluation


def _record(task: Task, s: _State, sums: dict[str, Any]) -> dict[str, Any]:
    """The metrics record of an evaluation now (a collective: the sums add up over ranks)."""
    seconds, n_valid = sums.pop("seconds", 0.0), sums.pop("n_valid", 0)
    lr = sums.pop("lr", s.optimizer.param_groups[0]["lr"])
    soft = sums.pop("soft_ce_weight", None)
    names = sorted(sums)
    if rank_and_world()[1] > 1 and names:
        packed = torch.stack([torch.as_tensor(sums[k]).double() for k in names])
        torch.distributed.all_reduce(packed)
        sums = dict(zip(names, packed))
    n = max(float(n_valid), 1.0)
    epochs = s.epoch + (s.batch / len(s.order) if s.order else 0.0)
    record: dict[str, Any] = {
        # mid-epoch: rounded, but never up to the next whole epoch (--resume compares it)
        "step": s.step, "epoch": s.epoch if not s.order or not s.batch else
        min(round(epochs, 4), s.epoch + 0.9999),
        "train_loss": float(sums.get("loss", math.nan)) / n,
        "terms": {k[5:]: float(v) / n for k, v in sums.items() if k.startswith("term/")},
        **{f"train_{k[6:]}": float(v) / n for k, v in sums.items() if k.startswith("count/")},
        "lr": lr, "seconds": seconds,
    }
    if soft is not None:
        record["soft_ce_weight"] = soft
    return record


def _improved(task: Task, best: Any, score: Any) -> bool:
    """Whether the dev ``score`` beats ``best`` (none without a dev split: no best.pt)."""
    if score is None:
        return False
    return best is None or (score > best if task.higher_is_better else score < best)


def _evaluate(task: Task, s: _State, run: RunDir, sums: dict[str, Any]) -> None:
    """Evaluate, then write in the crash protocol's order (rank 0), then log one line."""
    record = _record(task, s, sums)
    if run.writer:
        t0 = time.perf_counter()
        record.update(task.evaluate(s.model, s.criterion))
        s.model.train(), s.criterion.train()
        record["eval_seconds"] = time.perf_counter() - t0
        s.train_seconds += record["seconds"]
        s.eval_seconds += record["eval_seconds"]
        improved = _improved(task, s.best["score"], record.get(task.select))
        if improved:
            s.best = {"score": record[task.select], "step": s.step}
        record["best_step"] = s.best["step"]
        s.records += 1
        if MODES[s.mode].label_embedding:
            save_embedding(s.criterion.embedding, run / rundir.EMBEDDING)
        save_checkpoint(s.checkpoint(record), run / rundir.CHECKPOINT)
        if improved:  # after the checkpoint, which names it: _resume repairs a lost one
            save_checkpoint(_best_state(s.model.state_dict(), s.criterion.state_dict(), s),
                            run / rundir.BEST)
        rundir.MetricsWriter(run / rundir.METRICS).write(record)
        log(_line(s, record))
    barrier()


def _best_state(model: dict[str, Tensor], criterion: dict[str, Tensor], s: _State
                ) -> dict[str, Any]:
    """``best.pt``: the weights of the best evaluation so far, and which one it was."""
    return {"model": model, "criterion": criterion, "mode": s.mode, "step": s.best["step"]}


def _line(s: _State, r: dict[str, Any]) -> str:
    """The printed line of an evaluation: position, loss, the task's scores, times."""
    scores = ", ".join(f"{k} {100 * v:.2f}%" if k.endswith(("error", "ece")) else f"{k} {v:.2f}"
                       for k, v in r.items() if k.startswith(("dev_", "test_", "train_error"))
                       and k != "test_loss" and isinstance(v, float))
    soft = r.get("soft_ce_weight")
    warm = " (soft_ce off: warm-up)" if soft == 0.0 else ""
    return (f"[{s.mode} seed {s.seed}] update {s.step} epoch {r['epoch']}: loss "
            f"{r['train_loss']:.4f}{warm}, {scores} (train {r['seconds']:.1f}s, eval "
            f"{r['eval_seconds']:.1f}s)")


# --------------------------------------------------------------------------- one run


def adam(params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam, with PyTorch's fused kernel where every parameter's device has one (one pass
    per tensor instead of a dozen; docs/PERFORMANCE.md measures it). The update is Adam's
    either way, only the rounding differs; a checkpoint keeps the choice in its param groups,
    so a run resumes with the optimiser it started with."""
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                 for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def _build(task: Task, mode: str, seed: int) -> _State:
    # Same seed -> same backbone/main-head init and same data order in every mode.
    g = seed_everything(seed)
    model, criterion = task.build(mode, seed)
    optimizer = adam(_trained(model, criterion), task.cfg.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, task.cfg.lr_milestones or [],
                                                     task.cfg.lr_gamma)
    return _State(model, criterion, optimizer, scheduler, g, mode, seed)


def _finished(cfg: RunSettings, step: int, epoch: int) -> bool:
    return epoch >= cfg.epochs or (cfg.max_steps is not None and step >= cfg.max_steps)


def _resume(run: RunDir, s: _State) -> None:
    """Continue from the checkpoint (restored already): the log cut back to its records, or
    the last record re-appended when a kill came between the checkpoint and the log; a
    best.pt that a kill kept from being written is the checkpoint's own model (the best
    evaluation was that one)."""
    ckpt = run.checkpoint
    if run.writer:
        metrics = rundir.MetricsWriter(run / rundir.METRICS)
        metrics.truncate_after(s.records)
        if len(rundir.read_metrics(metrics.path)) < s.records:
            metrics.write(ckpt["record"])
        best = run / rundir.BEST
        if s.best["step"] is not None and (not best.is_file() or load_checkpoint(best).get(
                "step") != s.best["step"]):
            save_checkpoint(_best_state(ckpt["model"], ckpt["criterion"], s), best)
    log(f"[{s.mode} seed {s.seed}] resuming at update {s.step} (epoch {s.epoch}, batch "
        f"{s.batch})")


def _warn_warmup(task: Task, s: _State) -> None:
    """A run that ends before the warm-up never trains with the soft target: say so."""
    warm = _with_warmup(s.criterion)
    warmup = 0 if warm is None else warm.options.warmup_steps
    if not warmup or not MODES[s.mode].uses_loss_options:
        return
    per_epoch = len(task.epoch_batches(1, torch.Generator().set_state(s.data_rng.get_state())))
    steps = per_epoch * task.cfg.epochs
    if task.cfg.max_steps is not None:
        steps = min(steps, task.cfg.max_steps)
    if steps <= warmup:
        log(f"warning: [{s.mode} seed {s.seed}] {steps} updates in all, --warmup-steps "
            f"{warmup}: the soft target (soft_ce) never counts in this run")


def _train(task: Task, s: _State, run: RunDir) -> None:
    """Batches from the current position to the end, evaluating every ``eval_every`` updates
    (else at each epoch's end) and once at the end."""
    cfg, sums = task.cfg, {}
    s.model.train(), s.criterion.train()
    evaluated = run.resumed
    while not _finished(cfg, s.step, s.epoch):
        if s.order is None:
            s.order = task.epoch_batches(s.epoch + 1, s.data_rng)
        world = rank_and_world()[1]
        todo = range(s.batch, len(s.order))
        for b in progress(todo, total=len(todo), desc=f"{s.mode} s{s.seed} e{s.epoch + 1}"):
            stepped = len(s.order[b]) >= world * cfg.accumulate  # else too small to share
            if stepped:
                _train_step(task, s, s.order[b], sums)
                evaluated = False
            s.batch = b + 1
            if s.batch == len(s.order):
                _end_epoch(s)
            due = (s.batch == 0) if cfg.eval_every is None else \
                stepped and s.step % cfg.eval_every == 0
            if due or _finished(cfg, s.step, s.epoch):
                _evaluate(task, s, run, sums)
                sums, evaluated = {}, True
            if _finished(cfg, s.step, s.epoch):
                break
    if not evaluated:
        _evaluate(task, s, run, sums)


def _end_epoch(s: _State) -> None:
    hook = MODES[s.mode].epoch_hook
    if hook is not None:
        hook(s.criterion)  # after the last batch of the epoch (syncs ranks)
    s.scheduler.step()
    s.epoch, s.batch, s.order = s.epoch + 1, 0, None


def fit(task: Task, mode: str, seed: int, run_dir: Path) -> Path:
    """Train (or resume) one ``(mode, seed)`` run of ``task`` into ``run_dir``. Every check
    (settings, data, the checkpoint's fit) comes before a file of the run changes."""
    cfg = task.cfg
    run = RunDir.open(run_dir, cfg.run_settings(mode, seed), may_change=may_change_on_resume(
        type(cfg)), resume=cfg.resume, overwrite=cfg.overwrite, writer=is_main_process(),
        extra_files=task.extra_files)
    end = run.finished_result() if cfg.resume else None
    if end is not None and _finished(cfg, end["steps"], end["epochs"]):
        log(f"[{mode} seed {seed}] complete ({end['steps']} updates), skipped")
        return run.path
    if end is not None and run.checkpoint is None:
        raise ValueError(f"{run.path}: finished, and its checkpoint.pt is not kept: it cannot "
                         "be extended; use --overwrite to train it again")
    barrier()
    s = _build(task, mode, seed)  # built (and an emb-fixed file checked) before files change
    config = {"run_format": rundir.RUN_FORMAT, "labelemb_version": __version__,
              "task": task.name, "mode": mode, "seed": seed, **task.describe(mode),
              "settings": cfg.run_settings(mode, seed),
              "parameters": sum(p.numel() for p in s.model.parameters()),
              "world_size": rank_and_world()[1], "torch_version": torch.__version__}
    if run.resumed:
        run.check_same_data(config, task.data_identity)
        s.restore(run.checkpoint, run / rundir.CHECKPOINT)  # refuses one that does not fit
    run.start(config)
    task.start(run)
    if run.resumed:
        _resume(run, s)
    elif run.writer:
        rundir.MetricsWriter(run / rundir.METRICS).truncate_after(0)
    _warn_warmup(task, s)
    _train(task, s, run)
    if rank_and_world()[1] > 1:
        check_ranks_agree({"model": s.model, "criterion": s.criterion}, run.path)
    if run.writer:
        _write_result(task, s, run, config["parameters"])
    barrier()
    return run.path


def _write_result(task: Task, s: _State, run: RunDir, n_params: int) -> None:
    history = rundir.read_metrics(run / rundir.METRICS)
    result = task.finish(run, s.model, s.criterion, s.mode, history)
    epochs = history[-1]["epoch"]
    rundir.write_json(run / rundir.RESULT, {
        "task": task.name, "mode": s.mode, "seed": s.seed, "steps": s.step, "epochs": epochs,
        "best_step": s.best["step"], "primary_metric": task.primary_metric,
        "higher_is_better": task.higher_is_better, **result,
        "train_seconds": s.train_seconds, "eval_seconds": s.eval_seconds,
        "seconds_per_epoch": s.train_seconds / max(epochs, 1e-9), "parameters": n_params,
    })


def run_all(task: Task) -> list[Path]:
    """Every ``(mode, seed)`` run of ``task.cfg`` into ``OUT/<mode>/seed-<k>/``, seed by seed."""
    cfg, out = task.cfg, Path(str(task.cfg.out))
    parts = rank_and_world()[1] * cfg.accumulate
    if cfg.batch_size < parts:  # else every batch would be skipped: no update at all
        raise ValueError(f"--batch-size {cfg.batch_size} is smaller than --accumulate "
                         f"{cfg.accumulate} x {parts // cfg.accumulate} rank(s): each part of a "
                         "batch needs an example")
    if is_main_process():
        rundir.make_folder(out)  # a file in the way or no write permission: said before training
    return [fit(task, mode, seed, out / mode / f"seed-{seed}") for seed in cfg.seeds
            for mode in cfg.modes]
