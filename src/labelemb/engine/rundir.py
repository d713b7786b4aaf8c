"""Moved to :mod:`labelemb.runs.rundir`; kept only while other commands import it from here."""

from ..runs.rundir import *  # noqa: F401,F403
