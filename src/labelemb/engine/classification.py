"""Image classification runs: one recipe for every mode, exact resume, the run-dir contract.

Modes (all trained by one Adam over the model's AND the criterion's parameters, same
initialisation and data order for a given seed):

==============  =============================================================================
``baseline``    cross-entropy on the main head
``emb``         label embedding network: :class:`~labelemb.LabelEmbeddingLoss` (classification
                preset) with a trainable :class:`~labelemb.LabelEmbedding`, two output layers
``emb-fixed``   a pre-trained embedding from an earlier ``emb`` run, frozen (Appendix C,
                eq. 17); no auxiliary head
``ls``          label smoothing 0.1
``ols``         online label smoothing (Zhang et al. 2021), soft labels swapped at epoch end
==============  =============================================================================

:func:`run_training` is the whole of ``labelemb train``; it returns the run directories
(``OUT/<mode>/seed-<k>/``, laid out as :mod:`labelemb.engine.rundir` says).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .. import __version__
from ..baselines import LabelSmoothingLoss, OnlineLabelSmoothingLoss
from ..data.registry import ImageDataset, load_dataset
from ..data.transforms import random_crop_flip, to_float
from ..embedding import FixedLabelEmbedding, LabelEmbedding, save_embedding
from ..loss import LabelEmbeddingLoss
from ..models.classifier import MODELS, Classifier, build_model
from ..runs import rundir
from ..report.table import build_table
from ..runs.atomic import atomic_write_text
from ..runs.checkpoint import (load_checkpoint, restore_training_state,
                         rng_state, save_checkpoint, set_rng_state)
from ..runs.progress import log as _log_line
from ..runs.progress import progress
from ..runs.seed import seed_everything

__all__ = [
    "MODES", "RECIPES", "TrainConfig", "run_training", "train_one", "evaluate",
    "expected_calibration_error", "build_criterion", "parse_seeds",
]

MODES = ("baseline", "emb", "emb-fixed", "ls", "ols")

#: The paper's recipes (official-code.md). Adam without weight decay in every case.
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": dict(epochs=15, batch_size=100, lr=1e-3, lr_milestones=[], augment=False),
    "cifar10": dict(epochs=100, batch_size=128, lr=1e-3, lr_milestones=[], augment=True),
    "cifar100": dict(epochs=100, batch_size=128, lr=1e-3, lr_milestones=[40, 80], augment=True),
}

# Settings that must not change when a run is resumed (others, e.g. epochs, may).
_RESUME_KEYS = ("dataset", "model", "mode", "seed", "batch_size", "lr", "lr_milestones",
                "lr_gamma", "augment", "train_subset", "test_subset", "dev_subset", "smoothing", "ols_alpha",
                "embedding", "cifar100_labels")


@dataclass
class TrainConfig:
    """Every setting of ``labelemb train``; ``None`` means "the dataset's recipe"."""

    dataset: str = "fashion-mnist"
    model: str | None = None
    modes: list[str] = field(default_factory=lambda: ["baseline", "emb"])
    seeds: list[int] = field(default_factory=lambda: [0])
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_milestones: list[int] | None = None
    lr_gamma: float = 0.2
    augment: bool | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    dev_subset: int | None = None
    out: str | None = None
    data_dir: str | None = None
    device: str | None = None
    resume: bool = False
    overwrite: bool = False
    embedding: str | None = None
    smoothing: float = 0.1
    ols_alpha: float = 0.5
    eval_batch_size: int = 1000
    threads: int | None = None
    cifar100_labels: str = "fine"
    summary: bool = True

    @classmethod
    def from_any(cls, obj: "TrainConfig | argparse.Namespace | dict") -> "TrainConfig":
        if isinstance(obj, cls):
            return dataclasses.replace(obj)
        d = vars(obj) if isinstance(obj, argparse.Namespace) else dict(obj)
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(obj, argparse.Namespace):
            unknown = set(d) - names
            if unknown:
                raise TypeError(f"unknown training setting(s) {sorted(unknown)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    def resolved(self, ds: ImageDataset) -> "TrainConfig":
        """Fill the ``None`` settings from the dataset's recipe and check them."""
        recipe = RECIPES[ds.preset]
        c = dataclasses.replace(self)
        for k, v in recipe.items():
            if getattr(c, k) is None:
                setattr(c, k, list(v) if isinstance(v, list) else v)
        if c.model is None:
            c.model = ds.default_model
        if c.out is None:
            c.out = str(Path("runs") / f"{ds.name}-{c.model}")
        c.modes = list(c.modes)
        c.seeds = [int(s) for s in c.seeds]
        c.lr_milestones = [int(m) for m in c.lr_milestones]
        _check_config(c)
        return c


