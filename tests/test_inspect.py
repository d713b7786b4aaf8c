"""`labelemb inspect`: nearest labels on hand-made embeddings whose neighbours are known, and
heatmaps that open, have their size, are not blank and carry the class names asked for."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from labelemb import CompressedLabelEmbedding, LabelEmbedding, save_embedding
from labelemb.cli import main
from labelemb.runs.rundir import RUN_FORMAT
from labelemb.report.heatmap import plot_heatmap
from labelemb.report.nearest import nearest_labels, resolve_classes, softmax_rows

NAMES = ["cat", "dog", "car", "truck", "ship", "plane"]
# Known similarity, row i -> the other labels in decreasing order of E[i, j].
ORDER = {0: [1, 5, 4, 3, 2], 1: [0, 2, 3, 4, 5], 2: [3, 4, 5, 0, 1],
         3: [2, 5, 4, 1, 0], 4: [5, 3, 2, 1, 0], 5: [4, 0, 2, 1, 3]}


def handmade_full() -> LabelEmbedding:
    """E[i, i] = 5 (largest), then 2.0, 1.5, 1.0, 0.5, 0.0 along ORDER[i]."""
    emb = LabelEmbedding(len(NAMES), class_names=NAMES)
    with torch.no_grad():
        emb.weight.fill_(0.0)
        for i, order in ORDER.items():
            emb.weight[i, i] = 5.0
            for rank, j in enumerate(order):
                emb.weight[i, j] = 2.0 - 0.5 * rank
    return emb


def softmax_by_hand(row: list[float]) -> list[float]:
    z = sum(math.exp(v) for v in row)
    return [math.exp(v) / z for v in row]


def test_nearest_full_embedding_known_neighbours():
    emb = handmade_full()
    near = nearest_labels(emb, k=3)
    for i, order in ORDER.items():
        assert [n.index for n in near[i]] == order[:3]
        assert [n.name for n in near[i]] == [NAMES[j] for j in order[:3]]
        assert i not in [n.index for n in near[i]]  # never its own neighbour
        p = softmax_by_hand(emb.weight.detach()[i].tolist())
        assert [n.probability for n in near[i]] == pytest.approx([p[j] for j in order[:3]])
    # k larger than C - 1 is capped, still without the label itself
    assert [n.index for n in nearest_labels(emb, [2], k=50)[2]] == ORDER[2]


class RowCountingEmbedding(CompressedLabelEmbedding):
    """Records how many rows each forward builds (instrumentation, not a mock)."""

    max_rows = 0

    def forward(self, target):
        RowCountingEmbedding.max_rows = max(RowCountingEmbedding.max_rows, target.numel())
        return super().forward(target)


def handmade_compressed(V: int = 4000, groups: int = 4) -> CompressedLabelEmbedding:
    """e_i[j] = ReLU(A[i] . B[j]) = 0.01 * j when j and i share a group (j % 4), else 0.

    So the nearest labels of i are the other members of its group, highest index first.
    """
    emb = RowCountingEmbedding(V, dim=groups, class_names=[f"w{j}" for j in range(V)])
    with torch.no_grad():
        emb.A.weight.zero_()
        emb.B.weight.zero_()
        emb.B.bias.zero_()
        for j in range(V):
            emb.A.weight[j, j % groups] = 1.0
            emb.B.weight[j, j % groups] = 0.01 * j
    return emb


def test_nearest_compressed_only_builds_requested_rows():
    V = 4000
    emb = handmade_compressed(V)
    RowCountingEmbedding.max_rows = 0
    words = resolve_classes(emb.class_names, ["w5", "w3998", "w2"])
    assert words == [5, 3998, 2]
    near = nearest_labels(emb, words, k=4)
    assert RowCountingEmbedding.max_rows == 3  # three rows of V, never V x V
    for i in words:
        group = [j for j in range(V - 1, -1, -1) if j % 4 == i % 4 and j != i]
        assert [n.index for n in near[i]] == group[:4]
        # softmax weight of j in row i, by hand: exp(0.01 j) / (sum over the group + zeros)
        z = sum(math.exp(0.01 * j) for j in range(V) if j % 4 == i % 4) + (V - V // 4)
        assert [n.probability for n in near[i]] == pytest.approx(
            [math.exp(0.01 * j) / z for j in group[:4]], rel=1e-4)


def test_resolve_classes_names_then_indices_and_errors():
    assert resolve_classes(NAMES, ["dog", "4", 0]) == [1, 4, 0]
    assert resolve_classes(["10", "a", "b"] + [f"x{i}" for i in range(8)], ["10"]) == [0]
    with pytest.raises(ValueError, match="unknown class.*'horse'"):
        resolve_classes(NAMES, ["horse"])
    with pytest.raises(ValueError, match="unknown"):
        resolve_classes(NAMES, ["6"])


def assert_png(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.var() > 100


def test_heatmap_axes_carry_the_chosen_class_names_and_the_softmax():
    emb = handmade_full()
    shown = [3, 0, 5]
    probs = softmax_rows(emb, shown)[:, shown]
    fig = plot_heatmap(probs, [NAMES[i] for i in shown])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["truck", "cat", "plane"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["truck", "cat", "plane"]
    data = ax.images[0].get_array()
    for r, i in enumerate(shown):
        p = softmax_by_hand(emb.weight.detach()[i].tolist())  # over all 6 classes
        assert list(data[r]) == pytest.approx([p[j] for j in shown], rel=1e-5)


def make_run(root: Path, emb, mode: str = "emb", complete: bool = True) -> Path:
    d = root / "run"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({
        "run_format": RUN_FORMAT, "task": "classification", "mode": mode, "model": "mlp",
        "dataset": "toy", "seed": 0, "class_names": emb.class_names if emb else NAMES}))
    (d / "metrics.jsonl").write_text("")
    if emb is not None:
        save_embedding(emb, d / "embedding.safetensors")
    if complete:
        (d / "result.json").write_text("{}")
    return d


def test_inspect_command_full_embedding(tmp_path, capsys):
    run = make_run(tmp_path, handmade_full())
    assert main(["inspect", str(run), "--classes", "truck", "0", "plane", "--top-k", "2"]) == 0
    printed = capsys.readouterr().out
    out = run / "inspect"  # the default
    assert printed == (out / "nearest.md").read_text()
    assert "| truck | car (" in printed and "| cat | dog (" in printed
    got = json.loads((out / "nearest.json").read_text())
    assert [g["label"] for g in got] == ["truck", "cat", "plane"]
    for g in got:
        assert [n["index"] for n in g["nearest"]] == ORDER[g["index"]][:2]
    with Image.open(out / "heatmap.png") as im:
        size = im.size
    assert size[0] > 300 and size[1] > 300
    assert_png(out / "heatmap.png", size)


def test_inspect_heatmap_png_size_matches_figure(tmp_path):
    from labelemb.commands.inspect import inspect_run

    emb = handmade_full()
    run = make_run(tmp_path, emb)
    paths = inspect_run(run, tmp_path / "o", classes=["cat", "dog", "ship"])
    probs = softmax_rows(emb, [0, 1, 4])[:, [0, 1, 4]]
    fig = plot_heatmap(probs, ["cat", "dog", "ship"],
                       title="softmax(E), full label embedding: toy")
    w, h = fig.get_size_inches() * fig.dpi
    assert_png(paths["heatmap"], (round(w), round(h)))


def test_inspect_compressed_words(tmp_path, capsys):
    emb = handmade_compressed(400)
    run = make_run(tmp_path, emb)
    out = tmp_path / "o"
    assert main(["inspect", str(run), "--words", "w7", "w100", "--top-k", "3",
                 "--out", str(out)]) == 0
    got = {g["label"]: [n["label"] for n in g["nearest"]]
           for g in json.loads((out / "nearest.json").read_text())}
    assert got == {"w7": ["w399", "w395", "w391"], "w100": ["w396", "w392", "w388"]}
    with Image.open(out / "heatmap.png") as im:
        size = im.size
    assert_png(out / "heatmap.png", size)


def test_inspect_errors(tmp_path, capsys):
    run = make_run(tmp_path, handmade_full())
    assert main(["inspect", str(run), "--classes", "horse"]) == 2
    assert "horse" in capsys.readouterr().err
    base = make_run(tmp_path / "b", None, mode="baseline")
    assert main(["inspect", str(base)]) == 2
    assert "no embedding.safetensors" in capsys.readouterr().err
    old = make_run(tmp_path / "old", handmade_full())
    cfg = json.loads((old / "config.json").read_text())
    cfg["run_format"] = RUN_FORMAT + 1
    (old / "config.json").write_text(json.dumps(cfg))
    assert main(["inspect", str(old)]) == 2
    assert "run_format" in capsys.readouterr().err


def test_heatmap_hide_diagonal_blanks_only_self_similarity():
    emb = handmade_full()
    probs = softmax_rows(emb, range(6))
    data = plot_heatmap(probs, NAMES, hide_diagonal=True).axes[0].images[0].get_array()
    full = probs.numpy()
    for r in range(6):
        for c in range(6):
            if r == c:
                assert np.ma.is_masked(data[r, c]) or np.isnan(data[r, c])
            else:
                assert float(data[r, c]) == pytest.approx(float(full[r, c]))


def test_inspect_large_vocabulary_defaults_skip_special_tokens(tmp_path):
    from labelemb.commands.inspect import ALL_ROWS_MAX, inspect_run

    V = ALL_ROWS_MAX + 100
    names = ["<pad>", "<unk>", "<s>", "</s>"] + [f"w{j}" for j in range(V - 4)]
    emb = CompressedLabelEmbedding(V, dim=4, class_names=names)
    run = make_run(tmp_path, emb)
    paths = inspect_run(run, top_k=2)
    got = json.loads(paths["json"].read_text())
    assert [g["label"] for g in got] == [f"w{j}" for j in range(20)]
    assert all(len(g["nearest"]) == 2 for g in got)


def test_inspect_never_lists_a_special_token_as_a_neighbour(tmp_path):
    """``inspect --words`` listed ``<unk>`` as a neighbour (``seq2seq neighbours`` did not).
    Here every row weights ``<unk>`` and ``</s>`` most, so only leaving them out keeps them
    out; the real words keep their order."""
    from labelemb.commands.inspect import inspect_run

    names = ["<pad>", "<unk>", "<s>", "</s>", "cat", "dog", "car", "truck"]
    emb = LabelEmbedding(len(names), class_names=names)
    with torch.no_grad():
        emb.weight.fill_(0.0)
        emb.weight[:, 1] = 4.0  # <unk>
        emb.weight[:, 3] = 3.0  # </s>
        for i, j in [(4, 5), (5, 4), (6, 7), (7, 6)]:
            emb.weight[i, j] = 2.0
    run = make_run(tmp_path, emb)
    for words in (["cat", "truck", "<unk>"], None):  # asked for, and the default rows
        paths = inspect_run(run, classes=words, top_k=3, out=tmp_path / f"o{words is None}")
        got = {g["label"]: [n["label"] for n in g["nearest"]]
               for g in json.loads(paths["json"].read_text())}
        assert not {n for ns in got.values() for n in ns} & set(names[:4]), got
        assert got["cat"][0] == "dog" and got["truck"][0] == "car"
        assert all(len(ns) == 3 for ns in got.values())
        assert ("<unk>" in got) == (words is not None)  # its own row, when asked for
