"""Moved to :mod:`labelemb.runs.checkpoint` and :mod:`labelemb.runs.atomic`; kept only while
``commands/inspect.py`` and ``commands/report.py`` still import it from here."""

from ..runs.atomic import atomic_write_text  # noqa: F401
from ..runs.checkpoint import *  # noqa: F401,F403