def _check_config(c: TrainConfig) -> None:
    bad = [m for m in c.modes if m not in MODES]
    if bad or not c.modes:
        raise ValueError(f"modes must be a non-empty list from {MODES}, got {c.modes}")
    if c.model not in MODELS:
        raise ValueError(f"unknown model {c.model!r}; choose from {sorted(MODELS)}")
    if not c.seeds:
        raise ValueError("seeds must not be empty")
    for name in ("epochs", "batch_size", "eval_batch_size"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not c.lr > 0:
        raise ValueError(f"lr must be > 0, got {c.lr!r}")
    for name in ("train_subset", "test_subset", "dev_subset"):
        v = getattr(c, name)
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1, got {v!r}")
    if "emb-fixed" in c.modes and not c.embedding:
        raise ValueError(
            "mode emb-fixed needs --embedding PATH: an embedding.safetensors from an earlier "
            "emb run (PATH may contain {seed}), or that run's output folder"
        )


def parse_seeds(text: str) -> list[int]:
    """``"0-19"`` -> 0..19, ``"0,3,5"`` -> [0, 3, 5]; forms can be mixed (``"0-2,7"``)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"--seeds: cannot read {part!r}; use e.g. 0-19 or 0,3,5") from None
    if not seeds:
        raise ValueError(f"--seeds: no seed in {text!r}")
    return list(dict.fromkeys(seeds))


# --------------------------------------------------------------------------- pieces


def _resolve_embedding_path(template: str, seed: int) -> Path:
    p = Path(template.replace("{seed}", str(seed)))
    if p.is_dir():
        for cand in (p / rundir.EMBEDDING, p / "emb" / f"seed-{seed}" / rundir.EMBEDDING,
                     p / f"seed-{seed}" / rundir.EMBEDDING):
            if cand.is_file():
                return cand
        raise FileNotFoundError(
            f"no {rundir.EMBEDDING} in {p} (looked in {p}, {p}/emb/seed-{seed}, {p}/seed-{seed})"
        )
    return p


def build_criterion(
    mode: str, ds: ImageDataset, cfg: TrainConfig, seed: int
) -> nn.Module:
    """The loss module of ``mode``; every one is called ``criterion(logits, aux, target)``."""
    c = ds.num_classes
    if mode == "baseline":
        return LabelSmoothingLoss(0.0)
    if mode == "ls":
        return LabelSmoothingLoss(cfg.smoothing)
    if mode == "ols":
        return OnlineLabelSmoothingLoss(c, alpha=cfg.ols_alpha)
    if mode == "emb":
        return LabelEmbeddingLoss.from_preset(
            "classification", LabelEmbedding(c, class_names=ds.class_names)
        )
    if mode == "emb-fixed":
        assert cfg.embedding is not None
        path = _resolve_embedding_path(cfg.embedding, seed)
        emb = FixedLabelEmbedding.from_file(path)
        if emb.num_classes != c:
            raise ValueError(f"{path}: embedding has {emb.num_classes} classes, {ds.name} has {c}")
        if emb.class_names is not None and list(emb.class_names) != list(ds.class_names):
            raise ValueError(f"{path}: embedding class names {emb.class_names[:3]}... do not "
                             f"match {ds.name}'s {ds.class_names[:3]}...")
        return LabelEmbeddingLoss.from_preset("classification", emb)
    raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")


def expected_calibration_error(probs: Tensor, target: Tensor, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width confidence bins: ``sum_b n_b/N |acc_b - conf_b|``.

    Shape: probs ``(N, C)``, target ``(N,)``.
    """
    conf, pred = probs.max(1)
    correct = (pred == target).to(probs.dtype)
    # Bin b holds confidences in (b/n, (b+1)/n]; confidence is >= 1/C > 0.
    bins = (conf * n_bins).ceil().long().clamp(1, n_bins) - 1
    n = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device)
    n.index_add_(0, bins, torch.ones_like(conf))
    s_conf = torch.zeros_like(n).index_add_(0, bins, conf)
    s_acc = torch.zeros_like(n).index_add_(0, bins, correct)
    return float((s_acc - s_conf).abs().sum() / max(len(target), 1))


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, ds: ImageDataset, batch_size: int = 1000
) -> dict[str, float]:
    """Error, mean cross-entropy and ECE of the main head. The forward sees images only."""
    model.eval()
    probs, losses = [], []
    for i in range(0, len(y), batch_size):
        logits = _forward_logits(model, to_float(x[i:i + batch_size], ds.mean, ds.std)).float()
        losses.append(F.cross_entropy(logits, y[i:i + batch_size], reduction="sum"))
        probs.append(logits.softmax(1))
    # On the CPU: CUDA's index_add_ (inside the ECE) sums in a nondeterministic order.
    p, y = torch.cat(probs).cpu(), y.cpu()
    return {
        "error": float((p.argmax(1) != y).float().mean()),
        "loss": float(torch.stack(losses).sum().cpu() / len(y)),
        "ece": expected_calibration_error(p, y),
    }


