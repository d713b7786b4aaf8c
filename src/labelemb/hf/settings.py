"""The checks of the settings every labelemb model config of :mod:`labelemb.hf` shares (the
sequence classifier's and the language models'): a bad value is one ``ValueError`` naming the
field, also when it is a string from a config file or a command line (``"0.1" < 1.0`` would
be a ``TypeError`` deep inside)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from ..functional import LossOptions

__all__ = ["LOSS_OPTIONS", "check_choice", "check_fraction", "check_positive_int",
           "loss_options_over"]

#: the names of :class:`labelemb.LossOptions`' fields, which the configs take as ``loss_options``
LOSS_OPTIONS = tuple(f.name for f in fields(LossOptions))


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_fraction(name: str, value: Any, *, closed: bool = False) -> None:
    """``value`` must be a number in ``[0, 1)`` (``[0, 1]`` when ``closed``)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and 0.0 <= value and (value <= 1.0 if closed else value < 1.0)):
        raise ValueError(f"{name} must be a number in [0, 1{']' if closed else ')'}, "
                         f"got {value!r}")


def check_positive_int(name: str, value: Any) -> None:
    """``value`` must be an ``int`` (not a ``bool``) of at least 1."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def loss_options_over(preset: LossOptions, given: Any) -> LossOptions:
    """``preset`` with ``given`` (a dict of :class:`labelemb.LossOptions` fields, or ``None``)
    over it; an unknown or bad option is a ``ValueError`` naming it."""
    given = given or {}
    if not isinstance(given, dict):
        raise ValueError(f"loss_options must be a dict of labelemb.LossOptions fields, got "
                         f"{given!r}")
    for name in given:
        if name not in LOSS_OPTIONS:
            raise ValueError(f"unknown loss option {name!r} (labelemb.LossOptions has "
                             f"{', '.join(LOSS_OPTIONS)})")
    return LossOptions(**{**asdict(preset), **given})
