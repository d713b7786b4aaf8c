"""``labelemb --help`` and every sub-command's help show each default once: generated from the
one place it is declared, never typed into the help text beside it."""

from __future__ import annotations

import argparse
import re

from labelemb.cli import build_parser


def _parsers(parser: argparse.ArgumentParser):
    """``parser`` and every sub-command parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases: once
                yield from _parsers(sub)


def _option_blocks(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's first flag -> its block in the help (flag line and wrapped text)."""
    text = parser.format_help().split("options:", 1)[1]
    blocks = re.split(r"\n  (?=-)", text)
    return {block.split()[0].rstrip(","): " ".join(block.split()) for block in blocks[1:]}


def test_every_help_shows_each_default_at_most_once_and_every_value_default_once():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) >= 13  # the root, 6 commands, seq2seq's 4 actions, data's 2
    for parser in parsers:
        blocks = _option_blocks(parser)
        for action in parser._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            block = blocks[action.option_strings[0]]
            assert block.count("default") <= 1, (parser.prog, block)
            plain_value = action.default not in (None, False, True, argparse.SUPPRESS)
            if plain_value and action.dest != "help":
                assert block.count("(default: ") == 1, (parser.prog, block)


def _seq2seq_train_blocks() -> dict[str, str]:
    train = next(p for p in _parsers(build_parser()) if p.prog == "labelemb seq2seq train")
    return _option_blocks(train)


def _per_task_default(block: str) -> dict[str, str]:
    """"... (default: iwslt15, parallel: 25; lcsts: 10)" -> {"iwslt15": "25", ...}."""
    shown = block.rsplit("(default: ", 1)[-1].rstrip(")")
    return {task.strip(): value.strip() for part in shown.split("; ") if ": " in part
            for tasks, value in [part.rsplit(": ", 1)] for task in tasks.split(",")}


def _assert_per_task_defaults_shown(blocks: dict[str, str], keys: tuple[str, ...]) -> None:
    """Each setting in ``keys`` shows every task's default from TASK_DEFAULTS."""
    from labelemb.engine.seq2seq import TASK_DEFAULTS, TASKS

    for key in keys:
        block = blocks["--" + key.replace("_", "-")]
        assert _per_task_default(block) == {t: str(TASK_DEFAULTS[t][key]) for t in TASKS}, block


def test_seq2seq_per_task_defaults_are_read_from_the_presets():
    """They were hand copies, and --share-embeddings said "off" where lcsts sets it on."""
    from labelemb.engine.seq2seq import TrainConfig

    blocks = _seq2seq_train_blocks()
    assert "lcsts: on" in blocks["--share-embeddings"]
    _assert_per_task_defaults_shown(blocks, ("emb_dim", "hidden", "layers", "beam", "max_len"))
    # The loss options unset on the command line keep the seq2seq preset's values.
    from labelemb.data.vocab import Vocab
    from labelemb.engine.decoding import seq2seq_criterion
    from labelemb.functional import PRESETS

    warmup = PRESETS["seq2seq"].warmup_steps
    assert f"seq2seq: {warmup}" in blocks["--warmup-steps"], blocks["--warmup-steps"]
    config = TrainConfig(task="lcsts", data_dir=".").resolved()
    criterion = seq2seq_criterion("emb", Vocab(["a", "b"]), config)
    assert criterion.options.warmup_steps == warmup != PRESETS["classification"].warmup_steps


def test_seq2seq_help_shows_the_tasks_values_of_the_shared_settings():
    """The settings both tasks share take seq2seq's values from TASK_DEFAULTS: its help says
    them ("the recipe" names no value), and the folder it writes by default."""
    blocks = _seq2seq_train_blocks()
    _assert_per_task_defaults_shown(blocks, ("epochs", "batch_size", "lr", "clip_norm",
                                             "eval_every"))
    assert "runs/seq2seq-" in blocks["--out"], blocks["--out"]