def _forward_logits(model: nn.Module, x: Tensor) -> Tensor:
    logits, _ = model(x)
    return logits


# --------------------------------------------------------------------------- distributed


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def log(msg: str) -> None:
    """A log line from rank 0 only."""
    if _dist()[0] == 0:
        _log_line(msg)


@torch.no_grad()
def _check_ranks_agree(model: nn.Module, criterion: nn.Module, run_dir: Path) -> None:
    """Every rank must end with rank 0's weights, embedding and OLS soft labels: rank 0 alone
    writes the files, so a silent divergence would go unnoticed otherwise."""
    state = {**{f"model.{k}": v for k, v in model.state_dict().items()},
             **{f"criterion.{k}": v for k, v in criterion.state_dict().items()}}
    for k, v in state.items():
        if not v.is_floating_point() or k.endswith(("running_mean", "running_var")):
            continue  # BatchNorm statistics are rank 0's by DDP's buffer broadcast
        ref = v.clone()
        dist.broadcast(ref, 0)
        diverged = torch.tensor(float(not torch.equal(ref, v)), device=v.device)
        dist.all_reduce(diverged)
        if diverged.item():
            raise RuntimeError(f"{run_dir}: ranks disagree on {k} after training")


def _barrier() -> None:
    if _dist()[1] > 1:
        dist.barrier()


# --------------------------------------------------------------------------- one run


def _run_config(cfg: TrainConfig, ds: ImageDataset, mode: str, seed: int, n_params: int,
                device: torch.device) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    for k in ("modes", "seeds", "resume", "overwrite", "out", "summary", "device", "data_dir",
              "threads"):
        d.pop(k)
    return {
        "run_format": rundir.RUN_FORMAT, "labelemb_version": __version__,
        "task": "classification", **d, "mode": mode, "seed": seed,
        "dataset": ds.name, "data_source": ds.source, "num_classes": ds.num_classes,
        "class_names": list(ds.class_names), "in_channels": ds.in_channels,
        "image_size": ds.image_size, "train_size": len(ds.train_y),
        "dev_size": 0 if ds.dev_y is None else min(len(ds.dev_y), cfg.dev_subset or len(ds.dev_y)),
        "test_size": min(len(ds.test_y), cfg.test_subset or len(ds.test_y)),
        "parameters": n_params, "device": str(device), "world_size": _dist()[1],
        "torch_version": torch.__version__,
    }


