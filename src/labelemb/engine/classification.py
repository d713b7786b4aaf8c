"""Image classification: the task adapter of :mod:`labelemb.engine.loop` (paper Table 2,
Appendices B and C).

Every mode (:data:`~labelemb.runs.config.MODES`) is trained by the one loop with one Adam
over the model's AND the criterion's parameters, the same initialisation and data order for
a given seed. :func:`run_training` is ``labelemb train`` less the printed table; it returns
the run folders ``OUT/<mode>/seed-<k>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..data.registry import DATASETS, ImageDataset, load_dataset
from ..data.transforms import random_crop_flip, to_float
from ..embedding import FixedLabelEmbedding, LabelEmbedding
from ..functional import trains_embedding
from ..loss import LabelEmbeddingLoss
from ..models.classifier import MODELS, build_model, calibrate, evaluate
from ..normalizers import Normalizers, defers_embedding_ce
from ..runs import rundir
from ..runs.rundir import RunDir
from ..runs.progress import log
from ..runs.ranks import rank_and_world
from ..runs.settings import setting
from ..runs.device import rank_device
from .loop import Part, run_all
from ..baselines import baseline_criterion
from ..runs.config import MODES, RunSettings

__all__ = ["RECIPES", "TrainConfig", "Classification", "run_training", "load_fixed_embedding"]

#: The paper's recipes, as the authors' code runs them (docs/TRAINING.md). Adam without
#: weight decay in every case; an evaluation and a checkpoint after each epoch.
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": dict(epochs=15, batch_size=100, lr=1e-3, lr_milestones=[], augment=False),
    "cifar10": dict(epochs=100, batch_size=128, lr=1e-3, lr_milestones=[], augment=True),
    "cifar100": dict(epochs=100, batch_size=128, lr=1e-3, lr_milestones=[40, 80], augment=True),
}
_EVERY_RECIPE = dict(clip_norm=0.0)  # no clipping in the authors' image code


def _default_models_text() -> str:
    """Each dataset's backbone for ``--model``'s help, from the registry."""
    by_model: dict[str, list[str]] = {}
    for name, spec in DATASETS.items():
        by_model.setdefault(spec.default_model, []).append(name)
    own = next(f.default for f in dataclasses.fields(ImageDataset) if f.name == "default_model")
    by_model.setdefault(own, []).append("own data")
    return "; ".join(f"{model} for {', '.join(names)}" for model, names in by_model.items())


def _recipes_text() -> str:
    return "; ".join(
        f"{k}: {v['epochs']} epochs, batch {v['batch_size']}, lr {v['lr']}"
        + (f" x--lr-gamma at {v['lr_milestones']}" if v["lr_milestones"] else "")
        + (", crop+flip" if v["augment"] else "") for k, v in RECIPES.items())


@dataclass(kw_only=True)
class TrainConfig(RunSettings):
    """``labelemb train``: the shared settings and the image task's own. ``None``: the
    dataset's recipe (:data:`RECIPES`, shown in ``--epochs``' help)."""

    #: the help's defaults of the shared settings that the dataset's recipe fills in
    SHOWN_DEFAULTS: ClassVar[dict[str, str]] = {
        "epochs": f"the recipe ({_recipes_text()})",
        "clip_norm": f"{_EVERY_RECIPE['clip_norm']}, no clipping",
        "eval_every": "each epoch", "out": "runs/<dataset>-<model>"}

    dataset: str = setting(
        "fashion-mnist", f"{', '.join(DATASETS)}, a folder of class folders, or an .npz with x "
        "and y", flags=("--dataset", "-d"))
    model: str | None = setting(None, "backbone", flags=("--model", "-m"),
                                choices=sorted(MODELS), default_text=_default_models_text())
    augment: bool | None = setting(None, "random crop (pad 4) + horizontal flip",
                                   default_text="on for " + ", ".join(
                                       k for k, v in RECIPES.items() if v["augment"]))
    train_subset: int | None = setting(
        None, "train on N training images: the first N of MNIST, Fashion-MNIST and CIFAR "
        "(shipped shuffled), a stratified seeded sample of own data", at_least=1)
    test_subset: int | None = setting(None, "evaluate on the first N test images only",
                                      at_least=1)
    dev_subset: int | None = setting(None, "evaluate on the first N dev images only",
                                     at_least=1)
    held_out: int | None = setting(
        None, "for a dataset without a dev split: hold out N training images as one (best-dev "
        "epoch, temperature scaling): CIFAR's last N, a stratified seeded N of own data; 0 "
        "trains on all and skips calibration",
        default_text="10%% of train, at most 5,000", at_least=0)
    data_dir: str | None = setting(
        None, "folder that holds the dataset; an error if it does not", on_resume=True,
        default_text="search $LABELEMB_DATA, ~/.cache/labelemb/<name>, /usr/share/datasets/<name>")
    embedding: str | None = setting(
        None, "emb-fixed: embedding.safetensors of an earlier emb run; may contain {seed}, "
        "or name that run's OUT folder (uses OUT/emb/seed-<k>/)")
    eval_batch_size: int = setting(1000, "images per evaluation batch", on_resume=True,
                                   at_least=1)
    cifar100_labels: str = setting("fine", "CIFAR-100 label set", choices=("fine", "coarse"))

    def resolved(self, ds: ImageDataset) -> "TrainConfig":
        """The dataset's recipe filled in, every setting checked."""
        c = self.filled({**RECIPES[ds.recipe], **_EVERY_RECIPE}, tuple(MODES))
        c.model = c.model or ds.default_model
        c.out = c.out or str(Path("runs") / f"{ds.name}-{c.model}")
        if c.model not in MODELS:
            raise ValueError(f"--model: unknown model {c.model!r}; choose from {sorted(MODELS)}")
        if any(MODES[m].fixed_embedding for m in c.modes) and not c.embedding:
            raise ValueError(
                "mode emb-fixed needs --embedding PATH: an embedding.safetensors from an earlier "
                "emb run (PATH may contain {seed}), or that run's output folder")
        return c


