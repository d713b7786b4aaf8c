"""`labelemb report`'s calibration table, reliability diagram and Welch t-tests, checked against
recomputations from the runs' files (json, statistics and scipy's t distribution here)."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest
from PIL import Image
from scipy.stats import t as t_distribution

from labelemb.cli import main
from labelemb.report.calibration import pooled_bins
from test_report import numbers, parse_table, records, write_run

MODES = ("baseline", "emb", "ls")


def _calibration(rng: random.Random) -> dict:
    def measures() -> dict:
        count = [rng.randrange(0, 50) for _ in range(15)]
        return {"ece": rng.random() / 3, "adaptive_ece": rng.random() / 3, "nll": rng.random(),
                "brier": rng.random(), "error": 0.1,
                "reliability": {"count": count, "confidence": [rng.random() for _ in count],
                                "accuracy": [rng.random() for _ in count]}}
    return {"temperature": 0.2 + rng.random(), "raw": measures(), "calibrated": measures()}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = {m: [] for m in MODES}
    for mode in MODES:
        for seed in range(4):
            d = write_run(root, mode, seed)
            result = json.loads((d / "result.json").read_text())
            result["calibration"] = _calibration(random.Random(f"{mode}{seed}"))
            (d / "result.json").write_text(json.dumps(result))
            runs[mode].append(d)
    assert main(["report", str(root), "--out", str(root / "out")]) == 0
    return root / "out", runs


def _section(md: str, title: str) -> list[str]:
    part = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return [ln for ln in part.splitlines() if ln.startswith("| toy")]


def test_calibration_table_is_the_mean_and_std_over_seeds_of_raw_and_calibrated(report):
    out, runs = report
    rows = {ln.split("|")[3].strip(): ln for ln in
            _section((out / "report.md").read_text(), "Calibration")}
    assert set(rows) == set(MODES)
    for mode, dirs in runs.items():
        cals = [json.loads((d / "result.json").read_text())["calibration"] for d in dirs]
        cells = [c.strip() for c in rows[mode].strip("|").split("|")]
        t_mean = statistics.fmean(c["temperature"] for c in cals)
        assert numbers(cells[3])[0] == pytest.approx(t_mean, abs=1e-4)
        for which, i in (("raw", 0), ("calibrated", 2)):  # "m ± s → m ± s"
            ece = [100 * c[which]["ece"] for c in cals]
            got = numbers(cells[4])[i:i + 2]
            assert got == pytest.approx([statistics.fmean(ece), statistics.stdev(ece)], abs=0.006)


def test_main_table_shows_the_calibrated_ece_beside_the_raw(report):
    out, runs = report
    md = (out / "report.md").read_text()
    rows = parse_table(md[md.index("## Test error (%)"):])
    for mode, dirs in runs.items():
        row = rows[("toy", "mlp", mode)]
        assert list(row).index("calibrated ECE (%)") == list(row).index("ECE (%)") + 1
        ece = [100 * json.loads((d / "result.json").read_text())["calibration"]["calibrated"]["ece"]
               for d in dirs]
        assert numbers(row["calibrated ECE (%)"]) == pytest.approx(
            [statistics.fmean(ece), statistics.stdev(ece)], abs=0.0051)


def test_pooled_bins_weight_each_seed_by_its_counts():
    a = {"raw": {"reliability": {"count": [1, 0], "confidence": [0.2, 0.0], "accuracy": [1.0, 0]}}}
    b = {"raw": {"reliability": {"count": [3, 0], "confidence": [0.6, 0.0], "accuracy": [0.0, 0]}}}
    pooled = pooled_bins([a, b], "raw")
    assert pooled["count"] == [4, 0]
    assert pooled["confidence"][0] == pytest.approx(0.5) and pooled["accuracy"][0] == 0.25
    assert math.isnan(pooled["accuracy"][1])


def test_reliability_diagram_is_a_png_with_one_panel_per_mode(report):
    out, _ = report
    with Image.open(out / "reliability_toy_mlp.png") as img:
        assert img.format == "PNG" and img.size == (int(2.6 * len(MODES) * 100), 290)
    assert "reliability_toy_mlp.png" in (out / "report.md").read_text()


def test_paired_t_ci_and_p_of_emb_against_each_mode_of_the_same_seeds(report):
    """Every mode ran seeds 0-3: the seeds pair the runs, so the test is the paired t-test of
    the per-seed differences, recomputed here from the final test errors."""
    out, runs = report
    rows = _section((out / "report.md").read_text(), "Significance")
    assert len(rows) == 2
    emb = [records(r)[-1]["test_error"] for r in runs["emb"]]
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        other = [records(r)[-1]["test_error"] for r in runs[cells[3]]]
        d = [a - b for a, b in zip(emb, other)]
        se = statistics.stdev(d) / math.sqrt(4)
        t = statistics.fmean(d) / se
        half = t_distribution.ppf(0.975, 3) * se
        assert cells[6] == "paired"
        assert float(cells[7]) == pytest.approx(t, abs=0.006)
        assert float(cells[8]) == pytest.approx(2 * t_distribution.sf(abs(t), 3), rel=5e-3)
        assert numbers(cells[4])[0] == pytest.approx(100 * statistics.fmean(d), abs=0.006)
        assert numbers(cells[5]) == pytest.approx(
            [100 * (statistics.fmean(d) - half), 100 * (statistics.fmean(d) + half)], abs=0.006)


def test_a_variant_of_emb_is_tested_against_the_modes_without_a_label_embedding(tmp_path):
    """A sweep's re-run ("emb beta=0.75", "emb-fixed tau=1.0") gets its own t-tests against
    the modes without a label embedding (its question: does the chosen setting beat them?),
    not against emb, emb-fixed or each other; emb is still tested against every mode."""
    modes = (*MODES, "ols", "emb-fixed")
    runs = {m: [write_run(tmp_path / "study", m, s) for s in range(3)] for m in modes}
    for name, mode, options in (("emb beta=0.75", "emb", {"beta": 0.75}),
                                ("emb-fixed tau=1.0", "emb-fixed", {"tau": 1.0})):
        runs[name] = [write_run(tmp_path / name.replace(" ", "-"), mode, s) for s in range(10, 13)]
        for d in runs[name]:
            config = json.loads((d / "config.json").read_text())
            (d / "config.json").write_text(json.dumps({**config, "loss_options": options}))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    rows = [[c.strip() for c in ln.strip("|").split("|")]
            for ln in _section((tmp_path / "out" / "report.md").read_text(), "Significance")]
    pairs = sorted((r[2], r[3]) for r in rows)
    assert pairs == sorted(
        [("emb", m) for m in runs if m != "emb"]
        + [(v, m) for v in ("emb beta=0.75", "emb-fixed tau=1.0") for m in ("baseline", "ls", "ols")])
    rows = [r for r in rows if (r[2], r[3]) == ("emb beta=0.75", "baseline")]
    variant = [records(r)[-1]["test_error"] for r in runs["emb beta=0.75"]]
    base = [records(r)[-1]["test_error"] for r in runs["baseline"]]
    # seeds 10-12 against 0-2 do not pair: Welch's test, its interval on the Welch dof
    va, vb = statistics.variance(variant) / 3, statistics.variance(base) / 3
    diff = statistics.fmean(variant) - statistics.fmean(base)
    t = diff / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)  # Welch-Satterthwaite
    half = t_distribution.ppf(0.975, dof) * math.sqrt(va + vb)
    assert rows[0][6] == "Welch"
    assert float(rows[0][7]) == pytest.approx(t, abs=0.006)
    assert float(rows[0][8]) == pytest.approx(2 * t_distribution.sf(abs(t), dof), rel=5e-3)
    assert numbers(rows[0][5]) == pytest.approx([100 * (diff - half), 100 * (diff + half)],
                                                abs=0.006)
