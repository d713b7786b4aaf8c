"""`labelemb report` over several studies: runs grouped by their whole settings (never pooled
across differing settings), the effect of each mode against cross-entropy with its 95 %
confidence interval, paired or Welch t-test and Holm-adjusted p, and the forest plot. Run
folders are written here in run_format 2 (the unified engine's, /docs/REPORTS.md) and 1;
every number is recomputed here with json, statistics and scipy's t distribution."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest
from scipy.stats import t as t_distribution

from cli_process import assert_user_error, labelemb
from labelemb.cli import main
from labelemb.report.forest import plot_forest
from labelemb.report.runs import load_runs
from labelemb.report.significance import effects_vs_baseline, holm
from labelemb.report.summary import summarize
from test_report import assert_png, numbers, parse_table

RECIPE = {"batch_size": 100, "lr": 1e-3, "epochs": 3, "max_steps": None, "eval_every": None,
          "accumulate": 1, "clip": None, "train_subset": 1000, "beta": None}


def write_run(root: Path, task: str, mode: str, seed: int, value: float, *,
              settings: dict | None = None, dataset: str = "toy", model: str = "cnn") -> Path:
    """A finished run in run_format 2: config.json, metrics.jsonl, result.json."""
    d = root / mode / f"seed-{seed}"
    d.mkdir(parents=True)
    cls = task == "classification"
    metric, higher = ("test_error", False) if cls else ("test_bleu", True)
    shared = {"seeds": [seed], "modes": [mode], "out": str(root), "threads": 1,
              "device": "cpu", "resume": False, "overwrite": False, "data_dir": str(root)}
    (d / "config.json").write_text(json.dumps({
        "run_format": 2, "labelemb_version": "test", "task": task, "mode": mode, "seed": seed,
        "dataset": dataset, "model": model,
        "settings": {**RECIPE, **(settings or {}), **shared}}))
    record = {"step": 30, "epoch": 3, "train_loss": 0.5, "terms": {}, "lr": 1e-3,
              "seconds": 1.0, "eval_seconds": 0.5, "soft_ce_weight": 0.5}
    record.update({"train_error": 0.1, "dev_error": value, "test_error": value,
                   "test_loss": 0.3, "test_ece": 0.02} if cls else
                  {"dev_bleu": value - 1, "dev_loss": 2.0})
    (d / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    (d / "result.json").write_text(json.dumps({
        "task": task, "mode": mode, "seed": seed, "steps": 30, "epochs": 3, "best_step": 30,
        "primary_metric": metric, "higher_is_better": higher, metric: value,
        "train_seconds": 3.0, "eval_seconds": 1.5, "seconds_per_epoch": 1.0,
        "parameters": 1000}))
    return d


def study(root: Path, task: str, means: dict[str, float], seeds: dict[str, list[int]],
          **kw) -> dict[str, list[float]]:
    """Runs of each mode (its own seeds) around its mean; returns the values by mode."""
    out = {}
    for mode, mean in means.items():
        rng = random.Random(f"{root.name}{mode}")  # the same values in every session
        out[mode] = [mean + rng.gauss(0, mean / 20) for _ in seeds[mode]]
        for seed, value in zip(seeds[mode], out[mode]):
            write_run(root, task, mode, seed, value, **kw)
    return out


def section_rows(md: str, title: str) -> list[list[str]]:
    part = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in part.splitlines() if ln.startswith("| ")][1:]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def by_hand_test(a: list[float], b: list[float], paired: bool) -> tuple[float, float, float,
                                                                           float]:
    """(difference, ci low, ci high, p) of a paired or Welch t-test, from its formulas."""
    if paired:
        d = [x - y for x, y in zip(a, b)]
        se, dof = statistics.stdev(d) / math.sqrt(len(d)), len(d) - 1
    else:
        va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
        se = math.sqrt(va + vb)
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    diff = statistics.fmean(a) - statistics.fmean(b)
    half = t_distribution.ppf(0.975, dof) * se
    return diff, diff - half, diff + half, 2 * t_distribution.sf(abs(diff / se), dof)


def by_hand_holm(p: list[float]) -> list[float]:
    """Holm: p_(i) * (m - i + 1) for the i-th smallest (1-based), running maximum, cap 1."""
    ranked = sorted(range(len(p)), key=lambda i: p[i])
    out, best = [0.0] * len(p), 0.0
    for i, j in enumerate(ranked, start=1):
        best = max(best, min(1.0, p[j] * (len(p) - i + 1)))
        out[j] = best
    return out


def test_holm_on_hand_worked_examples():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.02]) == [0.02]
    got = holm([0.04, float("nan"), 0.01])
    assert got[0] == pytest.approx(0.04) and math.isnan(got[1]) and got[2] == pytest.approx(0.02)


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Three studies in two tasks: classification (paired seeds 0-4), the same with an emb
    variant of other seeds (Welch), seq2seq (paired seeds 1-5)."""
    root = tmp_path_factory.mktemp("studies")
    fm = study(root / "fm", "classification", {"baseline": 0.12, "emb": 0.11, "ls": 0.115},
               {m: list(range(5)) for m in ("baseline", "emb", "ls")})
    sharp = study(root / "fm-sharp", "classification", {"emb": 0.10}, {"emb": [10, 11, 12]},
                  settings={"beta": 0.75})
    mt = study(root / "mt", "seq2seq", {"baseline": 18.0, "emb": 19.0},
               {m: [1, 2, 3, 4, 5] for m in ("baseline", "emb")}, dataset="bible-en-es",
               model="lstm-attention", settings={"chunked_loss": False})
    return root, {"fm": fm, "sharp": sharp["emb"], "mt": mt}


