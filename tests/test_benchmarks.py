"""Every benchmark script runs in --quick mode and reports its figures (no timing asserted)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, str(BENCH / script), "--quick", *args], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_train_step_quick_reports_a_ratio_per_model(tmp_path):
    stdout = _run("train_step.py", "--json", str(tmp_path / "r.json"))
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert set(results) == {"cnn", "mlp", "resnet8"}
    assert "loss eager" in stdout
    for name, r in results.items():
        (run,) = r["runs"]
        assert run["compiled_graphs"] == 0
        assert _positive(run["baseline_ms"]) and _positive(run["label_embedding_ms"])
        assert run["ratio"] == pytest.approx(run["label_embedding_ms"] / run["baseline_ms"])
        assert r["ratio"] == run["ratio"] and f"ratio {r['ratio']:.3f}" in stdout


def test_train_step_repeats_and_reports_the_median_with_the_compiled_loss(tmp_path):
    stdout = _run("train_step.py", "--models", "mlp", "--repeat", "3", "--compile-loss",
                  "--json", str(tmp_path / "r.json"))
    r = json.loads((tmp_path / "r.json").read_text())["results"]["mlp"]
    ratios = sorted(run["ratio"] for run in r["runs"])
    assert len(ratios) == 3 and r["ratio"] == ratios[1]
    assert "loss compiled" in stdout
    assert f"median ratio over 3 runs {ratios[1]:.3f}" in stdout


def test_train_step_compiles_model_and_loss_on_both_sides(tmp_path):
    stdout = _run("train_step.py", "--models", "mlp", "--compile-step",
                  "--json", str(tmp_path / "r.json"))
    (run,) = json.loads((tmp_path / "r.json").read_text())["results"]["mlp"]["runs"]
    assert "model + loss compiled on both sides" in stdout and "loss eager" not in stdout
    assert _positive(run["baseline_ms"]) and _positive(run["label_embedding_ms"])
    assert run["compiled_graphs"] >= 2  # one per side at least: neither side ran eagerly


def test_large_vocab_quick_runs_each_variant_and_checks_chunked_equals_unchunked(tmp_path):
    stdout = _run("large_vocab.py", "--json", str(tmp_path / "r.json"))
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert set(summary) == {"ce", "chunked", "unchunked"}
    for s in summary.values():
        assert _positive(s["seconds"]) and _positive(s["peak_extra_mib"])
    # The script itself fails (exit 1) when the chunked loss differs from the unchunked one;
    # here also: same loss, and the plain path's three (N, C) tensors cost more memory.
    assert summary["chunked"]["loss"] == pytest.approx(summary["unchunked"]["loss"], rel=1e-5)
    assert summary["unchunked"]["peak_extra_mib"] > summary["chunked"]["peak_extra_mib"]
    assert "chunked / ce: time" in stdout


def test_embedding_size_quick_counts_real_parameters(tmp_path):
    _run("embedding_size.py", "--json", str(tmp_path / "r.json"))
    r = json.loads((tmp_path / "r.json").read_text())
    c, dim = r["num_classes"], r["dim"]
    assert r["compressed_mib"] == pytest.approx((2 * c * dim + c) * 4 / 2**20)
    assert r["full_mib"] == pytest.approx(c * c * 4 / 2**20)


def test_profile_step_quick_prints_the_phase_table():
    stdout = _run("profile_step.py")
    for phase in ("forward", "loss", "backward", "optimizer", "sum"):
        assert any(line.startswith(phase) for line in stdout.splitlines()), phase
    assert "aten::" in stdout  # the profiler table


def test_loss_call_quick_times_every_loss_call():
    stdout = _run("loss_call.py")
    rows = dict(re.findall(r"^  (\S.*?) {2,}([\d.]+) us ", stdout, flags=re.M))
    assert set(rows) == {"ce eager", "ce compiled", "3 x ce compiled (logits, aux_logits, E[y])",
                         "emb eager", "emb compiled",
                         "emb compiled, validate=False", "emb compiled, loss only",
                         "emb compiled, validate=False, loss only"}, stdout
    assert all(_positive(float(us)) for us in rows.values()), stdout


def test_head_layout_quick_times_both_heads():
    has_old_head = subprocess.run(["git", "cat-file", "-e", "d91db14"], cwd=ROOT,
                                  capture_output=True).returncode == 0
    if not has_old_head:
        pytest.skip("a shallow clone: the old head's commit is not here")
    stdout = _run("head_layout.py")
    assert "two_layer" in stdout and "one_weight" in stdout and "baseline" in stdout


def test_seq2seq_step_quick_times_both_modes_in_one_process_and_their_memory(tmp_path):
    stdout = _run("seq2seq_step.py", "--profile", "--json", str(tmp_path / "r.json"))
    r = json.loads((tmp_path / "r.json").read_text())
    assert set(r["median_s"]) == set(r["peak_rss_mib"]) == {"baseline", "emb-chunked"}
    assert all(_positive(v) for v in (*r["median_s"].values(), *r["peak_rss_mib"].values()))
    assert r["ratio"]["emb-chunked"] == pytest.approx(
        r["median_s"]["emb-chunked"] / r["median_s"]["baseline"], rel=1e-2)
    assert 0 < r["distinct_targets_per_batch"] < r["tokens_per_batch"]  # Zipf: words repeat
    paired = r["paired_ratio"]["emb-chunked"]
    assert 0 < paired["min"] <= paired["median"] <= paired["max"]
    assert "emb-chunked:" in stdout and "ratio" in stdout and "per batch" in stdout
    # --profile: the chunked loss's four phases, named by the library, and none in the baseline
    (_, baseline), (_, chunked) = r["profiled"]["baseline"], r["profiled"]["emb-chunked"]
    assert baseline == {} and all(t >= 0 for t in chunked.values())
    assert sorted(k.rsplit(".", 1)[1] for k in chunked) == ["embedding_backward", "forward",
                                                             "head_backward", "terms"]


def test_chunk_sizes_quick_times_each_configuration():
    """benchmarks/chunk_sizes.py: the loss's own sizes (named) and each CHUNK:BLOCK timed."""
    out = _run("chunk_sizes.py")
    assert "default chunk 64, block 64" in out  # 300 classes, 8 features
    for config in ("0:0", "7:21"):
        assert re.search(rf"^\s+{config}\s+CPU\s+\d+\.\d+ s\s+wall\s+\d+\.\d+ s", out, re.M)