# --------------------------------------------------------------------------- pieces


def load_fixed_embedding(ds: ImageDataset, cfg: TrainConfig, seed: int) -> FixedLabelEmbedding:
    """The frozen embedding ``emb-fixed`` uses for ``seed``, checked against the dataset: its
    class count and names must match."""
    path = rundir.find_embedding(str(cfg.embedding), seed)
    emb = FixedLabelEmbedding.from_file(path)
    if emb.num_classes != ds.num_classes:
        raise ValueError(f"--embedding {path}: embedding has {emb.num_classes} classes, "
                         f"{ds.name} has {ds.num_classes}")
    if emb.class_names is not None and list(emb.class_names) != list(ds.class_names):
        raise ValueError(f"--embedding {path}: embedding class names {emb.class_names[:3]}... "
                         f"do not match {ds.name}'s {ds.class_names[:3]}...")
    return emb


# --------------------------------------------------------------------------- the task


class Classification:
    """The image task for :mod:`labelemb.engine.loop`: images on the device, one index away."""

    name = "classification"
    select, higher_is_better, primary_metric = "dev_error", False, "test_error"
    extra_files: tuple[str, ...] = ()
    data_identity = ("dataset", "class_names", "train_size", "dev_size", "test_size")

    def __init__(self, cfg: TrainConfig, ds: ImageDataset, device: torch.device) -> None:
        self.cfg, self.ds, self.device = cfg, ds, device
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        for name, x, y, n in (("test", ds.test_x, ds.test_y, cfg.test_subset),
                              ("dev", ds.dev_x, ds.dev_y, cfg.dev_subset)):
            if y is not None:
                self.splits[name] = (x[:n or len(y)], y[:n or len(y)])

    def build(self, mode: str, seed: int) -> tuple[nn.Module, nn.Module]:
        ds, cfg = self.ds, self.cfg
        model = build_model(cfg.model, ds.in_channels, ds.image_size, ds.num_classes,
                            aux=MODES[mode].label_embedding)
        if MODES[mode].label_embedding:
            criterion = LabelEmbeddingLoss.from_preset(
                "classification", LabelEmbedding(ds.num_classes, class_names=ds.class_names),
                **cfg.loss_options())
        elif MODES[mode].fixed_embedding:
            criterion = LabelEmbeddingLoss.from_preset(
                "classification", load_fixed_embedding(ds, cfg, seed), **cfg.loss_options())
        else:
            criterion = baseline_criterion(mode, ds.num_classes, smoothing=cfg.smoothing,
                                           ols_alpha=cfg.ols_alpha)
        return model.to(self.device), criterion.to(self.device)

    def epoch_batches(self, epoch: int, g: torch.Generator) -> list[Tensor]:
        n, bs = len(self.ds.train_y), self.cfg.batch_size
        order = torch.randperm(n, generator=g)
        n_batches = math.ceil(n / bs)
        world = rank_and_world()[1]
        if n_batches > 1 and n - (n_batches - 1) * bs < max(2, world * self.cfg.accumulate):
            n_batches -= 1  # a last batch too small for BatchNorm / for every part is dropped
        return [order[b * bs:(b + 1) * bs] for b in range(n_batches)]

    def batch(self, idx: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        ds = self.ds
        x = ds.train_x[idx.to(ds.train_x.device)]
        if self.cfg.augment:
            x = random_crop_flip(x, g)  # drawn for the whole batch on every rank
        x = to_float(x.to(self.device, non_blocking=True), ds.mean, ds.std)
        return x, ds.train_y[idx.to(ds.train_y.device)].to(self.device, non_blocking=True)

    def parts(self, batch: tuple[Tensor, Tensor], rank: int, world: int, accumulate: int
              ) -> tuple[list[Any], int]:
        x, y = batch
        return list(zip(x[rank::world].tensor_split(accumulate),
                        y[rank::world].tensor_split(accumulate))), len(y)

    def loss(self, model: nn.Module, criterion: nn.Module, part: tuple[Tensor, Tensor],
             normalizers: Normalizers | None) -> Part:
        x, y = part
        logits, aux_logits = model(x)
        loss, terms = criterion(logits, aux_logits, y, normalizers=normalizers)
        counts = {"error": (logits.detach().argmax(1) != y).sum()}
        if normalizers is not None and defers_embedding_ce(criterion):
            counts["n_correct"] = trains_embedding(aux_logits, y, criterion.options).sum()
        return Part(loss, terms, counts)

    def evaluate(self, model: nn.Module, criterion: nn.Module) -> dict[str, Any]:
        bs = self.cfg.eval_batch_size
        scores = {k: evaluate(model, x, y, self.ds, bs) for k, (x, y) in self.splits.items()}
        dev, test = scores.get("dev"), scores["test"]
        return {"dev_error": dev["error"] if dev else None, "test_error": test["error"],
                "test_loss": test["loss"], "test_ece": test["ece"]}

    def start(self, run: RunDir) -> None:
        pass  # images need no files of their own

    def describe(self, mode: str) -> dict[str, Any]:
        ds = self.ds
        return {
            "model": self.cfg.model, "dataset": ds.name, "data_source": ds.source,
            # what reports name a variant by: "emb tau=1" is not the preset's emb
            "loss_options": self.cfg.loss_options() if MODES[mode].uses_loss_options else {},
            "num_classes": ds.num_classes, "class_names": list(ds.class_names),
            "in_channels": ds.in_channels, "image_size": ds.image_size,
            "train_size": len(ds.train_y), "test_size": len(self.splits["test"][1]),
            "dev_size": len(self.splits["dev"][1]) if "dev" in self.splits else 0,
            "device": str(self.device),
        }

    def finish(self, run: RunDir, model: nn.Module, criterion: nn.Module, mode: str,
               history: list[dict[str, Any]]) -> dict[str, Any]:
        """The final model's scores (the paper's), and its calibration fitted on dev, never on
        test; without a dev split (--held-out 0) no calibration."""
        final = history[-1]
        calibration = (calibrate(model, self.splits["dev"], self.splits["test"], self.ds,
                                 self.cfg.eval_batch_size) if "dev" in self.splits else None)
        return {k: final.get(k) for k in ("test_error", "dev_error", "test_loss", "test_ece",
                                          "train_error")} | {"calibration": calibration}


# --------------------------------------------------------------------------- many runs


def run_training(config: "TrainConfig | argparse.Namespace | dict",
                 dataset: ImageDataset | None = None) -> list[Path]:
    """Train every ``(mode, seed)`` of ``config``; returns the run folders.

    ``dataset``: an already loaded :class:`~labelemb.data.registry.ImageDataset` to use instead
    of ``config.dataset`` (it is not modified). Every setting, the device, the data and any
    ``emb-fixed`` embedding are checked before the first run folder is made.
    """
    cfg = TrainConfig.from_any(config)
    with rank_device(cfg.device, cfg.threads) as device:
        ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_dir,
                                                              cfg.cifar100_labels)
        return _run_training(cfg.resolved(ds), ds, device)


