"""``labelemb report RUN_DIR... [--out DIR] [--forest FILE.png] [--strict]``: the result
tables, the effects against cross-entropy with their forest plot, the convergence table and
the curve figures of finished runs."""

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
        help="result tables (mean ± std over seeds), effects vs cross-entropy with 95%% CIs "
             "and a forest plot, convergence, curves",
        description=(
            "Group finished runs by dataset, model, mode and their whole settings (runs that "
            "differ in anything but the seed and where they ran are separate rows, never "
            "pooled); write report.md (the result tables, each mode's effect against "
            "cross-entropy with its 95% confidence interval, paired or Welch t-test and "
            "Holm-adjusted p, the convergence table), the forest plot of the effects and the "
            "curve figures (PNG and SVG); print the tables."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories, or directories holding run directories (several "
                        "studies: one report, one Holm family over all of them)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="the folder to write into, made if missing; files of an earlier report "
                        "there are replaced (default: report/ inside the common parent of "
                        "RUN_DIRs)")
    p.add_argument("--forest", metavar="FILE.png", default=None,
                   help="also write the forest plot to this PNG file (e.g. docs/figures/...)")
    p.add_argument("--ignore-setting", metavar="NAME", action="append", default=None,
                   help="a setting whose differing values do not split rows (repeatable; e.g. "
                        "one an older run folder did not record); report.md lists them")
    p.add_argument("--strict", action="store_true",
                   help="fail on an incomplete run (no result.json) instead of skipping it")
    p.set_defaults(func=run)


def default_out_dir(run_dirs: list[str | os.PathLike]) -> Path:
    """``report/`` in the deepest directory that contains every argument."""
    paths = [os.path.abspath(p) for p in run_dirs]
    return Path(os.path.commonpath(paths)) / "report"


def _figure_link(title: str, paths: list[Path]) -> str:
    return f"![{title}]({paths[0].name}) ([SVG]({paths[1].name}))\n"


def _write_figures(kinds: dict[str, list], out: Path) -> tuple[list[Path], list[str], list[str]]:
    """One curve figure per (dataset, model), and a reliability diagram where the runs
    recorded calibration; returns the paths and the Markdown lines of each kind."""
    from ..report.calibration import plot_reliability
    from ..report.curves import (curve_file_stem, plot_error_curves, plot_score_curves,
                                 save_figure)

    pairs: dict[tuple[str, str, str], list] = {}
    for kind in ("errors", "scores"):
        for s in kinds[kind]:
            pairs.setdefault((kind, s.dataset, s.model), []).append(s)
    written: list[Path] = []
    lines: dict[str, list[str]] = {"curves": [], "reliability": []}
    for (kind, dataset, model), group in progress(pairs.items(), total=len(pairs),
                                                  desc="figures"):
        scores = kind == "scores"
        figures = {"curves": plot_score_curves(group) if scores else plot_error_curves(group),
                   "reliability": None if scores else plot_reliability(group)}
        for name, fig in figures.items():
            if fig is None:
                continue
            stem = curve_file_stem(dataset, model).replace("curves_", f"{name}_", 1)
            paths = save_figure(fig, out / stem)
            written += paths
            title = dataset if name == "curves" else f"reliability · {dataset}"
            lines[name].append(_figure_link(f"{title} · {model}", paths))
    return written, lines["curves"], lines["reliability"]


def _write_forest(effects: list, out: Path, forest: Path | None) -> tuple[list[Path], str]:
    """The forest plot into ``out`` (PNG and SVG), and to ``forest`` when given."""
    from ..report.curves import save_figure
    from ..report.forest import plot_forest

    if not effects:
        if forest is not None:  # else an older figure at that path would look current
            raise ValueError(f"--forest {forest}: no effect to plot (no cross-entropy group of "
                             "the same recipe, or fewer than 2 seeds, or no primary measure)")
        return [], ""
    fig = plot_forest(effects)
    paths = save_figure(fig, out / "forest")
    if forest is not None:
        paths += save_figure(fig, forest.with_suffix(""), formats=("png",))
    return paths, _figure_link("effects against cross-entropy, 95% CI", paths)


_INTRO = ("± is the sample standard deviation over seeds (ddof=1). Runs are grouped by "
          "dataset, model, mode and every setting but the seed and where they ran; see "
          "docs/REPORTS.md for what each column means.")
_EFFECTS = ("Each group against the cross-entropy group (`baseline`, or `ce`) of the same "
            "dataset, model and recipe, in the primary measure: difference = mode minus "
            "cross-entropy, its 95% confidence interval, a paired t-test where both ran the "
            "same seeds and Welch's otherwise (two-sided), and the p-value adjusted by Holm's "
            "method within its family (label-embedding modes over every task of this report; "
            "the other losses apart). Forest plot: improvement, right = better.")


def _effects_section(summaries: list, out: Path, forest: Path | None
                     ) -> tuple[list[str], list[str], list[Path]]:
    """Markdown lines, printed tables and written paths of the effects and the settings."""
    from ..report.significance import effects_vs_baseline, format_effects
    from ..report.table import format_settings

    effects = effects_vs_baseline(summaries)
    paths, link = _write_forest(effects, out, forest)
    md: list[str] = []
    printed = []
    if effects:
        printed.append(format_effects(effects))
        md += ["## Effects against cross-entropy", "", _EFFECTS, "", printed[-1], link]
    differ = format_settings(summaries)
    if differ:
        md += ["## Settings that differ between rows", "",
               "Groups of one dataset and model that ran with other settings are reported "
               "apart; these are the settings in which they differ.", "", differ]
    return md, printed, paths


def _error_sections(group: list, reliability: list[str]) -> tuple[list[str], list[str]]:
    """Markdown and printed tables of the classification groups with a log."""
    from ..report.calibration import format_calibration_table
    from ..report.significance import compare_label_embedding, format_comparisons
    from ..report.table import format_convergence, format_table

    table = format_table(group)
    printed = [table]
    md = ["## Test error (%)", "", table, "## Convergence", "",
          "Epochs the mean test-error curve of each mode needs to reach the final mean "
          "test error of the baseline (same dataset, model and recipe).", "",
          format_convergence(group)]
    calibration = format_calibration_table(group)
    if calibration:
        printed.append(calibration)
        md += ["## Calibration", "",
               "The main head's test-set measures before and after temperature scaling (T "
               "fitted on the dev split by NLL; predictions unchanged), mean ± std over "
               "seeds; reliability diagrams pool the seeds' bins.", "", calibration,
               *reliability]
    significance = format_comparisons(compare_label_embedding(group))
    if significance:
        md += ["## Significance", "",
               "emb against each other mode of its recipe, and each variant of emb against "
               "the modes without a label embedding, in final test error: difference = the "
               "first minus the other (negative: fewer errors), 95% CI, paired t-test where "
               "both ran the same seeds, Welch's otherwise; p unadjusted.", "", significance]
    return md, printed


def write_report(run_dirs: list[str | os.PathLike], out: str | os.PathLike, *,
                 strict: bool = False, forest: str | os.PathLike | None = None,
                 ignore: list[str] | tuple[str, ...] = ()) -> tuple[str, list[Path]]:
    """Write ``report.md`` and the figures into ``out`` (and the forest plot to ``forest``);
    returns (the printed tables, written paths)."""
    from ..report.runs import load_runs
    from ..report.summary import summarize
    from ..report.table import by_kind, format_primary_table, format_score_table

    forest_path = _forest_path(forest)
    runs = load_runs(run_dirs, strict=strict, ignore=ignore)
    summaries = summarize(runs)
    kinds = by_kind(summaries)
    out = make_out_folder(Path(out), "report.md and the figures")
    log(f"report: {len(runs)} finished runs")
    written, figure_lines, reliability_lines = _write_figures(kinds, out)
    md = ["# Results", "", f"{len(runs)} finished runs from: "
          + ", ".join(f"`{d}`" for d in run_dirs), "", _INTRO, ""]
    if ignore:
        md += ["Settings ignored on request (`--ignore-setting`): "
               + ", ".join(f"`{k}`" for k in sorted(set(ignore))) + ".", ""]
    lines, effects, paths = _effects_section(summaries, out, forest_path)
    md += lines
    written += paths
    printed: list[str] = []
    if kinds["errors"]:
        lines, tables = _error_sections(kinds["errors"], reliability_lines)
        md += lines
        printed += tables
    for kind, title, fmt in (("scores", "Sequence-to-sequence scores (0-100, higher is better)",
                              format_score_table),
                             ("primary", "Primary measure", format_primary_table)):
        if kinds[kind]:
            printed.append(fmt(kinds[kind]))
            md += [f"## {title}", "", printed[-1]]
    printed += effects  # after the result tables: a pipe reads those first
    if figure_lines:
        md += ["## Curves", "",
               "Thin light lines: one seed each; bold: mean over seeds. Classification: test "
               "error per epoch; seq2seq: dev score per evaluation.", "", *figure_lines]
    written.insert(0, atomic_write_text(out / "report.md", "\n".join(md).rstrip("\n") + "\n"))
    return "\n".join(printed), written


def _forest_path(forest: str | os.PathLike | None) -> Path | None:
    """``--forest``: a ``.png`` path whose folder exists or can be made."""
    if forest is None:
        return None
    path = Path(forest)
    if path.suffix.lower() != ".png":
        raise ValueError(f"--forest {path}: the forest plot is written as PNG; name a .png file")
    make_out_folder(path.parent, "the forest plot", flag="--forest")
    return path


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else default_out_dir(args.run_dirs)
    table, written = write_report(args.run_dirs, out, strict=args.strict, forest=args.forest,
                                  ignore=args.ignore_setting or ())
    print(table, end="")
    for p in written:
        log(f"wrote {p}")
    return 0
