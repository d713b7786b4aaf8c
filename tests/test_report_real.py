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
from test_report import assert_png, check_table_against_metrics, numbers, parse_table, records

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
        # neither the word itself nor a special symbol (<pad>, <unk>, <s>, </s>)
        others = [j for j in range(len(names)) if j != i and not names[j].startswith("<")]
        expect = sorted(others, key=lambda j: (-p[j], j))[:3]
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


def write_parallel_corpus(d: Path, n_train: int = 200, n_eval: int = 20) -> None:
    """A tiny word-substitution corpus: target word tK for source word sK."""
    import random

    rng = random.Random(0)
    d.mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        rows = [[rng.randrange(12) for _ in range(rng.randint(3, 6))] for _ in range(n)]
        (d / f"{split}.src").write_text("".join(" ".join(f"s{i}" for i in r) + "\n" for r in rows))
        (d / f"{split}.tgt").write_text("".join(" ".join(f"t{i}" for i in r) + "\n" for r in rows))


@pytest.mark.slow
def test_report_and_inspect_of_real_seq2seq_runs(tmp_path, capsys):
    import torch
    from safetensors import safe_open

    write_parallel_corpus(tmp_path / "data")
    runs = tmp_path / "runs"
    # every mode in one call, into runs/<mode>/seed-0
    assert main(["seq2seq", "train", "--task", "parallel", "--data-dir", str(tmp_path / "data"),
                 "--modes", ",".join(MODES), "--out", str(runs), "--emb-dim", "16",
                 "--hidden", "32", "--layers", "1", "--label-dim", "8", "--batch-size", "32",
                 "--threads", "1", "--max-len", "10", "--epochs", "2", "--eval-every", "4",
                 "--beam", "1", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["report", str(runs), "--out", str(tmp_path / "rep")]) == 0
    rows = parse_table(capsys.readouterr().out)
    bleu = {m: json.loads((runs / m / "seed-0" / "result.json").read_text())["test_bleu"]
            for m in MODES}
    for m in MODES:
        row = rows[("parallel", "lstm-attention", m)]
        assert row["test bleu"] == f"{bleu[m]:.2f} (n=1)"
        best = max(r["dev_bleu"] for r in records(runs / m / "seed-0"))
        assert row["best dev score"] == f"{best:.2f} (n=1) bleu"
    assert numbers(rows[("parallel", "lstm-attention", "emb")]["change vs baseline"]) == \
        pytest.approx([bleu["emb"] - bleu["baseline"]], abs=0.0051)
    assert_png(tmp_path / "rep" / "curves_parallel_lstm-attention.png", (640, 400))

    # nearest target words of the real compressed embedding, recomputed from its tensors
    out = tmp_path / "insp"
    assert main(["inspect", str(runs / "emb" / "seed-0"), "--words", "t3", "t7", "--top-k", "3",
                 "--out", str(out)]) == 0
    with safe_open(str(runs / "emb" / "seed-0" / "embedding.safetensors"), framework="pt") as f:
        names = json.loads(f.metadata()["class_names"])
        A, B, b = (f.get_tensor(k).double() for k in ("A", "B", "bias"))
    got = json.loads((out / "nearest.json").read_text())
    assert [g["label"] for g in got] == ["t3", "t7"]
    for g in got:
        i = names.index(g["label"])
        e = torch.relu(A[i] @ B.T + b)  # e_i = ReLU(A[i] B + b), one row only
        p = torch.softmax(e, 0).tolist()
        # neither the word itself nor a special symbol (<pad>, <unk>, <s>, </s>)
        others = [j for j in range(len(names)) if j != i and not names[j].startswith("<")]
        expect = sorted(others, key=lambda j: (-p[j], j))[:3]
        assert [n["index"] for n in g["nearest"]] == expect
        assert [n["probability"] for n in g["nearest"]] == pytest.approx(
            [p[j] for j in expect], rel=1e-4)


@pytest.mark.slow
def test_report_of_real_runs_with_other_settings_keeps_them_apart(runs, tmp_path):
    """A real second study of emb on more training images (a real `python -m labelemb train`
    process): reported as its own row, never pooled with the first study's emb seeds, without
    a cross-entropy comparison (none ran with its settings); the first study's emb gets its
    paired effect against baseline, recomputed here, and the forest plot is a real PNG."""
    from scipy.stats import t as t_distribution

    from cli_process import labelemb

    more = tmp_path / "more"
    done = labelemb("train", "--dataset", "fashion-mnist", "--data-dir", FMNIST, "--model", "mlp",
                    "--train-subset", "400", "--dev-subset", "100", "--test-subset", "200",
                    "--epochs", "2", "--seeds", "0,1", "--modes", "emb", "--device", "cpu",
                    "--threads", "1", "--out", more)
    assert done.returncode == 0, done.stderr
    rep, forest = tmp_path / "rep", tmp_path / "fig" / "forest.png"
    done = labelemb("report", runs, more, "--out", rep, "--forest", forest)
    assert done.returncode == 0, done.stderr
    assert "differ in train_subset" in done.stderr
    model = json.loads((runs / "emb" / "seed-0" / "config.json").read_text())["model"]
    md = (rep / "report.md").read_text()
    rows = parse_table(md[md.index("## Test error (%)"):])
    assert set(rows) == {("fashion-mnist", model, m) for m in
                         ("baseline", "emb train_subset=300", "emb train_subset=400")}
    assert all(row["n"] == "2" for row in rows.values())
    assert rows[("fashion-mnist", model, "emb train_subset=400")]["error reduction"] == \
        "no baseline"
    effects = md.split("## Effects against cross-entropy\n", 1)[1].split("\n## ", 1)[0]
    (line,) = [ln for ln in effects.splitlines() if ln.startswith("| classification")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3] == "emb train_subset=300" and cells[7] == "paired"
    d = [records(runs / "emb" / f"seed-{s}")[-1]["test_error"]
         - records(runs / "baseline" / f"seed-{s}")[-1]["test_error"] for s in (0, 1)]
    mean = statistics.fmean(d)
    half = t_distribution.ppf(0.975, 1) * statistics.stdev(d) / math.sqrt(2)
    assert numbers(cells[5])[0] == pytest.approx(100 * mean, abs=0.0051)
    assert numbers(cells[6]) == pytest.approx([100 * (mean - half), 100 * (mean + half)],
                                              abs=0.0051)
    assert_png(rep / "forest.png", (900, int(100 * (1.1 + 0.42))))
    assert_png(forest, (900, int(100 * (1.1 + 0.42))))
