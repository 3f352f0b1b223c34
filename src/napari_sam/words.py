"""Counts in messages read as English: "1 object", "3 objects" (never "object(s)")."""

from __future__ import annotations

__all__ = ["counted", "for_count"]


def for_count(n: int, noun: str, plural: str | None = None) -> str:
    """The form of ``noun`` that goes with ``n`` things, without the number.

    Parameters
    ----------
    n : int
        How many there are.
    noun : str
        The singular: "object", "label file"; also a verb: "is" (with ``plural="are"``).
    plural : str, optional
        The plural when it is not ``noun + "s"``: "boxes", "are".

    Returns
    -------
    str
        ``noun`` when ``n`` is 1, else the plural: ``for_count(2, "is", "are") == "are"``.
    """
    if int(n) == 1:
        return noun
    return plural if plural is not None else noun + "s"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the form of ``noun`` that goes with it: "1 object", "3 objects", "0 boxes".

    Parameters
    ----------
    n : int
        How many there are.
    noun : str
        The singular: "object", "image file".
    plural : str, optional
        The plural when it is not ``noun + "s"``: ``counted(2, "box", "boxes") == "2 boxes"``.

    Returns
    -------
    str
        ``f"{n} {noun}"`` with the noun in the singular when ``n`` is 1, else in the plural.
    """
    return f"{int(n)} {for_count(n, noun, plural)}"
