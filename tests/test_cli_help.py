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


def test_seq2seq_per_task_defaults_are_read_from_the_presets():
    """They were hand copies, and --share-embeddings said "off" where lcsts sets it on."""
    from labelemb.engine.seq2seq import TASK_DEFAULTS, TrainConfig

    train = next(p for p in _parsers(build_parser()) if p.prog == "labelemb seq2seq train")
    blocks = _option_blocks(train)
    assert "lcsts: on" in blocks["--share-embeddings"]
    for task in ("iwslt15", "lcsts"):
        for key in ("emb_dim", "hidden", "layers", "epochs", "beam", "max_len"):
            flag = "--" + key.replace("_", "-")
            assert f"{task}: {TASK_DEFAULTS[task][key]}" in blocks[flag].replace(
                f"{task}, parallel:", f"{task}:"), blocks[flag]
    from labelemb.functional import PRESETS

    warmup = TrainConfig(task="lcsts", data_dir=".").warmup_steps
    assert warmup == PRESETS["seq2seq"].warmup_steps
