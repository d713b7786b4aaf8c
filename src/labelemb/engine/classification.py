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

:func:`run_training` is ``labelemb train`` less the printed summary table (the command
writes that: the engine never imports :mod:`labelemb.report`); it returns the run directories
(``OUT/<mode>/seed-<k>/``, laid out as :mod:`labelemb.runs.rundir` says). What each mode
needs (auxiliary head, criterion, saved embedding, epoch hook) is one row of :data:`MODES`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .. import __version__
from ..baselines import LabelSmoothingLoss, OnlineLabelSmoothingLoss
from ..calibration import calibration_metrics, expected_calibration_error, fit_temperature
from ..data.registry import DATASETS, ImageDataset, find_data_dir, load_dataset, search_dirs
from ..data.transforms import random_crop_flip, to_float
from ..embedding import FixedLabelEmbedding, LabelEmbedding, save_embedding
from ..functional import term_divisors, trains_embedding
from ..loss import PRESETS, LabelEmbeddingLoss
from ..normalizers import Normalizers
from ..models.classifier import MODELS, build_model
from ..runs import rundir
from ..runs.checkpoint import restore_training_state, rng_state, save_checkpoint, set_rng_state
from ..runs.rundir import RunDir
from ..runs.settings import check_ranges, may_change_on_resume, setting
from ..runs.progress import log, progress
from ..runs.ranks import (barrier, check_ranks_agree, is_main_process, rank_and_world,
                          sum_gradients)
from ..runs.seed import seed_everything
from .device import device_of_rank, join_torchrun
from .optim import adam

__all__ = [
    "MODES", "Mode", "RECIPES", "TrainConfig", "run_training", "train_one", "evaluate",
    "evaluate", "calibrate", "predict_logits", "build_criterion", "parse_seeds", "parse_modes",
    "parse_int_list", "data_parallel", "backward_step",
]

#: The paper's recipes, as the authors' code runs them (docs/TRAINING.md). Adam without
#: weight decay in every case.
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": dict(epochs=15, batch_size=100, lr=1e-3, lr_milestones=[], augment=False),
    "cifar10": dict(epochs=100, batch_size=128, lr=1e-3, lr_milestones=[], augment=True),
    "cifar100": dict(epochs=100, batch_size=128, lr=1e-3, lr_milestones=[40, 80], augment=True),
}


# --------------------------------------------------------------------------- modes


# The criterion builders of MODES: (dataset, config, seed) -> loss module.
def _label_smoothing(ds: ImageDataset, cfg: "TrainConfig", seed: int) -> nn.Module:
    return LabelSmoothingLoss(cfg.smoothing)


def _online_label_smoothing(ds: ImageDataset, cfg: "TrainConfig", seed: int) -> nn.Module:
    return OnlineLabelSmoothingLoss(ds.num_classes, alpha=cfg.ols_alpha)


def _label_embedding(ds: ImageDataset, cfg: "TrainConfig", seed: int) -> nn.Module:
    return LabelEmbeddingLoss.from_preset(
        "classification", LabelEmbedding(ds.num_classes, class_names=ds.class_names),
        **_loss_options(cfg))


def _fixed_label_embedding(ds: ImageDataset, cfg: "TrainConfig", seed: int) -> nn.Module:
    return LabelEmbeddingLoss.from_preset("classification", load_fixed_embedding(ds, cfg, seed),
                                          **_loss_options(cfg))


#: The loss options ``labelemb train`` exposes as flags (the rest keep the preset's values).
LOSS_FLAGS = ("beta", "tau", "alpha", "hinge", "warmup_steps", "soft_target_temperature")


def _preset_text(option: str) -> str:
    return f"{getattr(PRESETS['classification'], option)}, the classification preset"


def _loss_options(cfg: "TrainConfig") -> dict[str, Any]:
    """The loss options set on the command line; the others keep the preset's values."""
    return {k: getattr(cfg, k) for k in LOSS_FLAGS if getattr(cfg, k) is not None}


@dataclass(frozen=True)
class Mode:
    """What one training mode needs; every difference between modes is a field here."""

    criterion: Callable[[ImageDataset, "TrainConfig", int], nn.Module]
    aux_head: bool = False  # the model has the second output layer (W2 h.detach())
    saves_embedding: bool = False  # write embedding.safetensors after every epoch
    epoch_hook: Callable[[nn.Module], None] | None = None  # called on the criterion per epoch
    needs_embedding_file: bool = False  # --embedding PATH of an earlier emb run
    uses_loss_options: bool = False  # the criterion takes LOSS_FLAGS (--tau, --beta, ...)
    help: str = ""


