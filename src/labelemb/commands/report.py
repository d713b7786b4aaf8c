"""``labelemb report RUN_DIR... [--out DIR] [--strict]``: the result table, the convergence
table and error-curve figures of finished runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..atomic import atomic_write_text
from ..runs.progress import log, progress
from .outputs import make_out_folder

__all__ = ["register", "run", "write_report", "default_out_dir"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="result table (mean ± std over seeds), convergence, error curves",
        description=(
            "Group finished runs by dataset, model and mode; write report.md (the result table "
            "and the epochs each mode needs to reach the baseline's final error) and one "
            "error-curve figure per dataset/model (PNG and SVG); print the table."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories, or directories holding run directories")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="the folder to write into, made if missing; files of an earlier report "
                        "there are replaced (default: report/ inside the common parent of "
                        "RUN_DIRs)")
    p.add_argument("--strict", action="store_true",
                   help="fail on an incomplete run (no result.json) instead of skipping it")
    p.set_defaults(func=run)


def default_out_dir(run_dirs: list[str | os.PathLike]) -> Path:
    """``report/`` in the deepest directory that contains every argument."""
    paths = [os.path.abspath(p) for p in run_dirs]
    return Path(os.path.commonpath(paths)) / "report"


def _write_figures(summaries: list, out: Path) -> tuple[list[Path], list[str], list[str]]:
    """One curve figure per (dataset, model), and a reliability diagram where the runs
    recorded calibration; returns the paths and the Markdown lines of each kind."""
    from ..report.calibration import plot_reliability
    from ..report.curves import (curve_file_stem, plot_error_curves, plot_score_curves,
                                 save_figure)
    from ..report.table import ScoreSummary

    pairs: dict[tuple[str, str], list] = {}
    for s in summaries:
        pairs.setdefault((s.dataset, s.model), []).append(s)
    written: list[Path] = []
    lines: dict[str, list[str]] = {"curves": [], "reliability": []}
    for (dataset, model), group in progress(pairs.items(), total=len(pairs), desc="figures"):
        scores = isinstance(group[0], ScoreSummary)
        figures = {"curves": plot_score_curves(group) if scores else plot_error_curves(group),
                   "reliability": None if scores else plot_reliability(group)}
        for kind, fig in figures.items():
            if fig is None:
                continue
            stem = curve_file_stem(dataset, model).replace("curves_", f"{kind}_", 1)
            paths = save_figure(fig, out / stem)
            written += paths
            title = dataset if kind == "curves" else f"reliability · {dataset}"
            lines[kind].append(f"![{title} · {model}]({paths[0].name}) ([SVG]({paths[1].name}))")
    return written, lines["curves"], lines["reliability"]


def write_report(run_dirs: list[str | os.PathLike], out: str | os.PathLike, *,
                 strict: bool = False) -> tuple[str, list[Path]]:
    """Write ``report.md`` and the curve figures into ``out``; returns (table, written paths)."""
    from ..report.calibration import format_calibration_table
    from ..report.runs import load_runs
    from ..report.significance import compare_label_embedding, format_comparisons
    from ..report.table import (format_convergence, format_score_table, format_table,
                                summarize, summarize_scores)

    runs = load_runs(run_dirs, strict=strict)
    summaries = summarize(runs)
    scores = summarize_scores(runs)
    if not summaries and not scores:
        raise ValueError("none of the runs has test errors or scores to report")
    out = make_out_folder(Path(out), "report.md and the curve figures")
    log(f"report: {len(runs)} finished runs")

    written, figure_lines, reliability_lines = _write_figures([*summaries, *scores], out)
    tables = []
    md = ["# Results", "",
          f"{len(runs)} finished runs from: " + ", ".join(f"`{d}`" for d in run_dirs), "",
          "± is the sample standard deviation over seeds (ddof=1). "
          "See docs/REPORTS.md for what each column means.", ""]
    if summaries:
        table = format_table(summaries)
        tables.append(table)
        md += ["## Test error (%)", "", table,
               "## Convergence", "",
               "Epochs the mean test-error curve of each mode needs to reach the final mean "
               "test error of the baseline (same dataset and model).", "",
               format_convergence(summaries)]
        calibration = format_calibration_table(summaries)
        if calibration:
            tables.append(calibration)
            md += ["## Calibration", "",
                   "The main head's test-set measures before and after temperature scaling (T "
                   "fitted on the dev split by NLL; predictions unchanged), mean ± std over "
                   "seeds; reliability diagrams pool the seeds' bins.", "", calibration,
                   *[line + "\n" for line in reliability_lines]]
        significance = format_comparisons(compare_label_embedding(summaries))
        if significance:
            tables.append(significance)
            md += ["## Significance", "",
                   "Welch's t-test (two-sided, unequal variances) of the final test errors "
                   "over seeds, emb against each other mode, and each variant of emb (a run "
                   "that changed a loss option) against the modes without a label embedding; "
                   "difference = the first minus the other mode (negative: it makes fewer "
                   "errors).", "", significance]
    if scores:
        table = format_score_table(scores)
        tables.append(table)
        md += ["## Sequence-to-sequence scores (0-100, higher is better)", "",
               "Test scores of the best-dev model (result.json); best dev score from "
               "metrics.jsonl.", "", table]
    md += ["## Curves", "",
           "Thin light lines: one seed each; bold: mean over seeds. Classification: test error "
           "per epoch; seq2seq: dev score per evaluation.", "",
           *[line + "\n" for line in figure_lines]]
    path = atomic_write_text(out / "report.md", "\n".join(md).rstrip("\n") + "\n")
    written.insert(0, path)
    return "\n".join(tables), written


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else default_out_dir(args.run_dirs)
    table, written = write_report(args.run_dirs, out, strict=args.strict)
    print(table, end="")
    for p in written:
        log(f"wrote {p}")
    return 0