def _check_resumable(old: dict[str, Any], new: dict[str, Any], run_dir: Path) -> None:
    diff = [k for k in _RESUME_KEYS if old.get(k) != new.get(k)]
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
        raise ValueError(f"{run_dir}: cannot resume with changed settings ({shown}); use "
                         "another --out or --overwrite")


def train_one(
    cfg: TrainConfig, ds: ImageDataset, mode: str, seed: int, run_dir: Path,
    device: torch.device,
) -> Path:
    """Train (or resume) one ``(mode, seed)`` run into ``run_dir``; returns ``run_dir``."""
    rank, world = _dist()
    is_main = rank == 0
    run_dir = Path(run_dir)
    ckpt_path = run_dir / rundir.CHECKPOINT
    resume_state = None
    if (run_dir / rundir.CONFIG).is_file():
        if cfg.resume and ckpt_path.is_file():
            resume_state = load_checkpoint(ckpt_path, map_location="cpu")
            if resume_state["epoch"] >= cfg.epochs and rundir.is_complete(run_dir):
                log(f"[{mode} seed {seed}] complete ({resume_state['epoch']} epochs), skipped")
                return run_dir
        elif cfg.overwrite or cfg.resume:
            pass  # started afresh below (--resume without a checkpoint: nothing to continue)
        else:
            raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or "
                             "--overwrite to start again")
    _barrier()
    if is_main and resume_state is None and run_dir.exists():
        for name in (rundir.CONFIG, rundir.METRICS, rundir.EMBEDDING, rundir.CHECKPOINT,
                     rundir.RESULT):
            (run_dir / name).unlink(missing_ok=True)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)

    # Same seed -> same backbone/main-head init and same data order in every mode.
    g = seed_everything(seed)
    model = build_model(cfg.model, ds.in_channels, ds.image_size, ds.num_classes,
                        aux=mode == "emb").to(device)
    criterion = build_criterion(mode, ds, cfg, seed).to(device)
    params = [p for p in list(model.parameters()) + list(criterion.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.lr_milestones, cfg.lr_gamma)
    n_params = sum(p.numel() for p in model.parameters())
    config = _run_config(cfg, ds, mode, seed, n_params, device)

    metrics = rundir.MetricsWriter(run_dir / rundir.METRICS)
    start = 0
    if resume_state is not None:
        _check_resumable(rundir.read_json(run_dir / rundir.CONFIG), config, run_dir)
        restore_training_state(resume_state, run_dir / rundir.CHECKPOINT, model, criterion,
                               optimizer)
        scheduler.load_state_dict(resume_state["scheduler"])
        set_rng_state(resume_state["rng"])
        g.set_state(resume_state["data_rng"])
        start = int(resume_state["epoch"])
        if is_main:
            (run_dir / rundir.RESULT).unlink(missing_ok=True)
            metrics.truncate_after(start)
            rundir.write_json(run_dir / rundir.CONFIG, config)
        log(f"[{mode} seed {seed}] resuming after epoch {start}")
    elif is_main:
        rundir.write_json(run_dir / rundir.CONFIG, config)
        metrics.truncate_after(0)

    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    test_n = min(len(ds.test_y), cfg.test_subset or len(ds.test_y))
    test_x, test_y = ds.test_x[:test_n], ds.test_y[:test_n]
    if ds.dev_y is not None:
        dev_n = min(len(ds.dev_y), cfg.dev_subset or len(ds.dev_y))
        dev_x, dev_y = ds.dev_x[:dev_n], ds.dev_y[:dev_n]
    record: dict[str, Any] = {}
    for epoch in range(start + 1, cfg.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        stats = _train_epoch(train_model, criterion, optimizer, ds, cfg, g, device,
                             desc=f"{mode} s{seed} e{epoch}")
        if isinstance(criterion, OnlineLabelSmoothingLoss):
            criterion.next_epoch()  # once per epoch, after the last batch (syncs ranks)
        scheduler.step()
        test = evaluate(model, test_x, test_y, ds, cfg.eval_batch_size)
        dev = (evaluate(model, dev_x, dev_y, ds, cfg.eval_batch_size)
               if ds.dev_y is not None else None)
        record = {
            "epoch": epoch, "train_loss": stats["loss"], "terms": stats["terms"],
            "train_error": stats["error"], "dev_error": dev["error"] if dev else None,
            "test_error": test["error"], "test_loss": test["loss"], "test_ece": test["ece"],
            "seconds": stats["seconds"], "lr": lr,
        }
        if is_main:
            # metrics first, checkpoint last: a kill in between is undone by truncate_after.
            metrics.write(record)
            if mode == "emb":
                save_embedding(criterion.embedding, run_dir / rundir.EMBEDDING,
                               class_names=ds.class_names)
            save_checkpoint({
                "model": model.state_dict(), "criterion": criterion.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch, "rng": rng_state(), "data_rng": g.get_state(),
                "mode": mode, "seed": seed,
            }, ckpt_path)
        dev_txt = f" dev {100 * dev['error']:.2f}%" if dev else ""
        log(f"[{mode} seed {seed}] epoch {epoch}/{cfg.epochs} loss {stats['loss']:.4f} "
            f"train {100 * stats['error']:.2f}%{dev_txt} test {100 * test['error']:.2f}% "
            f"({stats['seconds']:.1f}s)")
        _barrier()

    if world > 1:
        _check_ranks_agree(model, criterion, run_dir)
    if is_main:
        history = rundir.read_metrics(run_dir / rundir.METRICS)
        final = history[-1] if history else record
        rundir.write_json(run_dir / rundir.RESULT, {
            "epochs": final.get("epoch", cfg.epochs), "test_error": final.get("test_error"),
            "dev_error": final.get("dev_error"), "test_loss": final.get("test_loss"),
            "test_ece": final.get("test_ece"), "train_error": final.get("train_error"),
            "seconds_per_epoch": (sum(r["seconds"] for r in history) / len(history)
                                  if history else None),
            "parameters": n_params,
        })
    _barrier()
    return run_dir


def _train_epoch(
    model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
    ds: ImageDataset, cfg: TrainConfig, g: torch.Generator, device: torch.device, desc: str,
) -> dict[str, Any]:
    rank, world = _dist()
    model.train()
    criterion.train()
    n = len(ds.train_y)
    bs = cfg.batch_size
    # The data order (and every crop and flip) comes from g alone: same on every rank,
    # restored exactly on resume.
    order = torch.randperm(n, generator=g)
    n_batches = math.ceil(n / bs)
    if n_batches > 1 and n - (n_batches - 1) * bs < max(2, world):
        n_batches -= 1  # a last batch too small for BatchNorm / for every rank is dropped
    sync = device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    total_loss = torch.zeros((), device=device)
    wrong = torch.zeros((), device=device)
    term_sums: dict[str, Tensor] = {}
    seen = 0
    trainable_crit = [p for p in criterion.parameters() if p.requires_grad]
    batches = progress(range(n_batches), total=n_batches, desc=desc) if rank == 0 \
        else range(n_batches)
    for b in batches:
        idx = order[b * bs:(b + 1) * bs]
        x = ds.train_x[idx.to(ds.train_x.device)]
        if cfg.augment:
            x = random_crop_flip(x, g)  # drawn for the whole batch on every rank
        y = ds.train_y[idx.to(ds.train_y.device)]
        if world > 1:  # each rank takes its shard of the (identical) global batch
            x, y = x[rank::world], y[rank::world]
        x = to_float(x.to(device, non_blocking=True), ds.mean, ds.std)
        y = y.to(device, non_blocking=True)
        logits, aux_logits = model(x)
        loss, terms = criterion(logits, aux_logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1 and trainable_crit:
            # The embedding lives in the criterion, outside DDP: average its gradients too.
            for p in trainable_crit:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= world
        optimizer.step()
        m = len(y)
        seen += m
        total_loss += loss.detach() * m
        wrong += (logits.detach().argmax(1) != y).sum()
        for k, v in terms.items():
            term_sums[k] = term_sums.get(k, torch.zeros((), device=device)) + v.detach() * m
    if sync:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if world > 1:
        packed = torch.stack([total_loss, wrong, torch.tensor(float(seen), device=device),
                              *[term_sums[k] for k in sorted(term_sums)]])
        dist.all_reduce(packed)
        total_loss, wrong, seen_t = packed[0], packed[1], packed[2]
        seen = int(seen_t.item())
        term_sums = {k: packed[3 + i] for i, k in enumerate(sorted(term_sums))}
    seen = max(seen, 1)
    return {
        "loss": float(total_loss) / seen,
        "error": float(wrong) / seen,
        "terms": {k: float(v) / seen for k, v in term_sums.items()},
        "seconds": seconds,
    }


# --------------------------------------------------------------------------- many runs


def _pick_device(name: str | None) -> torch.device:
    rank, world = _dist()
    if name:
        dev = torch.device(name)
    else:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and dev.index is None and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return dev


def run_training(
    config: "TrainConfig | argparse.Namespace | dict", dataset: ImageDataset | None = None
) -> list[Path]:
    """Train every ``(mode, seed)`` of ``config``; returns their run directories.

    Writes ``OUT/<mode>/seed-<k>/`` per run and, after all runs, ``OUT/summary.md`` (the
    report's result table over every run in ``OUT``) which is also printed. ``dataset``: an already loaded
    :class:`~labelemb.data.registry.ImageDataset` to use instead of ``config.dataset``
    (it is not modified).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    started_dist = _maybe_init_distributed(config)
    try:
        return _run_training(config, dataset)
    finally:
        if started_dist:
            dist.destroy_process_group()


def _maybe_init_distributed(config: Any) -> bool:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1) join the process group: NCCL on CUDA, else gloo."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() \
            or dist.is_initialized():
        return False
    device = (config.get("device") if isinstance(config, dict)
              else getattr(config, "device", None)) or ""
    cuda = torch.cuda.is_available() and not str(device).startswith("cpu")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def _run_training(config: Any, dataset: ImageDataset | None) -> list[Path]:
    cfg = TrainConfig.from_any(config)
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise ValueError(f"threads must be >= 1, got {cfg.threads!r}")
        torch.set_num_threads(cfg.threads)
    ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir,
                                                          cfg.cifar100_labels)
    cfg = cfg.resolved(ds)
    ds = dataclasses.replace(ds.subset_train(cfg.train_subset))
    device = _pick_device(cfg.device)
    rank, world = _dist()
    # Keep the whole dataset on the device: batches are then one index away.
    for name in ("train_x", "train_y", "dev_x", "dev_y", "test_x", "test_y"):
        t = getattr(ds, name)
        if t is not None:
            setattr(ds, name, t.to(device))
    out = Path(cfg.out)
    dev_n = 0 if ds.dev_y is None else min(len(ds.dev_y), cfg.dev_subset or len(ds.dev_y))
    log(f"{ds.name} ({ds.source}): train {len(ds.train_y)}, dev {dev_n}, test "
        f"{min(len(ds.test_y), cfg.test_subset or len(ds.test_y))}; model {cfg.model}; "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}"
        f"{' x' + str(cfg.lr_gamma) + ' at ' + str(cfg.lr_milestones) if cfg.lr_milestones else ''}"
        f"{', crop+flip' if cfg.augment else ''}; device {device}"
        f"{f', {world} ranks' if world > 1 else ''}; out {out}")
    run_dirs = []
    for seed in cfg.seeds:
        for mode in cfg.modes:
            run_dirs.append(train_one(cfg, ds, mode, seed, out / mode / f"seed-{seed}", device))
    if cfg.summary and rank == 0:
        # Every finished run under OUT, so a later call (e.g. emb-fixed) is compared with the
        # baseline trained earlier into the same folder.
        text = build_table(sorted(set(run_dirs) | set(rundir.iter_run_dirs(out))))
        atomic_write_text(out / "summary.md", text + "\n")
        print(text, flush=True)
    return run_dirs