def _run_training(cfg: TrainConfig, ds: ImageDataset, device: torch.device) -> list[Path]:
    ds = dataclasses.replace(ds.subset_train(cfg.train_subset).hold_out_dev(cfg.held_out))
    for mode in cfg.modes:  # every emb-fixed file checked before the first run starts
        if MODES[mode].fixed_embedding:
            for seed in cfg.seeds:
                load_fixed_embedding(ds, cfg, seed)
    for name in ("train_x", "train_y", "dev_x", "dev_y", "test_x", "test_y"):
        if getattr(ds, name) is not None:  # on the device: batches are one index away
            setattr(ds, name, getattr(ds, name).to(device))
    task = Classification(cfg, ds, device)
    world = rank_and_world()[1]
    log(f"{ds.name} ({ds.source}): train {len(ds.train_y)}, dev "
        f"{len(task.splits['dev'][1]) if 'dev' in task.splits else 0}, test "
        f"{len(task.splits['test'][1])}; model {cfg.model}; {cfg.epochs} epochs, batch "
        f"{cfg.batch_size}, lr {cfg.lr}"
        f"{' x' + str(cfg.lr_gamma) + ' at ' + str(cfg.lr_milestones) if cfg.lr_milestones else ''}"
        f"{', crop+flip' if cfg.augment else ''}; device {device}"
        f"{f', {world} ranks' if world > 1 else ''}; out {cfg.out}")
    return run_all(task)
