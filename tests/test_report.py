"""`labelemb report` and the Table-2 numbers, checked against an independent recomputation
from the runs' metrics.jsonl (plain json + statistics here, no labelemb code)."""

from __future__ import annotations

import json
import random
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelemb.cli import main
from labelemb.runs.rundir import RUN_FORMAT
from labelemb.report.runs import READABLE_FORMATS
from labelemb.report.table import build_table

MODES = ("baseline", "emb")


def write_run(root: Path, mode: str, seed: int, *, epochs: int = 4, dev: bool = True,
              complete: bool = True, run_format: int = RUN_FORMAT, dataset: str = "toy",
              model: str = "mlp") -> Path:
    """A run directory in the contract's format (engine/rundir.py), numbers from a seeded RNG."""
    d = root / f"{dataset}-{model}-{mode}-s{seed}"
    d.mkdir(parents=True)
    config = {"run_format": run_format, "labelemb_version": "0.1.0", "task": "classification",
              "mode": mode, "model": model, "dataset": dataset, "seed": seed,
              "class_names": [f"c{i}" for i in range(10)]}
    (d / "config.json").write_text(json.dumps(config))
    rng = random.Random(f"{mode}{seed}{dataset}{model}")
    with open(d / "metrics.jsonl", "w") as f:
        for e in range(1, epochs + 1):
            err = (0.5 if mode == "baseline" else 0.4) / e + 0.05 * rng.random()
            f.write(json.dumps({
                "epoch": e, "train_loss": rng.random(), "terms": {"ce": 1.0},
                "train_error": err * 0.9, "dev_error": err + 0.2 * rng.random() if dev else None,
                "test_error": err, "test_loss": rng.random(), "test_ece": 0.1 * rng.random(),
                "seconds": 1 + rng.random(), "lr": 1e-3}) + "\n")
    if complete:
        (d / "result.json").write_text(json.dumps({"final_test_error": err}))
    return d


