"""A real `torchrun --nproc_per_node 2` (gloo on CPU) run: rank 0's files are complete and valid.

The engine itself checks at the end of every run that all ranks hold rank 0's weights,
label embedding and OLS soft labels (it raises otherwise), so a clean exit means they agree.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labelemb.embedding import load_embedding
from labelemb.runs import rundir
from labelemb.runs.checkpoint import load_checkpoint

FASHION = Path("/usr/share/datasets/fashion-mnist")
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_torchrun_two_ranks_gloo(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--module", "labelemb", "train", "--model", "mlp", "--modes", "emb,ols", "--epochs", "2",
         "--train-subset", "600", "--test-subset", "300", "--dev-subset", "300", "--device", "cpu",
         "--data-dir", str(FASHION), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for mode in ("emb", "ols"):
        run = out / mode / "seed-0"
        assert rundir.is_complete(run)
        cfg = rundir.read_json(run / rundir.CONFIG)
        assert cfg["world_size"] == 2 and cfg["mode"] == mode
        recs = rundir.read_metrics(run / rundir.METRICS)
        assert [r["epoch"] for r in recs] == [1, 2]  # one line per epoch: only rank 0 writes
        assert all(0 <= r["test_error"] < 0.9 for r in recs)
        ckpt = load_checkpoint(run / rundir.CHECKPOINT)
        assert ckpt["epoch"] == 2
    emb = load_embedding(out / "emb" / "seed-0" / rundir.EMBEDDING)
    assert emb.class_names[9] == "Ankle boot" and not torch.equal(emb.weight, torch.eye(10))
    soft = load_checkpoint(out / "ols" / "seed-0" / rundir.CHECKPOINT)["criterion"]["soft_labels"]
    assert torch.allclose(soft.sum(1), torch.ones(10))
    assert (out / "summary.md").is_file()
    # Progress is logged once, by rank 0.
    assert proc.stderr.count("[emb seed 0] epoch 2/2") == 1
