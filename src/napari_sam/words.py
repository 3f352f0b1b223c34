"""Counts and sizes in messages read as English: "1 object", "3 objects" (never
"object(s)"); "7.6 GB", "46.3 MB", "4.1 kB", "512 bytes" (never "0.0 GB")."""

from __future__ import annotations

__all__ = ["counted", "for_count", "in_frames", "size_words"]


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


def size_words(n: int) -> str:
    """``n`` bytes in words, in the unit that keeps a small size from reading as none.

    Parameters
    ----------
    n : int
        A count of bytes (0 or more).

    Returns
    -------
    str
        "7.6 GB" from 1 GB, "46.3 MB" from 100 kB, "4.1 kB" from 1 kB, else "512 bytes" (1
        byte: "1 byte"): a GPU with 40 MB free reads "40.0 MB", not "0.0 GB".
    """
    n = int(n)
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e5:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB" if n >= 1e3 else counted(n, "byte")


def in_frames(text: str, axis_kind: str) -> str:
    """``text``, words of the tool's own (no names the user gave: an image 'slice_02'
    would be renamed), with its slices told as frames where ``axis_kind`` is "t" (the stack
    is a time series), e.g. "No object on this frame."; as is for "z"."""
    return text.replace("slice", "frame") if axis_kind == "t" else text