MODES: dict[str, Mode] = {
    "baseline": Mode(lambda ds, cfg, seed: LabelSmoothingLoss(0.0),
                     help="cross-entropy on the main head"),
    "emb": Mode(_label_embedding, aux_head=True, saves_embedding=True, uses_loss_options=True,
                help="label embedding network, trainable embedding, two output layers"),
    "emb-fixed": Mode(_fixed_label_embedding, needs_embedding_file=True, uses_loss_options=True,
                      help="frozen embedding of an earlier emb run (eq. 17), no aux head"),
    "ls": Mode(_label_smoothing, help="label smoothing (--smoothing)"),
    # OLS swaps in the soft labels it gathered once per epoch, after the last batch.
    "ols": Mode(_online_label_smoothing, epoch_hook=lambda c: c.next_epoch(),
                help="online label smoothing (--ols-alpha)"),
}


def parse_modes(text: str | list[str]) -> list[str]:
    """``"baseline,emb"`` -> ``["baseline", "emb"]``, each checked against :data:`MODES`."""
    modes = ([m.strip() for m in text.split(",") if m.strip()] if isinstance(text, str)
             else list(text))
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"--modes: unknown mode(s) {bad or text!r}; choose from "
                         f"{', '.join(MODES)}")
    return modes


def parse_int_list(text: str) -> list[int]:
    """``"40,80"`` -> ``[40, 80]``; ``"none"`` or ``""`` -> ``[]``."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated epochs, got {text!r}") from None


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


def _default_models_text() -> str:
    """Each dataset's backbone for ``--model``'s help, from the registry (own data: the
    ImageDataset default)."""
    by_model: dict[str, list[str]] = {}
    for name, spec in DATASETS.items():
        by_model.setdefault(spec.default_model, []).append(name)
    own = next(f.default for f in dataclasses.fields(ImageDataset) if f.name == "default_model")
    by_model.setdefault(own, []).append("own data")
    return "; ".join(f"{model} for {', '.join(names)}" for model, names in by_model.items())


def _recipes_text() -> str:
    """The recipes in one line, for ``--epochs``'s help."""
    return "; ".join(
        f"{k}: {v['epochs']} epochs, batch {v['batch_size']}, lr {v['lr']}"
        + (f" x--lr-gamma at {v['lr_milestones']}" if v["lr_milestones"] else "")
        + (", crop+flip" if v["augment"] else "") for k, v in RECIPES.items())