def test_effects_ci_tests_and_holm_equal_their_recomputation(studies, tmp_path, capsys):
    root, v = studies
    out, forest = tmp_path / "rep", tmp_path / "figures" / "forest.png"
    assert main(["report", str(root / "fm"), str(root / "fm-sharp"), str(root / "mt"),
                 "--out", str(out), "--forest", str(forest)]) == 0
    rows = {(r[2], r[3]): r for r in section_rows((out / "report.md").read_text(),
                                                  "Effects against cross-entropy")}
    expect = {("cnn", "emb"): (v["fm"]["emb"], v["fm"]["baseline"], True, 100),
              ("cnn", "ls"): (v["fm"]["ls"], v["fm"]["baseline"], True, 100),
              ("cnn", "emb beta=0.75"): (v["sharp"], v["fm"]["baseline"], False, 100),
              ("lstm-attention", "emb"): (v["mt"]["emb"], v["mt"]["baseline"], True, 1)}
    assert set(rows) == set(expect)
    hand = {k: by_hand_test(a, b, paired) for k, (a, b, paired, _) in expect.items()}
    family = [k for k in expect if k[1] != "ls"]  # the label-embedding modes, all tasks
    adjusted = dict(zip(family, by_hand_holm([hand[k][3] for k in family])))
    adjusted[("cnn", "ls")] = hand[("cnn", "ls")][3]  # alone in its family
    for key, (_, _, paired, scale) in expect.items():
        row, (diff, low, high, p) = rows[key], hand[key]
        assert row[7] == ("paired" if paired else "Welch")
        assert numbers(row[5])[0] == pytest.approx(scale * diff, abs=0.0051)
        assert numbers(row[6]) == pytest.approx([scale * low, scale * high], abs=0.0051)
        assert float(row[8]) == pytest.approx(p, rel=5e-3)  # p printed to 3 significant digits
        assert float(row[9]) == pytest.approx(adjusted[key], rel=5e-3)  # p printed to 3 significant digits
        assert row[10] == ("other losses" if key[1] == "ls" else "label embedding")
    assert "| fm" not in (out / "report.md").read_text()  # the study folders are no dataset
    with open(forest, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert_png(out / "forest.png", (900, int(100 * (1.1 + 0.42 * 4))))
    assert "forest.png" in (out / "report.md").read_text()


def test_forest_rows_are_improvements_right_of_zero_when_better(studies):
    root, v = studies
    effects = effects_vs_baseline(summarize(load_runs([root])))
    ax = plot_forest(effects).axes[0]
    at = dict(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())))
    n = len(effects)
    assert [at[n - 1 - i] for i in range(n)] == [  # the first comparison at the top
        f"{c.dataset} · {c.model}: {c.mode} ({c.metric[5:]})" for c in effects]
    markers = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert len(markers) == len(effects)
    for c, ln in zip(effects, markers):
        if c.task == "seq2seq":  # BLEU: higher is better, points as they are
            expect = statistics.fmean(v["mt"]["emb"]) - statistics.fmean(v["mt"]["baseline"])
        else:  # errors: lower is better, in percentage points
            expect = -100 * c.difference
        assert ln.get_xdata()[0] == pytest.approx(expect)
    # the emb studies were made better than cross-entropy (by 1 point of error, 1 BLEU):
    # right of the zero line
    assert all(ln.get_xdata()[0] > 0 for c, ln in zip(effects, markers) if c.mode.startswith("emb"))


