"""The base of every error a user can fix.

The CLI prints a :class:`SpecrayError` (and an OSError) as one line naming the input and
the problem; anything else is a bug and keeps its traceback. Each subclass also derives
from the builtin it refines (ValueError, OSError, ...) so callers that catch those still
work.
"""

from __future__ import annotations


class SpecrayError(Exception):
    """A problem with the user's input, data or environment: the message says what to change."""


class InputError(SpecrayError, ValueError):
    """A value the user gave (an option, a setting, a table, an array) that cannot be used."""
