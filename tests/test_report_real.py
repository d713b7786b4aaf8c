"""Report and inspect on SHORT REAL RUNS: `labelemb train` on a few hundred real Fashion-MNIST
images (the MLP, cheaper than the CNN on a shared 2-core CI; 2 epochs, 2 seeds, baseline +
emb), then every number of the report recomputed here
from the runs' metrics.jsonl, and the nearest labels from the saved embedding file."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from PIL import Image

from labelemb.cli import main
from test_report import assert_png, check_table_against_metrics, parse_table, records

FMNIST = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(
    not (FMNIST / "train-images-idx3-ubyte.gz").is_file(), reason="Fashion-MNIST not installed")

MODES = ("baseline", "emb")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "runs"
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", str(FMNIST),
                 "--model", "mlp",
                 "--train-subset", "300", "--dev-subset", "100", "--test-subset", "200",
                 "--epochs", "2", "--seeds", "0,1", "--modes", ",".join(MODES),
                 "--device", "cpu", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_report_of_real_runs_equals_recomputation(runs, tmp_path, capsys):
    capsys.readouterr()
    rep = tmp_path / "rep"
    assert main(["report", str(runs), "--out", str(rep)]) == 0
    printed = capsys.readouterr().out
    dirs = {m: sorted((runs / m).glob("seed-*")) for m in MODES}
    assert all(len(d) == 2 for d in dirs.values())
    model = json.loads((dirs["emb"][0] / "config.json").read_text())["model"]
    groups = {("fashion-mnist", model, m): dirs[m] for m in MODES}
    check_table_against_metrics(printed, groups)  # every cell vs statistics.mean/stdev
    rows = parse_table(printed)
    for m in MODES:
        assert rows[("fashion-mnist", model, m)]["epochs"] == "2"
        assert rows[("fashion-mnist", model, m)]["n"] == "2"
        assert all(len(records(d)) == 2 for d in dirs[m])
    assert_png(rep / f"curves_fashion-mnist_{model}.png", (640, 400))
    svg = (rep / f"curves_fashion-mnist_{model}.svg").read_text()
    assert "baseline (mean of 2)" in svg and "emb (mean of 2)" in svg


@pytest.mark.slow
def test_inspect_real_embedding(runs, tmp_path, capsys):
    from safetensors import safe_open

    run = runs / "emb" / "seed-0"
    names = json.loads((run / "config.json").read_text())["class_names"]
    out = tmp_path / "insp"
    assert main(["inspect", str(run), "--classes", "Coat", "Shirt", "8", "--top-k", "3",
                 "--out", str(out)]) == 0
    with safe_open(str(run / "embedding.safetensors"), framework="pt") as f:
        E = f.get_tensor("weight").tolist()
    got = json.loads((out / "nearest.json").read_text())
    assert [g["label"] for g in got] == ["Coat", "Shirt", "Bag"]
    for g in got:
        i = g["index"]
        z = sum(math.exp(v) for v in E[i])
        p = [math.exp(v) / z for v in E[i]]
        expect = sorted((j for j in range(len(names)) if j != i), key=lambda j: (-p[j], j))[:3]
        assert [n["index"] for n in g["nearest"]] == expect
        assert [n["label"] for n in g["nearest"]] == [names[j] for j in expect]
        assert [n["probability"] for n in g["nearest"]] == pytest.approx([p[j] for j in expect])
    with Image.open(out / "heatmap.png") as im:
        size = im.size
    assert_png(out / "heatmap.png", size)
    md = (out / "nearest.md").read_text()
    assert md.count("\n| ") == 3 and "| Coat |" in md
    # the trained embedding moved away from its identity initialisation
    assert statistics.pstdev([E[i][j] for i in range(10) for j in range(10) if i != j]) > 0
