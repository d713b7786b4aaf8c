"""``labelemb demo``: the README's main job, in one command.

A short Fashion-MNIST CNN run, baseline against the label embedding network with one seed;
prints the result table and writes the report (table, error curves) and a heatmap and
nearest-label list of the learned embedding. It is ``labelemb train`` + ``labelemb report`` +
``labelemb inspect`` with small defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ..runs.settings import check_ranges, parse_seeds, setting
from .options import add_config_arguments, config_from_args

__all__ = ["register", "run_demo", "DemoConfig"]


@dataclasses.dataclass
class DemoConfig:
    """The demo's settings, declared once: its flags and :func:`run_demo`'s defaults."""

    epochs: int = setting(3, "training epochs", at_least=1)
    train_subset: int = setting(10_000, "training images used, of 55,000", at_least=1)
    seeds: list[int] = setting([0], "e.g. 0 or 0-2", parse=parse_seeds)
    model: str = setting("cnn", "cnn (the paper's MNIST CNN) or mlp", choices=("cnn", "mlp"))
    out: str = setting("runs/demo", "output folder", flags=("--out", "-o"))
    data_dir: str | None = setting(None, "folder that holds Fashion-MNIST",
                                   default_text="the usual places, see labelemb train --help")
    overwrite: bool = setting(False, "start again if OUT has runs")
    threads: int | None = setting(None, "CPU threads for torch", default_text="torch's choice",
                                  at_least=1)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="short Fashion-MNIST CNN run: baseline vs label embedding, table + heatmap",
        description="Train the paper's MNIST CNN on Fashion-MNIST in baseline and emb mode "
        "(one seed, a few epochs on a subset), print the result table, write the report and a "
        "heatmap of the learned label embedding.",
    )
    add_config_arguments(p, DemoConfig)
    p.set_defaults(func=_run)


def run_demo(config: DemoConfig | None = None, **settings: Any) -> dict[str, Path]:
    """Train, report, inspect with ``config`` (default :class:`DemoConfig`), any field
    replaced by ``settings``; returns the paths of ``summary`` (the result table),
    ``report`` (report.md), ``heatmap`` and ``nearest``."""
    from ..engine.classification import run_training
    from .inspect import inspect_run
    from .report import write_report
    from .train import write_summary

    cfg = dataclasses.replace(config or DemoConfig(), **settings)
    check_ranges(cfg)
    out = Path(cfg.out)
    run_dirs = run_training(dict(
        dataset="fashion-mnist", model=cfg.model, modes=["baseline", "emb"], seeds=cfg.seeds,
        epochs=cfg.epochs, train_subset=cfg.train_subset, out=str(out), threads=cfg.threads,
        data_dir=cfg.data_dir, resume=not cfg.overwrite, overwrite=cfg.overwrite,
    ))
    write_summary(run_dirs)
    _, written = write_report(run_dirs, out / "report")
    emb_run = next(d for d in run_dirs if Path(d).parent.name == "emb")
    inspected = inspect_run(emb_run, out / "inspect", hide_diagonal=True)
    return {"summary": out / "summary.md", "report": written[0], "heatmap": inspected["heatmap"],
            "nearest": inspected["markdown"]}


def _run(args: argparse.Namespace) -> int:
    paths = run_demo(config_from_args(DemoConfig, args))
    print(paths["summary"].read_text(encoding="utf-8").rstrip())
    print()
    print(paths["nearest"].read_text(encoding="utf-8").rstrip())
    print()
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
