"""The README's main job end to end (the MLP on a small subset keeps it to seconds)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow
def test_demo_prints_table_and_writes_heatmap(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "labelemb", "demo", "--model", "mlp", "--epochs", "1",
         "--train-subset", "600", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    # The result table, one row per mode, and the nearest labels by class name.
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| fashion-mnist |")]
    assert [r.split("|")[3].strip() for r in rows] == ["baseline", "emb"]
    assert "| Sandal |" in proc.stdout
    heatmap = out / "inspect" / "heatmap.png"
    pixels = np.asarray(Image.open(heatmap).convert("L"), dtype=float)
    assert pixels.shape[0] > 200 and pixels.std() > 10  # a real, non-blank picture
    report = (out / "report" / "report.md").read_text()
    assert "| fashion-mnist | mlp | baseline |" in report and "| fashion-mnist | mlp | emb |" in report
    for mode in ("baseline", "emb"):
        assert (out / mode / "seed-0" / "result.json").is_file()
