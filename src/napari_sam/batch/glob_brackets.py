"""Glob patterns and square brackets in names: in ``"scans [1]/*.tif"`` the ``[1]`` selects
one character (``1``), as in the shell, so the pattern misses the folder ``scans [1]/``
(microscope software and Windows copies name folders ``[1]``, ``(2)``).
:func:`bracket_words` finds the files such a pattern matches with its brackets read as they
are, and says what to give instead."""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path

__all__ = ["bracket_words", "literal_brackets"]


def literal_brackets(pattern: str) -> str:
    """``pattern`` with each ``[`` written ``[[]`` (a ``[`` as it is; ``]`` alone already is):
    ``*`` and ``?`` stay patterns."""
    return pattern.replace("[", "[[]")


def bracket_words(pattern: str, keep: Callable[[Path], bool]) -> str:
    """Words saying that files (those ``keep`` takes) match ``pattern`` with its square
    brackets read as they are, and what to give instead; "" where none does (or the pattern
    has no ``[``)."""
    if "[" not in pattern:
        return ""
    literal = literal_brackets(pattern)
    found = [m for m in map(Path, sorted(glob.glob(literal, recursive=True))) if keep(m)]
    if not found:
        return ""
    what = "1 file matches" if len(found) == 1 else f"{len(found)} files match"
    return (f"{what} it with its square brackets read as they are (e.g. {found[0].as_posix()}):"
            " in a pattern '[...]' stands for one of the characters inside, as in the shell;"
            f" write each '[' as '[[]': \"{literal}\"")
