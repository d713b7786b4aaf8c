"""The run layer on its own: atomic writes, the resume rule, the settings declaration."""

from __future__ import annotations

import dataclasses

import pytest

from labelemb.atomic import atomic_write, atomic_write_text
from labelemb.runs.rundir import CONFIG, RunDir, changed_settings, write_json
from labelemb.runs.settings import may_change_on_resume, setting


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
    write_json(run / CONFIG, {"settings": saved})
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        RunDir.open(run, saved, may_change=())
    with pytest.raises(ValueError, match=r"changed settings \(seed: 0 -> 1\)"):
        RunDir.open(run, {**saved, "seed": 1}, may_change=(), resume=True)
    with pytest.raises(ValueError, match="exclude each other"):
        RunDir.open(run, saved, may_change=(), resume=True, overwrite=True)
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
