"""Text in columns on a terminal: the width a string takes there (wide CJK characters and
emoji take two columns, combining marks none), and a name shortened in the middle to fit a
column, so that the summary table of a batch stays aligned and narrow whatever its names."""

from __future__ import annotations

import unicodedata

#: The widest the input column of the summary table gets (longer names lose their middle).
NAME_COLUMN = 48


def char_width(ch: str) -> int:
    """Columns the character ``ch`` takes on a terminal: 0 (combining mark, format character
    such as a zero-width joiner or variation selector), 2 (wide or full-width: 日, 🦠) or 1."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (:func:`char_width` of each character)."""
    return sum(char_width(ch) for ch in text)


def elide_middle(text: str, width: int = NAME_COLUMN) -> str:
    """``text`` when it fits ``width`` columns, else its start and end around ``…`` (the end,
    holding the file name's suffix, kept a little longer), at most ``width`` columns."""
    if display_width(text) <= width:
        return text
    room = width - 1
    head_room = room // 2
    head, used = "", 0
    for ch in text:
        if used + char_width(ch) > head_room:
            break
        head, used = head + ch, used + char_width(ch)
    tail, used_tail = "", 0
    for ch in reversed(text):
        if used + used_tail + char_width(ch) > room:
            break
        tail, used_tail = ch + tail, used_tail + char_width(ch)
    return f"{head}…{tail}"


def pad(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (as ``str.ljust`` does for
    characters)."""
    return text + " " * max(0, width - display_width(text))
