"""`labelemb train` on the real Fashion-MNIST: accuracy, determinism, exact resume, run dirs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from labelemb.cli import main
from labelemb.data.registry import load_dataset
from labelemb.embedding import load_embedding
from labelemb.runs import rundir
from labelemb.runs.checkpoint import load_checkpoint
from labelemb.engine.classification import Classification, TrainConfig, run_training
from labelemb.runs.settings import parse_seeds

FASHION = Path("/usr/share/datasets/fashion-mnist")
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion-mnist", data_dir=FASHION)


def _metrics(run_dir: Path) -> list[dict]:
    recs = rundir.read_metrics(run_dir / rundir.METRICS)
    for r in recs:
        r.pop("seconds"), r.pop("eval_seconds")
    return recs


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        elif isinstance(a[k], dict):
            _same_state(a[k], b[k])
        else:
            assert a[k] == b[k], k


@pytest.mark.slow
def test_mlp_emb_one_epoch_on_5000_images_beats_25_percent(fashion, tmp_path):
    (run,) = run_training(TrainConfig(model="mlp", modes=["emb"], epochs=1, train_subset=5000,
                                      out=str(tmp_path)), dataset=fashion)
    (rec,) = rundir.read_metrics(run / rundir.METRICS)
    assert rec["test_error"] < 0.25, rec
    # The contract of engine/rundir.py, every key present.
    assert set(rec) == {"step", "epoch", "train_loss", "terms", "train_error", "dev_error",
                        "test_error", "test_loss", "test_ece", "seconds", "eval_seconds", "lr",
                        "best_step", "soft_ce_weight"}
    assert rec["step"] == 50 and rec["epoch"] == 1 and rec["soft_ce_weight"] == 0.5
    assert set(rec["terms"]) == {"ce", "soft_ce", "aux_ce", "aux_hinge", "embedding_ce"}
    assert rec["dev_error"] is not None and 0 <= rec["test_ece"] <= 1 and rec["lr"] == 1e-3
    cfg = rundir.read_json(run / rundir.CONFIG)
    assert (cfg["dataset"], cfg["model"], cfg["mode"], cfg["seed"]) == ("fashion-mnist", "mlp", "emb", 0)
    assert cfg["class_names"][0] == "T-shirt/top" and cfg["train_size"] == 5000
    assert cfg["test_size"] == 10000 and cfg["dev_size"] == 5000
    emb = load_embedding(run / rundir.EMBEDDING)
    assert emb.class_names == cfg["class_names"]
    assert not torch.equal(emb.weight, torch.eye(10))  # it learned
    result = rundir.read_json(run / rundir.RESULT)
    assert result["test_error"] == rec["test_error"]
    # Temperature scaling fitted on dev: the under-confident emb head is sharpened (T < 1),
    # its predictions are unchanged and its NLL on test goes down.
    cal = result["calibration"]
    assert 0 < cal["temperature"] < 1
    assert cal["raw"]["error"] == cal["calibrated"]["error"] == pytest.approx(rec["test_error"])
    assert cal["calibrated"]["nll"] < cal["raw"]["nll"]
    assert cal["raw"]["ece"] == pytest.approx(rec["test_ece"], abs=1e-6)
    assert sum(cal["raw"]["reliability"]["count"]) == 10000
    assert not (tmp_path / "summary.md").exists()  # the command writes it, not the engine


@pytest.mark.slow
def test_two_runs_with_one_seed_are_identical(fashion, tmp_path):
    kw = dict(model="cnn", modes=["emb", "ols"], epochs=2, train_subset=250,
              test_subset=200, dev_subset=100,
              augment=True, seeds=[3])
    a = run_training(TrainConfig(out=str(tmp_path / "a"), **kw), dataset=fashion)
    b = run_training(TrainConfig(out=str(tmp_path / "b"), **kw), dataset=fashion)
    for ra, rb in zip(a, b):
        assert _metrics(ra) == _metrics(rb)
        _same_state(load_checkpoint(ra / rundir.CHECKPOINT)["model"],
                    load_checkpoint(rb / rundir.CHECKPOINT)["model"])
    c = run_training(TrainConfig(out=str(tmp_path / "c"), **{**kw, "seeds": [4], "epochs": 1,
                                                          "modes": ["emb"]}), dataset=fashion)
    assert _metrics(c[0])[0] != _metrics(a[0])[0]  # the seed matters


@pytest.mark.slow
def test_modes_share_init_and_data_order(fashion, tmp_path):
    # Same seed: baseline and ls see the same first batches from the same initial weights, so
    # with smoothing 0 "ls" is the baseline exactly.
    runs = run_training(TrainConfig(model="mlp", modes=["baseline", "ls"], epochs=1,
                                    train_subset=300, test_subset=200, dev_subset=200, smoothing=0.0,
                                    out=str(tmp_path)), dataset=fashion)
    assert _metrics(runs[0]) == _metrics(runs[1])


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_the_uninterrupted_metrics(fashion, tmp_path):
    args = ["--model", "mlp", "--modes", "emb", "--epochs", "3", "--train-subset", "2000",
            "--test-subset", "300", "--dev-subset", "300", "--augment", "--seeds", "1"]
    killed = tmp_path / "killed"
    # Bit-identical floats need the same thread count in the killed process as here.
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labelemb", "train", *args, "--out", str(killed),
         "--data-dir", str(FASHION)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    ckpt = killed / "emb" / "seed-1" / rundir.CHECKPOINT
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # no clean-up handlers run: a real crash
    proc.wait()
    proc.stderr.close()
    run = killed / "emb" / "seed-1"
    assert not rundir.is_complete(run)
    done = len(rundir.read_metrics(run / rundir.METRICS))
    assert done < 3  # 0: killed between the checkpoint and its record (re-appended on resume)

    rc = main(["train", *args, "--out", str(killed), "--data-dir", str(FASHION), "--resume"])
    assert rc == 0 and rundir.is_complete(run)
    ref = main(["train", *args, "--out", str(tmp_path / "ref"), "--data-dir", str(FASHION)])
    assert ref == 0
    ref_run = tmp_path / "ref" / "emb" / "seed-1"
    assert _metrics(run) == _metrics(ref_run)
    assert len(_metrics(run)) == 3
    _same_state(load_checkpoint(run / rundir.CHECKPOINT)["model"],
                load_checkpoint(ref_run / rundir.CHECKPOINT)["model"])
    assert torch.equal(load_embedding(run / rundir.EMBEDDING).weight,
                       load_embedding(ref_run / rundir.EMBEDDING).weight)


@pytest.mark.slow
def test_resume_extends_ols_and_lr_schedule_exactly(fashion, tmp_path):
    kw = dict(model="mlp", modes=["ols"], train_subset=500, test_subset=200, dev_subset=200,
              lr_milestones=[1], seeds=[2])
    run_training(TrainConfig(epochs=1, out=str(tmp_path / "r"), **kw), dataset=fashion)
    (run,) = run_training(TrainConfig(epochs=3, resume=True, out=str(tmp_path / "r"), **kw),
                          dataset=fashion)
    (ref,) = run_training(TrainConfig(epochs=3, out=str(tmp_path / "u"), **kw), dataset=fashion)
    assert _metrics(run) == _metrics(ref)
    assert [r["lr"] for r in _metrics(run)] == pytest.approx([1e-3, 2e-4, 2e-4])
    a, b = load_checkpoint(run / rundir.CHECKPOINT), load_checkpoint(ref / rundir.CHECKPOINT)
    _same_state(a["criterion"], b["criterion"])  # OLS soft labels and running sums
    assert not torch.equal(a["criterion"]["soft_labels"], torch.eye(10))
    # A finished run is skipped by --resume, and refused without it.
    run_training(TrainConfig(epochs=3, resume=True, out=str(tmp_path / "r"), **kw), dataset=fashion)
    assert len(_metrics(run)) == 3
    with pytest.raises(ValueError, match="--resume"):
        run_training(TrainConfig(epochs=3, out=str(tmp_path / "r"), **kw), dataset=fashion)
    with pytest.raises(ValueError, match="batch_size"):
        run_training(TrainConfig(epochs=4, resume=True, batch_size=50, out=str(tmp_path / "r"),
                                 **kw), dataset=fashion)


def test_resume_of_a_checkpoint_with_another_layer_layout_is_refused_with_the_reason(
        fashion, tmp_path):
    """A run checkpointed by a labelemb whose head had another number of tensors (the
    one-weight head had 2, two plain layers have 4): its Adam state does not fit. The
    optimizer state is given two extra tensors, then the run is resumed."""
    kw = dict(model="mlp", modes=["emb"], train_subset=300, test_subset=200, dev_subset=200,
              seeds=[0])
    (run,) = run_training(TrainConfig(epochs=1, out=str(tmp_path / "r"), **kw), dataset=fashion)
    path = run / rundir.CHECKPOINT
    state = load_checkpoint(path)
    group = state["optimizer"]["param_groups"][0]
    n = len(group["params"])
    group["params"] = list(range(n + 2))  # two more head tensors
    (run / rundir.RESULT).unlink()  # unfinished, so --resume continues it
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"holds \[{n + 2}\] parameter tensors per group "
                       rf"where this model has \[{n}\].*cannot be resumed"):
        run_training(TrainConfig(epochs=2, resume=True, out=str(tmp_path / "r"), **kw),
                     dataset=fashion)


@pytest.mark.slow
def test_emb_fixed_uses_the_earlier_runs_embedding_frozen(fashion, tmp_path):
    kw = dict(model="mlp", train_subset=300, test_subset=200, dev_subset=200, epochs=1)
    (emb_run,) = run_training(TrainConfig(modes=["emb"], out=str(tmp_path / "a"), **kw),
                              dataset=fashion)
    (fixed,) = run_training(TrainConfig(modes=["emb-fixed"], out=str(tmp_path / "b"),
                                        embedding=str(tmp_path / "a"), **kw), dataset=fashion)
    (rec,) = rundir.read_metrics(fixed / rundir.METRICS)
    assert set(rec["terms"]) == {"ce", "soft_ce"}  # eq. 17: no auxiliary head
    state = load_checkpoint(fixed / rundir.CHECKPOINT)
    assert not any(k.startswith("head.aux_fc") for k in state["model"])  # no W2 layer
    assert torch.equal(state["criterion"]["embedding.inner.weight"],
                       load_embedding(emb_run / rundir.EMBEDDING).weight)
    assert not (fixed / rundir.EMBEDDING).exists()
    with pytest.raises(FileNotFoundError, match="embedding.safetensors"):
        run_training(TrainConfig(modes=["emb-fixed"], out=str(tmp_path / "c"),
                                 embedding=str(tmp_path / "b"), **kw), dataset=fashion)
    with pytest.raises(ValueError, match="--embedding"):
        run_training(TrainConfig(modes=["emb-fixed"], out=str(tmp_path / "d"), **kw),
                     dataset=fashion)


def test_own_npz_data_trains_end_to_end(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 8, 8), dtype=np.uint8)
    y = np.arange(60) % 3
    x[y == 1] //= 4  # a learnable difference between the classes
    np.savez(tmp_path / "toy.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
    rc = main(["train", "--dataset", str(tmp_path / "toy.npz"), "--model", "mlp", "--modes",
               "baseline,emb,ls,ols", "--epochs", "2", "--batch-size", "16", "--seeds", "0,1",
               "--out", str(tmp_path / "out")])
    assert rc == 0
    dirs = sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in rundir.iter_run_dirs(tmp_path / "out"))
    assert dirs == [f"{m}/seed-{s}" for m in ("baseline", "emb", "ls", "ols") for s in (0, 1)]
    cfg = json.loads((tmp_path / "out" / "emb" / "seed-1" / "config.json").read_text())
    assert cfg["class_names"] == ["a", "b", "c"] and cfg["dataset"] == "toy"
    table = (tmp_path / "out" / "summary.md").read_text()
    assert "| ols |" in table and table.strip() in capsys.readouterr().out


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert main(["train", "--dataset", "imagenet", "--out", str(tmp_path)]) == 2
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--modes", "baseline,mixup"])
    assert parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds("a-b")


def test_cifar100_recipe_on_cifar_format_files(tmp_path):
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    d = tmp_path / "cifar100" / "cifar-100-python"
    d.mkdir(parents=True)
    with open(d / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}, f, protocol=2)
    for part, n in (("train", 13), ("test", 5)):
        with open(d / part, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": rng.integers(0, 100, n).tolist(),
                         b"coarse_labels": rng.integers(0, 20, n).tolist()}, f, protocol=2)
    runs = run_training(TrainConfig(dataset="cifar100", data_dir=str(tmp_path),
                                    model="resnet8-std", modes=["baseline", "emb"], epochs=2,
                                    batch_size=4, out=str(tmp_path / "out")))
    cfg = rundir.read_json(runs[1] / rundir.CONFIG)
    cfg.update(cfg["settings"])
    # The CIFAR-100 recipe: crop+flip, lr x0.2 at 40 and 80; no dev set in the files, so 10 %
    # of train is held out as one (for best-dev and temperature scaling).
    assert cfg["augment"] is True and cfg["lr_milestones"] == [40, 80] and cfg["lr_gamma"] == 0.2
    assert cfg["num_classes"] == 100 and cfg["model"] == "resnet8-std"
    assert (cfg["train_size"], cfg["dev_size"]) == (12, 1)
    recs = rundir.read_metrics(runs[1] / rundir.METRICS)
    assert all(r["dev_error"] is not None for r in recs)
    assert rundir.read_json(runs[1] / rundir.RESULT)["calibration"]["temperature"] > 0
    assert load_embedding(runs[1] / rundir.EMBEDDING).class_names[7] == "f7"
    # --held-out 0: the paper's setting, every training image trained on, no calibration.
    (run,) = run_training(TrainConfig(dataset="cifar100", data_dir=str(tmp_path), held_out=0,
                                      model="resnet8-std", modes=["baseline"], epochs=1,
                                      batch_size=4, out=str(tmp_path / "all")))
    assert (rundir.read_json(run / rundir.CONFIG)["train_size"],
            rundir.read_json(run / rundir.CONFIG)["dev_size"]) == (13, 0)
    assert rundir.read_metrics(run / rundir.METRICS)[0]["dev_error"] is None
    assert rundir.read_json(run / rundir.RESULT)["calibration"] is None


def test_loss_flags_reach_the_emb_criteria_and_unset_ones_keep_the_preset(fashion):
    from labelemb.loss import PRESETS

    cfg = TrainConfig(tau=3.0, soft_target_temperature=0.5, hinge="l2").resolved(fashion)
    _, criterion = Classification(cfg, fashion, torch.device("cpu")).build("emb", seed=0)
    assert (criterion.options.tau, criterion.options.soft_target_temperature,
            criterion.options.hinge) == (3.0, 0.5, "l2")
    assert criterion.options.alpha == PRESETS["classification"].alpha
    assert criterion.options.beta == PRESETS["classification"].beta
    assert main(["train", "--soft-target-temperature", "0"]) == 2


def test_a_loss_variant_is_recorded_and_reported_apart_from_the_preset(fashion, tmp_path):
    from labelemb.report.runs import group_runs, load_runs

    kw = dict(model="mlp", train_subset=300, test_subset=200, dev_subset=200, epochs=1)
    run_training(TrainConfig(modes=["baseline", "emb"], out=str(tmp_path / "preset"), **kw),
                 dataset=fashion)
    (variant,) = run_training(TrainConfig(modes=["emb"], out=str(tmp_path / "sharp"), tau=1.0,
                                          soft_target_temperature=0.5, **kw), dataset=fashion)
    assert rundir.read_json(variant / rundir.CONFIG)["loss_options"] == {
        "tau": 1.0, "soft_target_temperature": 0.5}
    groups = group_runs(load_runs([tmp_path]))
    assert [k[2] for k in groups] == ["baseline", "emb", "emb soft_target_temperature=0.5 tau=1.0"]
    # a loss flag means nothing to the baseline: it is not recorded as a variant there
    (base,) = run_training(TrainConfig(modes=["baseline"], out=str(tmp_path / "b"), tau=1.0, **kw),
                           dataset=fashion)
    assert rundir.read_json(base / rundir.CONFIG)["loss_options"] == {}


#: Recorded with the engine before the one-loop rewrite (commit cb42e4c, run on the AMD EPYC
#: dev VM): `labelemb train --model mlp --train-subset 500 --test-subset 300 --dev-subset 300
#: --epochs 2 --modes baseline,emb --seeds 3 --threads 1`. Per epoch: (train loss, train
#: error, dev error, test error). The rewrite must not change what a seed trains.
BEFORE_THE_ONE_LOOP = {
    "baseline": [(2.07946826171875, 0.696, 0.5566666722297668, 0.5166666507720947),
                 (1.3717005615234374, 0.462, 0.41333332657814026, 0.4333333373069763)],
    "emb": [(6.8169599609375, 0.666, 0.503333330154419, 0.4866666793823242),
            (6.3023779296875, 0.428, 0.4099999964237213, 0.3866666555404663)],
}


def test_a_seed_trains_as_it_did_before_the_one_loop(fashion, tmp_path):
    """Same data order, initialisation and updates as the previous engine. The tolerances
    are rounding, not a trajectory: 10 updates of an MLP move the loss by less than 1e-5
    relative between CPU makes (BLAS kernels), and an error may move by one image in 300 or
    500 when a prediction sits on a tie; a changed data order or update moves them by far more."""
    runs = run_training(TrainConfig(model="mlp", modes=["baseline", "emb"], seeds=[3], epochs=2,
                                    train_subset=500, test_subset=300, dev_subset=300,
                                    threads=1, out=str(tmp_path)), dataset=fashion)
    for run in runs:
        got = rundir.read_metrics(run / rundir.METRICS)
        for rec, (loss, train, dev, test) in zip(got, BEFORE_THE_ONE_LOOP[run.parent.name]):
            assert rec["train_loss"] == pytest.approx(loss, rel=1e-4)
            assert rec["train_error"] == pytest.approx(train, abs=1.01 / 500)
            assert rec["dev_error"] == pytest.approx(dev, abs=1.01 / 300)
            assert rec["test_error"] == pytest.approx(test, abs=1.01 / 300)


def test_a_run_folder_of_the_previous_format_is_refused_on_resume_in_one_line(tmp_path):
    old = tmp_path / "out" / "emb" / "seed-0"
    old.mkdir(parents=True)
    (old / rundir.CONFIG).write_text(json.dumps({"run_format": 1, "settings": {}}))
    done = subprocess.run([sys.executable, "-m", "labelemb", "train", "--modes", "emb",
                           "--epochs", "1", "--train-subset", "100", "--out",
                           str(tmp_path / "out"), "--resume"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": SRC}, timeout=300)
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]  # after the data's summary line
    assert "Traceback" not in done.stderr and line.startswith("labelemb: error:")
    assert "format 1" in line and "--overwrite" in line


def test_a_finished_run_kept_without_its_checkpoints_is_skipped_on_resume(fashion, tmp_path):
    """A study folder may keep only a run's small files (config, metrics, result): --resume
    still knows the run is done, and a longer --epochs starts it again from scratch."""
    kw = dict(model="mlp", modes=["baseline"], train_subset=300, test_subset=100,
              dev_subset=100, out=str(tmp_path), threads=1)
    (run,) = run_training(TrainConfig(epochs=1, **kw), dataset=fashion)
    (run / rundir.CHECKPOINT).unlink()
    (run / "best.pt").unlink()
    result = (run / rundir.RESULT).read_bytes()
    run_training(TrainConfig(epochs=1, resume=True, **kw), dataset=fashion)
    assert (run / rundir.RESULT).read_bytes() == result
    assert not (run / rundir.CHECKPOINT).exists()  # skipped: nothing trained
    with pytest.raises(ValueError, match="checkpoint.pt is not kept: it cannot be extended"):
        run_training(TrainConfig(epochs=2, resume=True, **kw), dataset=fashion)
    assert (run / rundir.RESULT).read_bytes() == result  # the finished run is left as it was


def test_a_kill_between_the_checkpoint_and_best_pt_is_repaired_on_resume(fashion, tmp_path):
    """best.pt is written after the checkpoint that names it: a kill in between leaves an
    older (or no) best.pt, and the resume writes it from the checkpoint's own model."""
    kw = dict(model="mlp", modes=["baseline"], train_subset=300, test_subset=100,
              dev_subset=100, out=str(tmp_path), threads=1, epochs=1)
    (run,) = run_training(TrainConfig(**kw), dataset=fashion)
    best = load_checkpoint(run / rundir.BEST)
    assert best["step"] == load_checkpoint(run / rundir.CHECKPOINT)["best"]["step"] == 3
    (run / rundir.BEST).unlink()
    (run / rundir.RESULT).unlink()  # killed before the end
    run_training(TrainConfig(resume=True, **kw), dataset=fashion)
    _same_state(load_checkpoint(run / rundir.BEST), best)


def test_a_resume_that_cannot_continue_leaves_the_folder_as_it_was(fashion, tmp_path):
    kw = dict(model="mlp", modes=["baseline"], test_subset=100, dev_subset=100,
              out=str(tmp_path), threads=1)
    (run,) = run_training(TrainConfig(epochs=1, **kw), dataset=fashion.subset_train(300))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    # the same settings on other data (a folder re-prepared, say): refused, nothing touched
    with pytest.raises(ValueError, match=r"data changed since the run started \(train_size\)"):
        run_training(TrainConfig(epochs=2, resume=True, **kw), dataset=fashion.subset_train(200))
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
