"""Moved to :mod:`labelemb.runs.progress`; kept only while other commands import it from here."""

from ..runs.progress import *  # noqa: F401,F403
