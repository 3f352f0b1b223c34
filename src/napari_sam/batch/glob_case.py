"""Glob patterns and upper/lower case: ``"data/*.tif"`` matches no ``IMG_001.TIF`` on Linux
and macOS (Python's glob, like the shell's, compares letters exactly there), although on
Windows it does and a folder argument takes any case. :func:`case_only_matches` finds the
files a pattern misses only by case, :func:`case_words` says so and what to give instead."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["case_only_matches", "case_words", "left_out_notes"]


def _any_case(pattern: str) -> str:
    """``pattern`` with every letter outside ``[...]`` made ``[xX]``."""
    out, in_class = [], False
    for ch in pattern:
        if in_class:
            in_class = ch != "]"
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch.lower() != ch.upper():
            out.append(f"[{ch.lower()}{ch.upper()}]")
        else:
            out.append(ch)
    return "".join(out)


def case_only_matches(pattern: str, exact: Sequence[os.PathLike | str] = ()) -> list[Path]:
    """The files that ``pattern`` matches when upper and lower case are one, but that it does
    not match as written (nor are in ``exact``), sorted; hidden names are left out as a
    glob's ``*`` leaves them out. Files are compared as files, not by their names: on a
    case-insensitive file system ``"Data/*.tif"`` matches ``data/a.tif`` as ``Data/a.tif``.

    Parameters
    ----------
    pattern : str
        A glob pattern (``**`` searches subfolders).
    exact : sequence of path
        What the pattern matched as written.

    Returns
    -------
    list of pathlib.Path
    """
    if os.path.normcase("A") == os.path.normcase("a"):  # Windows: glob ignores case already
        return []
    have = {_identity(p) for p in [*exact, *glob.glob(pattern, recursive=True)]}
    found = [Path(m) for m in glob.glob(_any_case(pattern), recursive=True)
             if _identity(m) not in have and os.path.isfile(m)]
    return sorted(found)


def _identity(path: os.PathLike | str) -> tuple:
    """Which file ``path`` is: its ``(st_dev, st_ino)``, so that ``Data/a.tif`` and
    ``data/a.tif`` on a case-insensitive file system (macOS, a mounted NTFS or SMB share) are
    one; its absolute path where it cannot be looked at."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.abspath(path))
    return (st.st_dev, st.st_ino)


def case_words(pattern: str, others: Sequence[Path], folder: os.PathLike | str | None, *,
               left_out: bool = False) -> str:
    """Words saying that ``others`` match ``pattern`` but for case (``left_out``: and were
    left out, beside what it matched), and what to give instead: the pattern with their
    extension's case, or the ``folder`` (which takes any case; None where folders are not
    taken, as in ``napari_sam.train``); "" without ``others``."""
    if not others:
        return ""
    first = others[0]
    ext = first.suffix
    ways = []
    if ext and pattern.lower().endswith(ext.lower()) and not pattern.endswith(ext):
        both = f"\"{pattern}\" " if left_out else ""  # what it matched, and the others
        ways.append(f"{both}\"{pattern[:-len(ext)]}{ext}\"")
    if folder is not None:
        ways.append(f"the folder {Path(folder).as_posix()}/ (a folder takes any case)")
    instead = " or ".join(ways) or "a pattern with the files' upper and lower case"
    n = len(others)
    what = "1 file matches" if n == 1 else f"{n} files match"
    left = f" and {'is' if n == 1 else 'are'} left out" if left_out else ""
    return (f"{what} it but for upper/lower case{left} (e.g. {first.as_posix()}): patterns "
            f"compare letters exactly here; give {instead}")


def left_out_notes(candidates: Sequence[tuple[str, Sequence[Path], Path]],
                   found: Sequence[os.PathLike | str]) -> list[str]:
    """One note per pattern of ``candidates`` (pattern, the files it misses by case, its
    fixed folder) whose files no argument took (``found``: every input found)."""
    taken = {_identity(m) for m in found}
    notes = []
    for pattern, others, folder in candidates:
        words = case_words(pattern, [o for o in others if _identity(o) not in taken],
                           folder, left_out=True)
        notes += [f"{pattern!r}: {words}"] if words else []
    return notes
