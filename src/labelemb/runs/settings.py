"""Settings declared once: a config dataclass field carries its command-line flag and help.

An engine declares each setting as ``name: type = setting(default, "help", ...)``; the command
line is generated from those fields (:func:`labelemb.commands.options.add_config_arguments`),
so a default is written in one place, and :class:`~labelemb.runs.rundir.RunDir` reads which
settings may change on ``--resume`` from the same declaration.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

__all__ = ["setting", "may_change_on_resume", "flag_of", "default_of"]


def setting(default: Any = dataclasses.MISSING, help: str = "", *,
            flags: tuple[str, ...] = (), parse: Callable[[str], Any] | None = None,
            choices: Any = None, default_text: str | None = None, on_resume: bool = False,
            cli: bool = True, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its command-line declaration in ``metadata``.

    Args:
        default: the default (a list default is copied per instance).
        help: what the flag does, without the default (it is appended once, generated).
        flags: the option strings (default ``--field-name``).
        parse: text -> value for the flag (default: from the field's type).
        choices: allowed values, shown in the help.
        default_text: how to show a default that is not a plain value ("the recipe").
        on_resume: whether the setting may change when a run is resumed (how long it trains,
            where it runs); every other setting must stay as the run was started.
        cli: ``False`` for settings with no flag (library use only).
        factory: a default factory (mutable defaults).
    """
    meta = dict(help=help, flags=flags, parse=parse, choices=choices,
                default_text=default_text, on_resume=on_resume, cli=cli)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def may_change_on_resume(cls: type) -> set[str]:
    """The settings of config class ``cls`` declared with ``on_resume=True``."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("on_resume")}


def flag_of(name: str) -> str:
    """The command-line flag of setting ``name`` (``lr_gamma`` -> ``--lr-gamma``), for messages
    that name what the user typed."""
    return "--" + name.replace("_", "-")


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (``MISSING`` for a required one)."""
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default
