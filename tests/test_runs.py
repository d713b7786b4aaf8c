"""The run layer on its own: atomic writes, the resume rule, the settings declaration."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from labelemb.atomic import atomic_write, atomic_write_text
from labelemb.runs.rundir import CONFIG, RUN_FORMAT, RunDir, changed_settings, write_json
from labelemb.runs.checkpoint import load_checkpoint, save_checkpoint
from labelemb.runs.settings import check_ranges, may_change_on_resume, setting


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_text(path, "old\n")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt  # Ctrl-C in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_resume_rule_names_each_changed_setting_and_ignores_the_free_ones(tmp_path):
    saved = {"lr": 0.001, "epochs": 3, "seed": 0}
    assert changed_settings(saved, {"lr": 0.01, "epochs": 9, "seed": 0}, {"epochs"}) == ["lr"]
    assert changed_settings(saved, {**saved, "new_setting": 1}, ()) == ["new_setting"]
    run = tmp_path / "run"
    run.mkdir()
    write_json(run / CONFIG, {"run_format": RUN_FORMAT, "settings": saved})
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        RunDir.open(run, saved, may_change=())
    with pytest.raises(ValueError, match=r"changed settings \(seed: 0 -> 1\)"):
        RunDir.open(run, {**saved, "seed": 1}, may_change=(), resume=True)
    with pytest.raises(ValueError, match="exclude each other"):
        RunDir.open(run, saved, may_change=(), resume=True, overwrite=True)
    write_json(run / CONFIG, {"settings": saved})  # a folder of before run formats
    with pytest.raises(ValueError, match=r"format 0 .*cannot be resumed; use --overwrite"):
        RunDir.open(run, saved, may_change=(), resume=True)
    write_json(run / CONFIG, {"run_format": RUN_FORMAT, "settings": saved})
    # Nothing to continue (no checkpoint yet): the run starts from scratch.
    assert not RunDir.open(run, {**saved, "epochs": 5}, may_change={"epochs"},
                           resume=True).resumed


def test_settings_declare_what_may_change_on_resume():
    @dataclasses.dataclass
    class Config:
        lr: float = setting(0.1, "learning rate")
        epochs: int = setting(3, "epochs", on_resume=True)
        seeds: list = setting([0], "seeds")

    assert may_change_on_resume(Config) == {"epochs"}
    a, b = Config(), Config()
    a.seeds.append(1)
    assert b.seeds == [0]  # a list default is copied per instance


@pytest.mark.parametrize("device", ["foo", "cuda:99"])
def test_a_device_a_sound_checkpoint_cannot_go_to_is_not_called_damage(tmp_path, device):
    path = save_checkpoint({"w": torch.ones(2)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError) as info:
        load_checkpoint(path, map_location=device)
    message = str(info.value)
    assert f"onto device {device!r}" in message and "--device" in message
    assert "damaged" not in message and "delete" not in message
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(2))  # the file was left alone


def test_check_ranges_names_the_flag_and_the_declared_range():
    @dataclasses.dataclass
    class Config:
        hidden: int | None = setting(None, "size", at_least=1)
        dropout: float = setting(0.1, "dropout", at_least=0, below=1)
        lr: float = setting(0.1, "learning rate", above=0)
        seed: int = setting(-5, "seed")  # no range declared: anything goes

    check_ranges(Config())  # None means "the default" and is not checked
    for kwargs, message in [
        (dict(hidden=0), "--hidden must be an integer >= 1, got 0"),
        (dict(hidden=2.5), "--hidden must be an integer >= 1, got 2.5"),
        (dict(hidden=True), "--hidden must be an integer >= 1, got True"),
        (dict(dropout=1), "--dropout must be >= 0 and < 1, got 1"),
        (dict(dropout=float("nan")), "--dropout must be >= 0 and < 1, got nan"),
        (dict(lr=0.0), "--lr must be > 0, got 0.0"),
    ]:
        with pytest.raises(ValueError) as info:
            check_ranges(Config(**kwargs))
        assert str(info.value) == message


def test_rank_zero_is_one_rule_inside_and_after_the_process_group(tmp_path, monkeypatch):
    """The engine asks the process group, the train command (after the group is gone) asked
    RANK: one function answers both, the group first."""
    import torch.distributed as dist

    from labelemb.runs.ranks import is_main_process, rank_and_world

    monkeypatch.setenv("RANK", "1")  # torchrun's second process, before or after the group
    assert not is_main_process() and rank_and_world() == (0, 1)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}",
                            rank=0, world_size=1)
    try:
        assert is_main_process() and rank_and_world() == (0, 1)  # the group says rank 0
    finally:
        dist.destroy_process_group()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