@dataclass
class TrainConfig:
    """Every setting of ``labelemb train``, declared once: the command's flags are generated
    from these fields. ``None`` means "the dataset's recipe"."""

    dataset: str = setting(
        "fashion-mnist", f"{', '.join(DATASETS)}, a folder of class folders, or an .npz with x "
        "and y", flags=("--dataset", "-d"))
    model: str | None = setting(
        None, "backbone", flags=("--model", "-m"), choices=sorted(MODELS),
        default_text=_default_models_text())
    # --mode is the authors' spelling (cnn.py --mode=emb): one mode, or a list as --modes.
    modes: list[str] = setting(["baseline", "emb"], f"comma-separated, from {', '.join(MODES)}",
                               flags=("--modes", "--mode"), parse=parse_modes)
    seeds: list[int] = setting([0], "e.g. 0-19 or 0,3,5", parse=parse_seeds)
    epochs: int | None = setting(None, "training epochs", default_text=f"the recipe "
                                 f"({_recipes_text()})", on_resume=True, at_least=1)
    batch_size: int | None = setting(None, "images per update", default_text="the recipe",
                                     at_least=1)
    accumulate: int = setting(
        1, "split each batch into N micro-batches (gradient accumulation): the same update in "
        "about 1/N of the activation memory", on_resume=True, at_least=1)
    lr: float | None = setting(None, "Adam learning rate", default_text="the recipe", above=0)
    lr_milestones: list[int] | None = setting(
        None, "epochs after which the lr is multiplied by --lr-gamma, e.g. 40,80 or none",
        parse=parse_int_list, default_text="the recipe")
    lr_gamma: float = setting(0.2, "lr factor at each milestone", above=0)
    augment: bool | None = setting(None, "random crop (pad 4) + horizontal flip",
                                   default_text="on for " + ", ".join(
                                       k for k, v in RECIPES.items() if v["augment"]))
    train_subset: int | None = setting(None, "train on the first N training images only",
                                       at_least=1)
    test_subset: int | None = setting(None, "evaluate on the first N test images only",
                                      at_least=1)
    dev_subset: int | None = setting(None, "evaluate on the first N dev images only",
                                     at_least=1)
    held_out: int | None = setting(
        None, "for a dataset without a dev split: hold out the last N training images as one "
        "(best-dev epoch, temperature scaling); 0 trains on all and skips calibration",
        default_text="10%% of train, at most 5,000", at_least=0)
    out: str | None = setting(None, "output folder, one OUT/<mode>/seed-<k>/ per run",
                              flags=("--out", "-o"), default_text="runs/<dataset>-<model>",
                              on_resume=True)
    data_dir: str | None = setting(
        None, "folder that holds the dataset; an error if it does not", on_resume=True,
        default_text="search $LABELEMB_DATA, ~/.cache/labelemb/<name>, /usr/share/datasets/<name>")
    device: str | None = setting(None, "cpu, cuda, cuda:1", default_text="cuda if available",
                                 on_resume=True)
    resume: bool = setting(False, "continue runs from their checkpoint.pt (settings must be "
                           "unchanged; a larger --epochs extends finished runs)", on_resume=True)
    overwrite: bool = setting(False, "delete existing runs in OUT and start them again",
                              on_resume=True)
    embedding: str | None = setting(
        None, "emb-fixed: embedding.safetensors of an earlier emb run; may contain {seed}, "
        "or name that run's OUT folder (uses OUT/emb/seed-<k>/)")
    smoothing: float = setting(0.1, "ls: label smoothing epsilon", at_least=0,
                               below=1)
    ols_alpha: float = setting(0.5, "ols: weight of the hard cross-entropy",
                               at_least=0, at_most=1)
    # The loss options of emb and emb-fixed; None keeps the classification preset's value.
    beta: float | None = setting(None, "emb: weight of the hard ce term (soft_ce gets 1 - beta)",
                                 default_text=_preset_text("beta"), at_least=0, at_most=1)
    tau: float | None = setting(None, "emb: temperature of the second head's output that the "
                                "embedding fits", default_text=_preset_text("tau"), above=0)
    alpha: float | None = setting(None, "emb: hinge threshold on the second head's gold "
                                  "probability", default_text=_preset_text("alpha"),
                                  at_least=0, at_most=1)
    hinge: str | None = setting(None, "emb: hinge form", choices=("l1", "l2", "abs"),
                                default_text=_preset_text("hinge"))
    warmup_steps: int | None = setting(None, "emb: updates before the soft target counts",
                                       default_text=_preset_text("warmup_steps"), at_least=0)
    soft_target_temperature: float | None = setting(
        None, "emb: the main head's soft target is softmax(e / T); below 1 sharpens it",
        default_text=_preset_text("soft_target_temperature"), above=0)
    eval_batch_size: int = setting(1000, "images per evaluation batch", on_resume=True,
                                   at_least=1)
    threads: int | None = setting(
        None, "CPU threads for torch; 1 is much faster on a machine shared with other jobs. "
        "Results are bit-identical only for the same thread count", on_resume=True,
        default_text="torch's choice", at_least=1)
    cifar100_labels: str = setting("fine", "CIFAR-100 label set", choices=("fine", "coarse"))

    @classmethod
    def from_any(cls, obj: "TrainConfig | argparse.Namespace | dict") -> "TrainConfig":
        """A copy of ``obj``: a config, the parsed flags, or a dict (unknown keys refused)."""
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
        c.modes = parse_modes(c.modes)
        c.seeds = [int(s) for s in c.seeds]
        c.lr_milestones = [int(m) for m in c.lr_milestones]
        _check_config(c)
        return c

    def run_settings(self, mode: str, seed: int) -> dict[str, Any]:
        """The settings of one ``(mode, seed)`` run, as ``config.json`` records them."""
        d = dataclasses.asdict(self)
        del d["modes"], d["seeds"]
        return {**d, "mode": mode, "seed": seed}


def _check_config(c: TrainConfig) -> None:
    """Refuse settings no run can use, naming the flag (before any file is written)."""
    if c.model not in MODELS:
        raise ValueError(f"--model: unknown model {c.model!r}; choose from {sorted(MODELS)}")
    if not c.seeds:
        raise ValueError("--seeds must not be empty")
    check_ranges(c)  # every number against the range its field declares
    if any(MODES[m].needs_embedding_file for m in c.modes) and not c.embedding:
        raise ValueError(
            "mode emb-fixed needs --embedding PATH: an embedding.safetensors from an earlier "
            "emb run (PATH may contain {seed}), or that run's output folder"
        )