def write_v1_seq2seq(root: Path, mode: str, seed: int, max_steps: int) -> Path:
    """A run_format 1 seq2seq run, as engine/seq2seq.py wrote them before the unification."""
    d = root / f"seq2seq-{mode}-seed{seed}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "run_format": 1, "task": "seq2seq", "mode": mode, "seed": seed,
        "model": "lstm-attention", "dataset": "parallel",
        "settings": {"select": "bleu", "mode": mode, "seed": seed, "max_steps": max_steps,
                     "eval_every": 50, "out": str(d), "threads": 1, "batch_size": 64}}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": max_steps, "dev_bleu": 5.0,
                                                 "seconds": 3.0}) + "\n")
    (d / "result.json").write_text(json.dumps({
        "task": "seq2seq", "steps": max_steps, "best_dev_bleu": 5.0,
        "test_bleu": max_steps / 10, "test_pairs": 20}))
    return d


def test_runs_of_other_settings_are_never_pooled_and_the_report_says_which(tmp_path, capsys):
    """The issue's case: seq2seq runs of 100, 400 and 450 updates were pooled as three seeds
    ("emb 65.36 ± 52.75, n=3"). Each is its own row now, named by what differs."""
    for seed, steps in ((1, 100), (2, 400), (3, 450)):
        write_v1_seq2seq(tmp_path / "runs", "emb", seed, steps)
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "differ in max_steps" in captured.err and "not pooled" in captured.err
    rows = parse_table(captured.out)
    for steps in (100, 400, 450):
        row = rows[("parallel", "lstm-attention", f"emb max_steps={steps}")]
        assert row["n"] == "1" and row["test bleu"] == f"{steps / 10:.2f} (n=1)"
    differ = section_rows((out / "report.md").read_text(), "Settings that differ between rows")
    assert sorted(r[3] for r in differ) == ["100", "400", "450"]


def test_where_and_how_fast_a_run_ran_does_not_split_a_group(tmp_path):
    """Seeds started by several commands (other --seeds, --out, --threads, --device,
    --eval-batch-size, --data-dir) are one group; a changed --train-subset or --batch-size is
    not, and each is compared with the cross-entropy runs of its own recipe."""
    for seed in range(3):
        for mode in ("baseline", "emb"):
            d = write_run(tmp_path / f"part{seed}", "classification", mode, seed, 0.1 + seed / 100)
            config = json.loads((d / "config.json").read_text())
            config["settings"].update(threads=seed + 1, device=f"cuda:{seed}",
                                      eval_batch_size=100 * (seed + 1), seeds=[seed, 7])
            (d / "config.json").write_text(json.dumps(config))
        write_run(tmp_path / "small", "classification", "emb", seed, 0.2,
                  settings={"train_subset": 500})
    write_run(tmp_path / "big-batch", "classification", "emb", 0, 0.3, settings={"batch_size": 50})
    summaries = summarize(load_runs([tmp_path]))
    got = {s.mode: (s.n, s.baseline.mode if s.baseline else None) for s in summaries}
    assert got == {"baseline": (3, "baseline"), "emb batch_size=100 train_subset=1000": (3, "baseline"),
                   "emb batch_size=100 train_subset=500": (3, None),
                   "emb batch_size=50 train_subset=1000": (1, None)}


