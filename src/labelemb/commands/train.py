"""``labelemb train``: the paper's image classification runs (Table 2, Appendices B and C).

A thin wrapper of :func:`labelemb.engine.classification.run_training`.
"""

from __future__ import annotations

import argparse

from ..data.registry import DATASETS
from ..engine.classification import MODES, RECIPES, parse_seeds, run_training
from ..models.classifier import MODELS

__all__ = ["register", "add_arguments"]


def _int_list(text: str) -> list[int]:
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs, got {text!r}") from None


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {bad or text!r}; choose from {', '.join(MODES)}")
    return modes


def _seeds(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The training flags (also usable by other commands that run training)."""
    recipes = "; ".join(
        f"{k}: {v['epochs']} epochs, batch {v['batch_size']}, lr {v['lr']}"
        + (f" x0.2 at {v['lr_milestones']}" if v["lr_milestones"] else "")
        + (", crop+flip" if v["augment"] else "") for k, v in RECIPES.items())
    p.add_argument("--dataset", "-d", default="fashion-mnist",
                   help=f"{', '.join(DATASETS)}, a folder of class folders, or an .npz with x "
                   "and y (default: fashion-mnist)")
    p.add_argument("--model", "-m", default=None, choices=sorted(MODELS),
                   help="backbone (default: cnn for MNIST-like and own data, resnet8 for "
                   "cifar10, resnet18 for cifar100)")
    p.add_argument("--modes", type=_modes, default=["baseline", "emb"],
                   help=f"comma-separated, from {', '.join(MODES)} (default: baseline,emb)")
    p.add_argument("--seeds", type=_seeds, default=[0], help="e.g. 0-19 or 0,3,5 (default: 0)")
    p.add_argument("--epochs", type=int, default=None, help=f"default: the recipe ({recipes})")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    p.add_argument("--lr-milestones", type=_int_list, default=None,
                   help="epochs after which the lr is multiplied by --lr-gamma, e.g. 40,80 "
                   "or none")
    p.add_argument("--lr-gamma", type=float, default=0.2)
    aug = p.add_mutually_exclusive_group()
    aug.add_argument("--augment", dest="augment", action="store_true", default=None,
                     help="random crop (pad 4) + horizontal flip (default for CIFAR)")
    aug.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--train-subset", type=int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--test-subset", type=int, default=None,
                   help="evaluate on the first N test images only")
    p.add_argument("--dev-subset", type=int, default=None,
                   help="evaluate on the first N dev images only")
    p.add_argument("--out", "-o", default=None,
                   help="output folder, one OUT/<mode>/seed-<k>/ per run "
                   "(default: runs/<dataset>-<model>)")
    p.add_argument("--data-dir", default=None,
                   help="where the dataset is (else $LABELEMB_DATA, ~/.cache/labelemb/<name>, "
                   "/usr/share/datasets/<name>)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--resume", action="store_true",
                   help="continue runs from their checkpoint.pt (finished runs are skipped; "
                   "a larger --epochs extends them)")
    p.add_argument("--overwrite", action="store_true", help="start existing runs again")
    p.add_argument("--embedding", default=None,
                   help="emb-fixed: embedding.safetensors of an earlier emb run; may contain "
                   "{seed}, or name that run's OUT folder (uses OUT/emb/seed-<k>/)")
    p.add_argument("--smoothing", type=float, default=0.1, help="ls: label smoothing epsilon")
    p.add_argument("--ols-alpha", type=float, default=0.5, help="ols: weight of the hard CE")
    p.add_argument("--eval-batch-size", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is much faster on "
                   "a machine shared with other jobs. Results are bit-identical only for the "
                   "same thread count")
    p.add_argument("--cifar100-labels", choices=("fine", "coarse"), default="fine")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train image classifiers: baseline, emb, emb-fixed, ls, ols",
        description="Train the paper's image classification runs, one recipe for every mode, "
        "same seeds; writes OUT/<mode>/seed-<k>/ (config.json, metrics.jsonl, "
        "embedding.safetensors, checkpoint.pt, result.json) and OUT/summary.md.",
    )
    add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    run_training(args)
    return 0