# --------------------------------------------------------------------------- pieces


def _resolve_embedding_path(template: str, seed: int) -> Path:
    p = Path(template.replace("{seed}", str(seed)))
    if p.is_dir():
        for cand in (p / rundir.EMBEDDING, p / "emb" / f"seed-{seed}" / rundir.EMBEDDING,
                     p / f"seed-{seed}" / rundir.EMBEDDING):
            if cand.is_file():
                return cand
        raise FileNotFoundError(
            f"--embedding: no {rundir.EMBEDDING} in {p} (looked in {p}, {p}/emb/seed-{seed}, "
            f"{p}/seed-{seed})"
        )
    if not p.is_file():
        raise FileNotFoundError(f"--embedding: no file {p}; give an earlier emb run's "
                                f"{rundir.EMBEDDING} or its output folder")
    return p


def load_fixed_embedding(ds: ImageDataset, cfg: TrainConfig, seed: int) -> FixedLabelEmbedding:
    """The frozen embedding ``emb-fixed`` uses for ``seed``, checked against the dataset: its
    class count and names must match (:func:`~labelemb.embedding.load_embedding` refuses a
    damaged file or non-finite values)."""
    assert cfg.embedding is not None
    path = _resolve_embedding_path(cfg.embedding, seed)
    emb = FixedLabelEmbedding.from_file(path)
    if emb.num_classes != ds.num_classes:
        raise ValueError(f"--embedding {path}: embedding has {emb.num_classes} classes, "
                         f"{ds.name} has {ds.num_classes}")
    if emb.class_names is not None and list(emb.class_names) != list(ds.class_names):
        raise ValueError(f"--embedding {path}: embedding class names {emb.class_names[:3]}... "
                         f"do not match {ds.name}'s {ds.class_names[:3]}...")
    return emb


def build_criterion(
    mode: str, ds: ImageDataset, cfg: TrainConfig, seed: int
) -> nn.Module:
    """The loss module of ``mode``; every one is called ``criterion(logits, aux, target)``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    return MODES[mode].criterion(ds, cfg, seed)


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, ds: ImageDataset,
                   batch_size: int = 1000) -> Tensor:
    """The main head's float32 logits ``(N, C)`` on the CPU for images ``x``, in eval mode.
    The forward sees images only. On the CPU because CUDA's scatter-adds (in the calibration
    measures) sum in a nondeterministic order."""
    model.eval()
    return torch.cat([_forward_logits(model, to_float(x[i:i + batch_size], ds.mean, ds.std))
                      .float().cpu() for i in range(0, len(x), batch_size)])


def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, ds: ImageDataset, batch_size: int = 1000
) -> dict[str, float]:
    """Error, mean cross-entropy and ECE of the main head."""
    logits, y = predict_logits(model, x, ds, batch_size), y.cpu()
    return {
        "error": float((logits.argmax(1) != y).float().mean()),
        "loss": float(F.cross_entropy(logits, y)),
        "ece": expected_calibration_error(logits.softmax(1), y),
    }


def calibrate(model: nn.Module, held_out: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
              ds: ImageDataset, batch_size: int = 1000) -> dict[str, Any]:
    """Temperature scaling of the main head fitted on ``held_out`` (images, labels), and the
    test set's calibration measures and reliability bins before and after it."""
    fit_logits = predict_logits(model, held_out[0], ds, batch_size)
    temperature = fit_temperature(fit_logits, held_out[1].cpu())
    logits, y = predict_logits(model, test[0], ds, batch_size), test[1].cpu()
    out: dict[str, Any] = {"temperature": temperature}
    for name, t in (("raw", 1.0), ("calibrated", temperature)):
        out[name] = calibration_metrics(logits, y, temperature=t, bins=True)
    return out


def _forward_logits(model: nn.Module, x: Tensor) -> Tensor:
    logits, _ = model(x)
    return logits


# --------------------------------------------------------------------------- one run