def write_hf_run(root: Path, mode: str, seed: int, accuracy: float,
                 loss_options: dict | None = None) -> Path:
    """A run of examples/hf_text_classification.py: result.json naming its primary measure,
    and the Transformers model folder (whose config.json is no run) inside it."""
    d = root / mode / f"seed-{seed}"
    (d / "model").mkdir(parents=True)
    (d / "model" / "config.json").write_text(json.dumps({"model_type": "labelemb"}))
    (d / "result.json").write_text(json.dumps({
        "task": "classification", "mode": mode, "seed": seed, "dataset": "fortunes",
        "model": "bert-2x64", "settings": {"epochs": 2, "loss_options": loss_options or {}},
        "primary_metric": "test_accuracy", "higher_is_better": True,
        "test_accuracy": accuracy}))
    return d


def test_transformers_example_runs_are_compared_with_ce(tmp_path, capsys):
    acc = {"ce": [0.39, 0.40, 0.395], "emb": [0.41, 0.405, 0.40]}
    for mode, values in acc.items():
        for seed, a in enumerate(values):
            write_hf_run(tmp_path / "hf", mode, seed, a)
    for seed, a in enumerate([0.42, 0.41, 0.43]):  # a second study, sharing the tokenizer
        write_hf_run(tmp_path / "hf-sharp", "emb", seed, a, {"soft_target_temperature": 0.5})
    (tmp_path / "hf" / "tokenizer").mkdir()
    (tmp_path / "hf" / "tokenizer" / "tokenizer_config.json").write_text("{}")
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "hf"), str(tmp_path / "hf-sharp"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    primary = {r[2]: r for r in section_rows(md, "Primary measure")}
    assert set(primary) == {"ce", "emb", "emb soft_target_temperature=0.5"}
    assert numbers(primary["emb"][4]) == pytest.approx(
        [100 * statistics.fmean(acc["emb"]), 100 * statistics.stdev(acc["emb"])], abs=0.0051)
    effect, sharp = section_rows(md, "Effects against cross-entropy")
    assert sharp[3] == "emb soft_target_temperature=0.5" and float(sharp[5]) > 0
    diff, low, high, p = by_hand_test(acc["emb"], acc["ce"], paired=True)
    assert numbers(effect[5])[0] == pytest.approx(100 * diff, abs=0.0051)
    assert numbers(effect[6]) == pytest.approx([100 * low, 100 * high], abs=0.0051)
    assert float(effect[8]) == pytest.approx(p, rel=5e-3)  # p printed to 3 significant digits


@pytest.mark.parametrize("content, says", [
    (b"[1, 2, 3]", "expected a JSON object, got list"),
    (b"\xff\xfe{\"test_error\": 0.1}", "is not UTF-8"),
])
def test_a_damaged_result_json_is_one_line_naming_it(tmp_path, content, says):
    """Issue 27: `[1, 2, 3]` exited 0 and dropped the calibration row; non-UTF-8 named no
    file. Both are now one line naming the file, exit 2, in a real process."""
    write_run(tmp_path / "runs", "classification", "baseline", 0, 0.1)
    bad = write_run(tmp_path / "runs", "classification", "emb", 0, 0.1) / "result.json"
    bad.write_bytes(content)
    done = labelemb("report", tmp_path / "runs", "--out", tmp_path / "rep")
    assert_user_error(done, str(bad), pattern=says)
    assert not (tmp_path / "rep" / "report.md").exists()


def test_forest_flag_must_name_a_png(tmp_path):
    write_run(tmp_path / "runs", "classification", "baseline", 0, 0.1)
    done = labelemb("report", tmp_path / "runs", "--forest", tmp_path / "f.svg")
    assert_user_error(done, "--forest", pattern=r"\.png")


def test_ignore_setting_pools_what_the_user_names_and_the_report_says_so(tmp_path):
    """A format-1 run that did not record a setting the format-2 runs have (here `clip`)
    is a row of its own, until --ignore-setting names it; report.md lists it."""
    for seed in range(2):
        write_run(tmp_path / "new", "classification", "emb", seed + 2, 0.1, settings={"clip": 1.0})
        old = write_run(tmp_path / "old", "classification", "emb", seed, 0.1)
        config = json.loads((old / "config.json").read_text())
        config["run_format"] = 1
        config["settings"].pop("clip")
        (old / "config.json").write_text(json.dumps(config))
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "a")]) == 0
    rows = parse_table((tmp_path / "a" / "report.md").read_text().split("## Test error (%)")[1])
    assert {k[2]: v["n"] for k, v in rows.items()} == {"emb clip=1.0": "2", "emb": "2"}
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "b"),
                 "--ignore-setting", "clip"]) == 0
    md = (tmp_path / "b" / "report.md").read_text()
    assert {k[2]: v["n"] for k, v in parse_table(md.split("## Test error (%)")[1]).items()} \
        == {"emb": "4"}
    assert "ignored on request (`--ignore-setting`): `clip`" in md


