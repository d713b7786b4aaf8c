"""``labelemb train``: the paper's image classification runs (Table 2, Appendices B and C).

A thin wrapper of :func:`labelemb.engine.classification.run_training`: its flags are generated
from :class:`~labelemb.engine.classification.TrainConfig`; after the runs it writes and prints
``OUT/summary.md``, the report's table over every finished run in ``OUT``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.classification import TrainConfig, run_training
from ..runs.config import MODES
from ..report.table import build_table
from ..atomic import atomic_write_text
from ..runs.ranks import is_main_process
from ..runs.rundir import iter_run_dirs
from .options import add_config_arguments

__all__ = ["register", "add_arguments", "write_summary"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The training flags, one per :class:`TrainConfig` field, and ``--no-summary``."""
    add_config_arguments(p, TrainConfig)
    p.add_argument("--no-summary", dest="summary", action="store_false",
                   help="do not write and print OUT/summary.md")


def register(subparsers: argparse._SubParsersAction) -> None:
    modes = "; ".join(f"{name}: {m.help}" for name, m in MODES.items())
    p = subparsers.add_parser(
        "train", help=f"train image classifiers: {', '.join(MODES)}",
        description="Train the paper's image classification runs, one recipe for every mode, "
        "same seeds; writes OUT/<mode>/seed-<k>/ (config.json, metrics.jsonl, "
        f"embedding.safetensors, checkpoint.pt, result.json) and OUT/summary.md. Modes: {modes}.",
        # No prefix matching: --mode must not be read as --model (or --modes by accident).
        allow_abbrev=False,
    )
    add_arguments(p)
    p.set_defaults(func=_run)


def write_summary(run_dirs: list[Path]) -> str:
    """Write ``OUT/summary.md`` over every finished run in ``OUT`` (so a later call, e.g.
    emb-fixed, is compared with the baseline trained earlier into the same folder); returns it."""
    out = Path(run_dirs[0]).parent.parent
    text = build_table(sorted(set(run_dirs) | set(iter_run_dirs(out))))
    atomic_write_text(out / "summary.md", text + "\n")
    return text


def _run(args: argparse.Namespace) -> int:
    run_dirs = run_training(args)
    if args.summary and is_main_process():  # rank 0 of torchrun alone
        print(write_summary(run_dirs), flush=True)
    return 0