def _run_config(cfg: TrainConfig, ds: ImageDataset, mode: str, seed: int, n_params: int,
                device: torch.device) -> dict[str, Any]:
    """``config.json`` of one run: its ``settings``, flat copies of the settings reports read,
    and what the data and machine were."""
    settings = cfg.run_settings(mode, seed)
    splits = _eval_splits(ds, cfg)
    flat = {k: v for k, v in settings.items()
            if k not in ("resume", "overwrite", "out", "device", "data_dir", "threads")}
    return {
        "run_format": rundir.RUN_FORMAT, "labelemb_version": __version__,
        "task": "classification", **flat, "settings": settings,
        # what reports name a variant by: "emb tau=1" is not the preset's emb
        "loss_options": _loss_options(cfg) if MODES[mode].uses_loss_options else {},
        "dataset": ds.name, "data_source": ds.source, "num_classes": ds.num_classes,
        "class_names": list(ds.class_names), "in_channels": ds.in_channels,
        "image_size": ds.image_size, "train_size": len(ds.train_y),
        "dev_size": len(splits["dev"][1]) if "dev" in splits else 0,
        "test_size": len(splits["test"][1]),
        "parameters": n_params, "device": str(device), "world_size": rank_and_world()[1],
        "torch_version": torch.__version__,
    }