def test_runs_without_their_primary_measure_are_shown_not_compared(tmp_path, capsys):
    """Seq2seq runs trained with --test-prefix none have no test_bleu: the report still shows
    them (dev scores) with a warning naming the file, and compares nothing; a primary measure
    that is not a number is a damaged folder, named."""
    for mode in ("baseline", "emb"):
        for seed in (1, 2):
            d = write_v1_seq2seq(tmp_path / "runs", mode, seed, 400)
            result = json.loads((d / "result.json").read_text())
            del result["test_bleu"]
            (d / "result.json").write_text(json.dumps(result))
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    captured = capsys.readouterr()
    assert "has no 'test_bleu'" in captured.err and "left out of the effects" in captured.err
    rows = parse_table(captured.out)
    assert rows[("parallel", "lstm-attention", "emb")]["best dev score"] == "5.00 ± 0.00 bleu"
    assert "## Effects against cross-entropy" not in (tmp_path / "rep" / "report.md").read_text()
    bad = tmp_path / "runs" / "seq2seq-emb-seed1" / "result.json"
    bad.write_text(json.dumps({"test_bleu": "high"}))
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 2
    assert str(bad) in capsys.readouterr().err


def test_the_same_seed_in_two_folders_is_refused_not_pooled_as_two(tmp_path):
    """Copies of one run in two study folders have the same settings (``out`` is where a run
    ran): pooling them would count one seed twice."""
    for folder in ("a", "b"):
        write_run(tmp_path / folder, "classification", "baseline", 0, 0.1)
        write_run(tmp_path / folder, "classification", "emb", 0, 0.09)
    write_run(tmp_path / "a", "classification", "baseline", 1, 0.12)
    done = labelemb("report", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "rep")
    assert_user_error(done, "seed 0", str(tmp_path / "a"), str(tmp_path / "b"), alone=False)


def test_forest_with_nothing_to_plot_is_an_error_not_a_stale_figure(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "runs", "classification", "baseline", seed, 0.1 + seed / 100)
    figure = tmp_path / "figures" / "forest.png"
    done = labelemb("report", tmp_path / "runs", "--out", tmp_path / "rep", "--forest", figure)
    assert_user_error(done, "--forest", "no effect to plot", alone=False)
    assert not figure.exists()
