"""Command-line flags generated from a config dataclass declared with
:func:`labelemb.runs.settings.setting`: one declaration, so each default is written once."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from ..runs.settings import default_of, flag_of, kind_of, range_text

__all__ = ["add_config_arguments", "config_from_args", "add_flag"]


def _user_error(parse: Any) -> Any:
    """``parse`` whose ValueError message reaches the user (argparse would replace it with
    "invalid <name> value")."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _format(value: Any) -> str:
    """A default as the user would type it (lists comma-separated)."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def add_config_arguments(parser: argparse.ArgumentParser, cls: type,
                         skip: typing.Iterable[str] = ()) -> None:
    """Add one flag per field of ``cls`` (fields declared with ``cli=False`` or in ``skip``
    are left out). The argparse default is the field's default; the help shows it once, and
    the field's declared range."""
    skip = set(skip)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", False) or f.name in skip:
            continue
        default = default_of(f)
        # "is", not "in": 0 and 0.0 equal False but are defaults worth showing
        shown = getattr(cls, "SHOWN_DEFAULTS", {}).get(f.name) or meta["default_text"] or (None if default is None or default is False or
                                         default is dataclasses.MISSING else _format(default))
        rule = range_text(f)
        help_text = (meta["help"] + (f"; {rule}" if rule else "")
                     + (f" (default: {shown})" if shown else ""))
        kwargs: dict[str, Any] = dict(dest=f.name, help=help_text)
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        kind = kind_of(f)
        if kind is bool:
            kwargs["action"] = "store_true" if default is False else \
                argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _user_error(meta["parse"]) if meta["parse"] else (kind or str)
            kwargs["choices"] = meta["choices"]
            kwargs["metavar"] = f.name.upper() if meta["choices"] is None else None
        parser.add_argument(*(meta["flags"] or (flag_of(f.name),)), **kwargs)


def config_from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of ``cls`` from the parsed flags (fields without a flag keep defaults)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**values, **overrides})


def add_flag(parser: argparse.ArgumentParser, *flags: str, default: Any, help: str,
             **kwargs: Any) -> None:
    """A hand-declared flag whose help shows ``default`` once, generated from the value."""
    parser.add_argument(*flags, default=default, help=f"{help} (default: {_format(default)})",
                        **kwargs)