@dataclass
class _Training:
    """The objects one run trains: built fresh, then restored from a checkpoint on resume."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    data_rng: torch.Generator
    n_params: int

    def state(self, epoch: int, mode: str, seed: int) -> dict[str, Any]:
        """The checkpoint after ``epoch``: everything an exact resume needs."""
        return {
            "model": self.model.state_dict(), "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "epoch": epoch, "rng": rng_state(), "data_rng": self.data_rng.get_state(),
            "mode": mode, "seed": seed,
        }

    def restore(self, state: dict[str, Any], source: Path) -> int:
        """Load a checkpoint's state; returns the number of epochs it had done."""
        restore_training_state(state, source, self.model, self.criterion, self.optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.data_rng.set_state(state["data_rng"])
        return int(state["epoch"])


def _build(cfg: TrainConfig, ds: ImageDataset, mode: str, seed: int,
           device: torch.device) -> _Training:
    # Same seed -> same backbone/main-head init and same data order in every mode.
    g = seed_everything(seed)
    model = build_model(cfg.model, ds.in_channels, ds.image_size, ds.num_classes,
                        aux=MODES[mode].aux_head).to(device)
    criterion = build_criterion(mode, ds, cfg, seed).to(device)
    params = [p for p in list(model.parameters()) + list(criterion.parameters()) if p.requires_grad]
    optimizer = adam(params, cfg.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.lr_milestones, cfg.lr_gamma)
    return _Training(model, criterion, optimizer, scheduler, g,
                     sum(p.numel() for p in model.parameters()))


def _eval_splits(ds: ImageDataset, cfg: TrainConfig) -> dict[str, tuple[Tensor, Tensor]]:
    """The test split and, where the dataset has one, the dev split, cut to their subsets."""
    splits = {}
    for name, x, y, subset in (("test", ds.test_x, ds.test_y, cfg.test_subset),
                               ("dev", ds.dev_x, ds.dev_y, cfg.dev_subset)):
        if y is not None:
            n = min(len(y), subset or len(y))
            splits[name] = (x[:n], y[:n])
    return splits


def train_one(
    cfg: TrainConfig, ds: ImageDataset, mode: str, seed: int, run_dir: Path,
    device: torch.device,
) -> Path:
    """Train (or resume) one ``(mode, seed)`` run into ``run_dir``; returns ``run_dir``."""
    is_main = is_main_process()
    run = RunDir.open(run_dir, cfg.run_settings(mode, seed),
                      may_change=may_change_on_resume(TrainConfig), resume=cfg.resume,
                      overwrite=cfg.overwrite, writer=is_main)
    if run.resumed and run.checkpoint["epoch"] >= cfg.epochs and rundir.is_complete(run.path):
        log(f"[{mode} seed {seed}] complete ({run.checkpoint['epoch']} epochs), skipped")
        return run.path
    barrier()
    # Built (and an emb-fixed embedding checked) before the folder is touched.
    t = _build(cfg, ds, mode, seed, device)
    run.start(_run_config(cfg, ds, mode, seed, t.n_params, device))
    metrics = rundir.MetricsWriter(run / rundir.METRICS)
    start = 0
    if run.resumed:
        start = t.restore(run.checkpoint, run / rundir.CHECKPOINT)
        log(f"[{mode} seed {seed}] resuming after epoch {start}")
    if is_main:
        metrics.truncate_after(start)  # records a kill left after the checkpoint are redone
    _train_epochs(cfg, ds, mode, seed, run, t, start, device)
    if rank_and_world()[1] > 1:
        check_ranks_agree({"model": t.model, "criterion": t.criterion}, run.path)
    if is_main:
        splits = _eval_splits(ds, cfg)
        # Fitted on the dev split, never on test; without one (--held-out 0) no calibration.
        calibration = (calibrate(t.model, splits["dev"], splits["test"], ds, cfg.eval_batch_size)
                       if "dev" in splits else None)
        _write_result(run.path, t.n_params, calibration)
    barrier()
    return run.path


def _train_epochs(cfg: TrainConfig, ds: ImageDataset, mode: str, seed: int, run: RunDir,
                  t: _Training, start: int, device: torch.device) -> None:
    """Epochs ``start + 1 .. cfg.epochs``: train, evaluate, log, checkpoint."""
    train_model = data_parallel(t.model, device)
    splits = _eval_splits(ds, cfg)
    metrics = rundir.MetricsWriter(run / rundir.METRICS)
    hook = MODES[mode].epoch_hook
    for epoch in range(start + 1, cfg.epochs + 1):
        lr = t.optimizer.param_groups[0]["lr"]
        stats = _train_epoch(train_model, t.criterion, t.optimizer, ds, cfg, t.data_rng, device,
                             desc=f"{mode} s{seed} e{epoch}")
        if hook is not None:
            hook(t.criterion)  # after the last batch of the epoch (syncs ranks)
        t.scheduler.step()
        scores = {k: evaluate(t.model, x, y, ds, cfg.eval_batch_size) for k, (x, y) in splits.items()}
        dev, test = scores.get("dev"), scores["test"]
        record = {
            "epoch": epoch, "train_loss": stats["loss"], "terms": stats["terms"],
            "train_error": stats["error"], "dev_error": dev["error"] if dev else None,
            "test_error": test["error"], "test_loss": test["loss"], "test_ece": test["ece"],
            "seconds": stats["seconds"], "lr": lr,
        }
        if run.writer:
            # metrics first, checkpoint last: a kill in between is undone by truncate_after.
            metrics.write(record)
            if MODES[mode].saves_embedding:
                save_embedding(t.criterion.embedding, run / rundir.EMBEDDING,
                               class_names=ds.class_names)
            save_checkpoint(t.state(epoch, mode, seed), run / rundir.CHECKPOINT)
        dev_txt = f" dev {100 * dev['error']:.2f}%" if dev else ""
        log(f"[{mode} seed {seed}] epoch {epoch}/{cfg.epochs} loss {stats['loss']:.4f} "
            f"train {100 * stats['error']:.2f}%{dev_txt} test {100 * test['error']:.2f}% "
            f"({stats['seconds']:.1f}s)")
        barrier()


def _write_result(run_dir: Path, n_params: int, calibration: dict[str, Any] | None) -> None:
    """``result.json`` from the whole metrics log (resumed runs included) and the final
    model's calibration on the test set (:func:`calibrate`): the run is done."""
    history = rundir.read_metrics(run_dir / rundir.METRICS)
    final = history[-1]
    rundir.write_json(run_dir / rundir.RESULT, {
        "epochs": final["epoch"], "test_error": final["test_error"],
        "dev_error": final["dev_error"], "test_loss": final["test_loss"],
        "test_ece": final["test_ece"], "train_error": final["train_error"],
        "seconds_per_epoch": sum(r["seconds"] for r in history) / len(history),
        "parameters": n_params, "calibration": calibration,
    })


def _train_epoch(
    model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
    ds: ImageDataset, cfg: TrainConfig, g: torch.Generator, device: torch.device, desc: str,
) -> dict[str, Any]:
    rank, world = rank_and_world()
    model.train()
    criterion.train()
    n = len(ds.train_y)
    bs = cfg.batch_size
    # The data order (and every crop and flip) comes from g alone: same on every rank,
    # restored exactly on resume.
    order = torch.randperm(n, generator=g)
    n_batches = math.ceil(n / bs)
    if n_batches > 1 and n - (n_batches - 1) * bs < max(2, world * cfg.accumulate):
        n_batches -= 1  # a last batch too small for BatchNorm / for every part is dropped
    sync = device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    sums: dict[str, Tensor] = {}
    batches = progress(range(n_batches), total=n_batches, desc=desc)
    for b in batches:
        idx = order[b * bs:(b + 1) * bs]
        x = ds.train_x[idx.to(ds.train_x.device)]
        if cfg.augment:
            x = random_crop_flip(x, g)  # drawn for the whole batch on every rank
        y = ds.train_y[idx.to(ds.train_y.device)]
        x = to_float(x.to(device, non_blocking=True), ds.mean, ds.std)
        optimizer.zero_grad(set_to_none=True)
        stats = backward_step(model, criterion, x, y.to(device, non_blocking=True), cfg.accumulate)
        optimizer.step()
        for k, v in stats.items():  # this rank's shares, times the batch size
            sums[k] = sums.get(k, torch.zeros((), device=device)) + v * len(y)
    if sync:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if world > 1:  # the ranks' shares sum to the batches' values
        packed = torch.stack(list(sums.values()))  # the same keys, in order, on every rank
        dist.all_reduce(packed)
        sums = dict(zip(sums, packed))
    seen = max(float(sums.pop("images")), 1.0)
    return {
        "loss": float(sums.pop("loss")) / seen,
        "error": float(sums.pop("error")) / seen,
        "terms": {k: float(v) / seen for k, v in sums.items()},
        "seconds": seconds,
    }


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` for training on this process's ranks: itself alone, else wrapped in DDP.

    Each rank's loss is its share of the global batch's loss (the whole batch's counts,
    :mod:`labelemb.normalizers`), so the global gradient is the SUM of the ranks' gradients.
    DDP averages (divides by the world size); the hook here sums instead. This is the one
    place that decides it; :func:`backward_step` sums the criterion's gradients likewise.
    """
    if rank_and_world()[1] == 1:
        return model
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    ddp.register_comm_hook(None, _sum_hook)
    return ddp


def _sum_hook(state, bucket):  # type: ignore[no-untyped-def]
    """DDP's all-reduce of one ``dist.GradBucket``, summed and not divided by the world size.
    (Unannotated: DDP checks the annotations, and here they would be strings.)"""
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(
        lambda fut: fut.value()[0])


def backward_step(model: nn.Module, criterion: nn.Module, x: Tensor, y: Tensor,
                  accumulate: int = 1) -> dict[str, Tensor]:
    """The gradients of one global batch ``(x, y)`` (the same on every rank), summed into
    ``.grad``: this rank's shard ``[rank::world]``, in ``accumulate`` micro-batches.

    Every part divides by the whole batch's counts (:class:`~labelemb.normalizers.Normalizers`):
    ``n_valid`` is the batch size (images always have a label); ``n_correct``, known only
    after every part's forward, is deferred: ``embedding_ce`` reaches only the embedding, whose
    summed gradient is divided once at the end. So the update equals one batch's for any world
    size and ``accumulate`` (to float rounding; BatchNorm statistics are per part).

    Returns this rank's shares (they sum over ranks to the batch's): ``loss``, the terms,
    ``error`` (wrong predictions / batch size) and ``images`` (shard size / batch size).
    """
    rank, world = rank_and_world()
    parts = list(zip(x[rank::world].tensor_split(accumulate),
                     y[rank::world].tensor_split(accumulate)))
    whole = None if world * accumulate == 1 else Normalizers(len(y))
    deferred = whole is not None and isinstance(criterion, LabelEmbeddingLoss) \
        and criterion.embedding.trainable
    shares: dict[str, Tensor] = {}
    n_correct = torch.zeros((), dtype=torch.long, device=y.device)
    # The warm-up clock counts updates: every micro-batch of this one reads the same value.
    clock = getattr(criterion, "num_updates", None)
    start = None if clock is None else clock.clone()
    for i, (xm, ym) in enumerate(parts):
        if start is not None:
            clock.copy_(start)
        last = i == len(parts) - 1
        with contextlib.nullcontext() if last or world == 1 else model.no_sync():
            logits, aux_logits = model(xm)
            loss, terms = criterion(logits, aux_logits, ym, normalizers=whole)
            loss.backward()
        if deferred:
            n_correct += trains_embedding(aux_logits, ym, criterion.options).sum()
        wrong = (logits.detach().argmax(1) != ym).sum() / len(y)
        for k, v in {"loss": loss.detach(), **terms, "error": wrong}.items():
            shares[k] = shares.get(k, 0.0) + v
    if start is not None and criterion.training:
        clock.copy_(start + 1)
    shares["images"] = torch.tensor(len(y[rank::world]) / len(y), device=y.device)
    _finish_criterion_grads(criterion, shares, n_correct if deferred else None, len(y))
    return shares


def _finish_criterion_grads(criterion: nn.Module, shares: dict[str, Tensor],
                            n_correct: Tensor | None, n_valid: int) -> None:
    """Sum the criterion's gradients (the label embedding, outside DDP) over the ranks and,
    with a deferred ``n_correct``, divide them and the ``embedding_ce`` share by what
    ``term_divisors`` left undivided for want of it."""
    params = [p for p in criterion.parameters() if p.requires_grad]
    sum_gradients(params)
    if n_correct is None:
        return
    if rank_and_world()[1] > 1:
        dist.all_reduce(n_correct)
    n, dtype = torch.tensor(n_valid, device=n_correct.device), shares["embedding_ce"].dtype
    divisor = torch.as_tensor(term_divisors(n, n_correct, criterion.options, dtype)["embedding_ce"]
                              / term_divisors(n, None, criterion.options, dtype)["embedding_ce"])
    for p in params:
        if p.grad is not None:
            p.grad.div_(divisor.to(p.grad.dtype))
    # embedding_ce weighs 1 in the loss (term_weights): its share moves by the same amount.
    emb = shares["embedding_ce"]
    shares["embedding_ce"] = emb / divisor
    shares["loss"] = shares["loss"] - emb + emb / divisor


# --------------------------------------------------------------------------- many runs


def run_training(
    config: "TrainConfig | argparse.Namespace | dict", dataset: ImageDataset | None = None
) -> list[Path]:
    """Train every ``(mode, seed)`` of ``config``; returns their run directories
    ``OUT/<mode>/seed-<k>/``.

    ``dataset``: an already loaded :class:`~labelemb.data.registry.ImageDataset` to use instead
    of ``config.dataset`` (it is not modified). Every setting, the device, the data and any
    ``emb-fixed`` embedding are checked before the first run folder is made.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    device = (config.get("device") if isinstance(config, dict)
              else getattr(config, "device", None))
    started_dist = join_torchrun(device)
    try:
        return _run_training(config, dataset)
    finally:
        if started_dist:
            dist.destroy_process_group()


def _load_data(cfg: TrainConfig) -> ImageDataset:
    """The dataset of ``cfg``; a ``--data-dir`` that does not hold it is an error, never a
    silent fall-back to another copy found elsewhere."""
    if cfg.data_dir is not None:
        given = Path(cfg.data_dir)
        if not given.is_dir():
            raise FileNotFoundError(f"--data-dir {given}: no such folder")
        if cfg.dataset in DATASETS:
            found = find_data_dir(cfg.dataset, given)
            if found not in search_dirs(cfg.dataset, given)[:2]:
                raise FileNotFoundError(
                    f"--data-dir {given}: no {cfg.dataset} files there or in "
                    f"{given / cfg.dataset} (a copy is in {found}: drop --data-dir to use it)")
    return load_dataset(cfg.dataset, cfg.data_dir, cfg.cifar100_labels)


def _run_training(config: Any, dataset: ImageDataset | None) -> list[Path]:
    cfg = TrainConfig.from_any(config)
    device = device_of_rank(cfg.device)
    ds = dataset if dataset is not None else _load_data(cfg)
    cfg = cfg.resolved(ds)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    ds = dataclasses.replace(ds.subset_train(cfg.train_subset).hold_out_dev(cfg.held_out))
    for mode in cfg.modes:  # every emb-fixed file checked before the first run starts
        if MODES[mode].needs_embedding_file:
            for seed in cfg.seeds:
                load_fixed_embedding(ds, cfg, seed)
    # Keep the whole dataset on the device: batches are then one index away.
    for name in ("train_x", "train_y", "dev_x", "dev_y", "test_x", "test_y"):
        t = getattr(ds, name)
        if t is not None:
            setattr(ds, name, t.to(device))
    out = Path(cfg.out)
    if is_main_process():
        rundir.make_folder(out)  # a file in the way or no write permission: said before training
    splits = _eval_splits(ds, cfg)
    dev_n = len(splits["dev"][1]) if "dev" in splits else 0
    world = rank_and_world()[1]
    log(f"{ds.name} ({ds.source}): train {len(ds.train_y)}, dev {dev_n}, test "
        f"{len(splits['test'][1])}; model {cfg.model}; "
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}"
        f"{' x' + str(cfg.lr_gamma) + ' at ' + str(cfg.lr_milestones) if cfg.lr_milestones else ''}"
        f"{', crop+flip' if cfg.augment else ''}; device {device}"
        f"{f', {world} ranks' if world > 1 else ''}; out {out}")
    return [train_one(cfg, ds, mode, seed, out / mode / f"seed-{seed}", device)
            for seed in cfg.seeds for mode in cfg.modes]
