"""Settings declared once: a config dataclass field carries its command-line flag and help.

An engine declares each setting as ``name: type = setting(default, "help", ...)``; the command
line is generated from those fields (:func:`labelemb.commands.options.add_config_arguments`),
so a default is written in one place, and :class:`~labelemb.runs.rundir.RunDir` reads which
settings may change on ``--resume`` from the same declaration, and :func:`check_ranges` refuses
a value outside the range declared beside its default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

__all__ = ["setting", "may_change_on_resume", "flag_of", "default_of", "kind_of",
           "check_ranges", "range_text", "parse_seeds", "parse_int_list", "parse_names",
           "parse_optional", "per_key_text"]


def setting(default: Any = dataclasses.MISSING, help: str = "", *,
            flags: tuple[str, ...] = (), parse: Callable[[str], Any] | None = None,
            choices: Any = None, default_text: str | None = None, on_resume: bool = False,
            cli: bool = True, factory: Callable[[], Any] | None = None,
            at_least: float | None = None, above: float | None = None,
            at_most: float | None = None, below: float | None = None) -> Any:
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
        at_least, above, at_most, below: the valid range of a number (``None`` is always
            allowed: it means "the default"); :func:`check_ranges` enforces it.
    """
    bounds = {k: v for k, v in (("at_least", at_least), ("above", above),
                                ("at_most", at_most), ("below", below)) if v is not None}
    meta = dict(help=help, flags=flags, parse=parse, choices=choices,
                default_text=default_text, on_resume=on_resume, cli=cli, bounds=bounds)
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


def kind_of(f: dataclasses.Field) -> type | None:
    """``bool``, ``int``, ``float`` or ``str`` from the field's annotation (a string under
    ``from __future__ import annotations``); ``None`` for anything else (lists)."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    kinds = {part.strip() for part in text.split("|")}
    return next((k for k in (bool, int, float, str) if k.__name__ in kinds), None)


#: a bound's name -> (how the message says it, whether ``value`` is inside it)
_BOUNDS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "at_least": (">=", lambda v, b: v >= b), "above": (">", lambda v, b: v > b),
    "at_most": ("<=", lambda v, b: v <= b), "below": ("<", lambda v, b: v < b),
}


def check_ranges(config: Any) -> None:
    """Refuse a number outside the range its field declares (see :func:`setting`), or of the
    wrong type, with a ``ValueError`` that names the flag. NaN is outside every range."""
    for f in dataclasses.fields(config):
        bounds, value = f.metadata.get("bounds"), getattr(config, f.name)
        if not bounds or value is None:
            continue
        kind = kind_of(f)
        wanted = (int,) if kind is int else (int, float)
        inside = not isinstance(value, bool) and isinstance(value, wanted) and all(
            _BOUNDS[name][1](value, bound) for name, bound in bounds.items())
        if not inside:
            what = "an integer " if kind is int else ""
            raise ValueError(f"{flag_of(f.name)} must be {what}{range_text(f)}, got {value!r}")


def range_text(f: dataclasses.Field) -> str:
    """The field's declared range as the help and the errors say it (">= 0 and < 1"), or ""."""
    bounds = f.metadata.get("bounds") or {}
    return " and ".join(f"{_BOUNDS[name][0]} {bound}" for name, bound in bounds.items())


# --------------------------------------------------------------------------- flag values


def parse_seeds(text: str | int | list[int]) -> list[int]:
    """``"0-19"`` -> 0..19, ``"0,3,5"`` -> [0, 3, 5]; forms can be mixed (``"0-2,7"``).
    Seeds are >= 0: each names a run folder ``seed-<k>``."""
    if isinstance(text, list):
        text = ",".join(str(s) for s in text)
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(part)])
        except ValueError:
            raise ValueError(f"--seeds: cannot read {part!r}; use seeds >= 0 such as 0-19 "
                             "or 0,3,5") from None
        if sep and int(hi) < int(lo):
            raise ValueError(f"--seeds: empty range {part!r}")
    if not seeds:
        raise ValueError(f"--seeds: no seed in {text!r}")
    return list(dict.fromkeys(seeds))


def parse_optional(text: str) -> str | None:
    """``"none"`` or ``""`` -> ``None`` (the setting is off); anything else as given."""
    return None if text.strip().lower() in ("", "none") else text


def parse_int_list(text: str) -> list[int]:
    """``"40,80"`` -> ``[40, 80]``; ``"none"`` or ``""`` -> ``[]``."""
    if parse_optional(text) is None:
        return []
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def parse_names(text: str | list[str], allowed: Any, flag: str) -> list[str]:
    """``"baseline,emb"`` -> ``["baseline", "emb"]``, each one of ``allowed``."""
    names = ([m.strip() for m in text.split(",") if m.strip()] if isinstance(text, str)
             else list(text))
    bad = [m for m in names if m not in allowed]
    if bad or not names:
        raise ValueError(f"{flag}: unknown {bad or repr(text)}; choose from "
                         f"{', '.join(allowed)}")
    return list(dict.fromkeys(names))


def per_key_text(table: dict[str, dict[str, Any]], key: str) -> str:
    """The help's default of a setting that depends on another one (``--task``, the dataset),
    read from ``table`` (that one's value -> its defaults): ``"iwslt15, parallel: 512; lcsts:
    400"``; booleans read on / off."""
    by_value: dict[str, list[str]] = {}
    for name, defaults in table.items():
        if key in defaults:
            value = defaults[key]
            text = ("on" if value else "off") if isinstance(value, bool) else str(value)
            by_value.setdefault(text, []).append(name)
    return "; ".join(f"{', '.join(names)}: {text}" for text, names in by_value.items())