def parse_table(md: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """Rows of the first Markdown table in ``md`` keyed by (dataset, model, mode)."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) != len(header):
            break
        row = dict(zip(header, cells))
        rows[(row["dataset"], row["model"], row["mode"])] = row
    return rows


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+|[-+]?\d+", cell)]


def records(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln]


def check_table_against_metrics(md: str, groups: dict[tuple[str, str, str], list[Path]]) -> None:
    """Every number of the table equals its recomputation from metrics.jsonl (2 decimals)."""
    rows = parse_table(md)
    assert set(rows) == set(groups)
    final = {k: [records(r)[-1]["test_error"] for r in runs] for k, runs in groups.items()}
    for key, runs in groups.items():
        row = rows[key]
        errs = final[key]
        mean, std = 100 * statistics.mean(errs), 100 * statistics.stdev(errs)
        assert numbers(row["test error (%)"]) == pytest.approx([round(mean, 2), round(std, 2)],
                                                              abs=0.0051)
        assert row["n"] == str(len(runs))
        ece = [records(r)[-1]["test_ece"] for r in runs]
        assert numbers(row["ECE (%)"]) == pytest.approx(
            [100 * statistics.mean(ece), 100 * statistics.stdev(ece)], abs=0.0051)
        secs = [rec["seconds"] for r in runs for rec in records(r)]
        assert float(row["time/epoch (s)"]) == pytest.approx(statistics.mean(secs), abs=0.0051)
        assert row["epochs"] == str(len(records(runs[0])))
        if all(records(r)[0]["dev_error"] is not None for r in runs):
            best = []
            for r in runs:
                recs = records(r)
                i = min(range(len(recs)), key=lambda j: (recs[j]["dev_error"], j))
                best.append(recs[i]["test_error"])
            assert numbers(row["best-dev test error (%)"]) == pytest.approx(
                [100 * statistics.mean(best), 100 * statistics.stdev(best)], abs=0.0051)
        else:
            assert row["best-dev test error (%)"] == "—"
        base = (key[0], key[1], "baseline")
        if key[2] != "baseline":
            b = 100 * statistics.mean(final[base])
            absolute, rel = numbers(row["error reduction"])
            assert absolute == pytest.approx(mean - b, abs=0.0051)
            arrow = "↓" if mean <= b else "↑"
            assert arrow in row["error reduction"]
            assert rel == pytest.approx(100 * abs(b - mean) / b, abs=0.051)


def test_table_equals_recomputation_from_metrics(tmp_path):
    groups = {}
    for model, dev in (("mlp", True), ("cnn", False)):
        for mode in MODES:
            groups[("toy", model, mode)] = [write_run(tmp_path, mode, s, model=model, dev=dev)
                                            for s in range(3)]
    md = build_table([tmp_path])  # a parent directory
    check_table_against_metrics(md, groups)
    # the same from the run directories themselves
    assert parse_table(build_table([p for runs in groups.values() for p in runs])) == \
        parse_table(md)


def test_one_seed_prints_mean_and_n1(tmp_path):
    r = write_run(tmp_path, "baseline", 0)
    row = parse_table(build_table([r]))[("toy", "mlp", "baseline")]
    err = records(r)[-1]["test_error"]
    assert row["test error (%)"] == f"{100 * err:.2f} (n=1)"
    assert row["n"] == "1"


def test_mode_without_baseline_says_so(tmp_path):
    write_run(tmp_path, "emb", 0)
    write_run(tmp_path, "emb", 1)
    row = parse_table(build_table([tmp_path]))[("toy", "mlp", "emb")]
    assert row["error reduction"] == "no baseline"


def test_incomplete_run_skipped_with_warning_or_strict_error(tmp_path, capsys):
    done = [write_run(tmp_path, "baseline", s) for s in range(2)]
    write_run(tmp_path, "baseline", 2, complete=False)
    md = build_table([tmp_path])
    assert "incomplete" in capsys.readouterr().err
    check_table_against_metrics(md, {("toy", "mlp", "baseline"): done})
    with pytest.raises(ValueError, match="incomplete.*result.json"):
        build_table([tmp_path], strict=True)
    assert main(["report", str(tmp_path), "--strict", "--out", str(tmp_path / "o")]) == 2
    assert "result.json" in capsys.readouterr().err


def test_other_run_format_is_an_error(tmp_path, capsys):
    newer = max(READABLE_FORMATS) + 1
    write_run(tmp_path, "baseline", 0)
    write_run(tmp_path, "emb", 0, run_format=newer)
    with pytest.raises(ValueError, match="run_format"):
        build_table([tmp_path])
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert f"run_format {newer}" in capsys.readouterr().err


def test_missing_dir_and_empty_dir_are_clear_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no run directory" in capsys.readouterr().err


def assert_png(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == size
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.var() > 100  # not a blank canvas


def test_report_command_writes_table_convergence_and_curves(tmp_path, capsys):
    groups = {("toy", "mlp", m): [write_run(tmp_path / "runs", m, s, epochs=6) for s in range(3)]
              for m in MODES}
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    check_table_against_metrics(printed, groups)
    report = (out / "report.md").read_text()
    errors = report[report.index("## Test error (%)"):]
    assert parse_table(printed) == parse_table(errors[errors.index("| dataset"):])

    # convergence: first epoch where each mode's mean curve is <= the baseline's final mean
    curves = {m: [statistics.mean(c) for c in zip(*[[r["test_error"] for r in records(p)]
                                                    for p in groups[("toy", "mlp", m)]])]
              for m in MODES}
    target = curves["baseline"][-1]
    conv = report[report.index("## Convergence"):]
    conv_rows = parse_table(conv[conv.index("| dataset"):])
    for m in MODES:
        expect = next((i + 1 for i, v in enumerate(curves[m]) if v <= target), None)
        cell = conv_rows[("toy", "mlp", m)]["epochs to reach it"]
        assert cell == (str(expect) if expect else "not within 6")

    png, svg = out / "curves_toy_mlp.png", out / "curves_toy_mlp.svg"
    assert_png(png, (640, 400))
    text = svg.read_text()
    assert "baseline (mean of 3)" in text and "emb (mean of 3)" in text
    assert "curves_toy_mlp.png" in report


def test_curve_figure_has_a_thin_line_per_seed_and_a_bold_mean(tmp_path):
    from labelemb.report.curves import plot_error_curves
    from labelemb.report.runs import load_runs
    from labelemb.report.table import summarize

    for m in MODES:
        for s in range(3):
            write_run(tmp_path, m, s)
    summaries = summarize(load_runs([tmp_path]))
    fig = plot_error_curves(summaries)
    lines = fig.axes[0].get_lines()
    thin = [ln for ln in lines if ln.get_linewidth() < 1]
    bold = [ln for ln in lines if ln.get_linewidth() >= 2]
    assert len(thin) == 6 and len(bold) == 2
    assert {ln.get_color() for ln in bold} == {ln.get_color() for ln in thin}
    assert len({ln.get_color() for ln in bold}) == 2  # one colour per mode
    for ln, m in zip(bold, MODES):
        runs = sorted(tmp_path.glob(f"toy-mlp-{m}-s*"))
        mean = [100 * statistics.mean(c)
                for c in zip(*[[r["test_error"] for r in records(p)] for p in runs])]
        assert list(ln.get_ydata()) == pytest.approx(mean)


def write_seq2seq_run(root: Path, mode: str, seed: int, evals: int = 3) -> Path:
    """A seq2seq run directory as engine/seq2seq.py writes it (scores 0-100)."""
    d = root / f"s2s-{mode}-s{seed}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "run_format": RUN_FORMAT, "task": "seq2seq", "mode": mode, "model": "lstm-attention",
        "dataset": "iwslt15", "seed": seed, "settings": {"select": "bleu"}}))
    rng = random.Random(f"s2s{mode}{seed}")
    with open(d / "metrics.jsonl", "w") as f:
        for e in range(1, evals + 1):
            f.write(json.dumps({"step": 100 * e, "epoch": e, "train_loss": 1.0, "terms": {},
                                "dev_bleu": 10 * e + rng.random(), "dev_loss": 2.0,
                                "seconds": 5 + rng.random(), "lr": 1e-3}) + "\n")
    (d / "result.json").write_text(json.dumps({
        "task": "seq2seq", "steps": 100 * evals, "best_dev_bleu": 0.0,
        "test_bleu": 20 + 5 * rng.random() + (1 if mode == "emb" else 0),
        "test_pairs": 50, "test_decode_seconds": 1.0}))
    return d


def test_seq2seq_runs_get_a_score_table_and_curves(tmp_path, capsys):
    runs = {m: [write_seq2seq_run(tmp_path / "r", m, s) for s in range(3)] for m in MODES}
    write_run(tmp_path / "r", "baseline", 0)  # a classification run alongside
    out = tmp_path / "o"
    assert main(["report", str(tmp_path / "r"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    s2s = md[md.index("## Sequence-to-sequence"):]
    rows = parse_table(s2s[s2s.index("| dataset"):])
    test = {m: [json.loads((p / "result.json").read_text())["test_bleu"] for p in runs[m]]
            for m in MODES}
    for m in MODES:
        row = rows[("iwslt15", "lstm-attention", m)]
        assert numbers(row["test bleu"]) == pytest.approx(
            [statistics.mean(test[m]), statistics.stdev(test[m])], abs=0.0051)
        best = [max(r["dev_bleu"] for r in records(p)) for p in runs[m]]
        assert numbers(row["best dev score"])[:2] == pytest.approx(
            [statistics.mean(best), statistics.stdev(best)], abs=0.0051)
        assert row["n"] == "3" and row["updates"] == "300"
    delta = statistics.mean(test["emb"]) - statistics.mean(test["baseline"])
    assert numbers(rows[("iwslt15", "lstm-attention", "emb")]["change vs baseline"]) == \
        pytest.approx([delta], abs=0.0051)
    assert_png(out / "curves_iwslt15_lstm-attention.png", (640, 400))
    assert_png(out / "curves_toy_mlp.png", (640, 400))
    assert "dev bleu" in (out / "curves_iwslt15_lstm-attention.svg").read_text()


def test_default_out_dir_is_report_in_the_common_parent(tmp_path, capsys):
    a = write_run(tmp_path / "runs", "baseline", 0)
    b = write_run(tmp_path / "runs", "emb", 0)
    assert main(["report", str(a), str(b)]) == 0
    assert (tmp_path / "runs" / "report" / "report.md").is_file()
    assert (tmp_path / "runs" / "report" / "curves_toy_mlp.png").is_file()


def test_equal_means_print_zero_change_not_minus_zero(tmp_path):
    a = write_run(tmp_path, "baseline", 0)
    b = write_run(tmp_path, "emb", 0)
    (b / "metrics.jsonl").write_text((a / "metrics.jsonl").read_text())
    row = parse_table(build_table([tmp_path]))[("toy", "mlp", "emb")]
    assert row["error reduction"] == "+0.00 (↓0.0%)"
