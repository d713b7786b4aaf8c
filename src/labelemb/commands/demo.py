"""``labelemb demo``: the README's main job, in one command.

A short Fashion-MNIST CNN run, baseline against the label embedding network with one seed;
prints the result table and writes the report (table, error curves) and a heatmap and
nearest-label list of the learned embedding. It is ``labelemb train`` + ``labelemb report`` +
``labelemb inspect`` with small defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run_demo"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="short Fashion-MNIST CNN run: baseline vs label embedding, table + heatmap",
        description="Train the paper's MNIST CNN on Fashion-MNIST in baseline and emb mode "
        "(one seed, a few epochs on a subset), print the result table, write the report and a "
        "heatmap of the learned label embedding.",
    )
    p.add_argument("--epochs", type=int, default=3, help="default: 3")
    p.add_argument("--train-subset", type=int, default=10_000,
                   help="training images used (default: 10,000 of 55,000; 0 = all)")
    p.add_argument("--seeds", default="0", help="e.g. 0 or 0-2 (default: 0)")
    p.add_argument("--model", default="cnn", help="cnn (the paper's MNIST CNN) or mlp")
    p.add_argument("--out", "-o", default="runs/demo", help="default: runs/demo")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--overwrite", action="store_true", help="start again if OUT has runs")
    p.set_defaults(func=_run)


def run_demo(
    out: str | Path = "runs/demo", *, epochs: int = 3, train_subset: int | None = 10_000,
    seeds: list[int] | None = None, model: str = "cnn", data_dir: str | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Train, report, inspect; returns the paths of ``summary`` (the result table),
    ``report`` (report.md), ``heatmap`` and ``nearest``."""
    from ..engine.classification import run_training
    from .inspect import inspect_run
    from .report import write_report
    from .train import write_summary

    out = Path(out)
    run_dirs = run_training(dict(
        dataset="fashion-mnist", model=model, modes=["baseline", "emb"], seeds=seeds or [0],
        epochs=epochs, train_subset=train_subset or None, out=str(out), data_dir=data_dir,
        resume=not overwrite, overwrite=overwrite,
    ))
    write_summary(run_dirs)
    _, written = write_report(run_dirs, out / "report")
    emb_run = next(d for d in run_dirs if Path(d).parent.name == "emb")
    inspected = inspect_run(emb_run, out / "inspect", hide_diagonal=True)
    return {"summary": out / "summary.md", "report": written[0], "heatmap": inspected["heatmap"],
            "nearest": inspected["markdown"]}


def _run(args: argparse.Namespace) -> int:
    from ..engine.classification import parse_seeds

    paths = run_demo(
        args.out, epochs=args.epochs, train_subset=args.train_subset,
        seeds=parse_seeds(args.seeds), model=args.model, data_dir=args.data_dir,
        overwrite=args.overwrite,
    )
    print(paths["summary"].read_text(encoding="utf-8").rstrip())
    print()
    print(paths["nearest"].read_text(encoding="utf-8").rstrip())
    print()
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
