"""When two output names are one file: on a case-insensitive file system (Windows, macOS's
default APFS, an SMB share or a FAT/exFAT disk mounted on Linux) ``a_labels.tif`` and
``A_labels.tif`` are the same file, and on macOS ``café`` in either Unicode normal form is.
:func:`folds_names` asks the output folder's file system; :func:`output_key` is the key that
compares two output paths as that file system does."""

from __future__ import annotations

import contextlib
import os
import tempfile
import unicodedata
from pathlib import Path

__all__ = ["folds_names", "output_key"]


def _existing_folder(folder: Path) -> Path | None:
    """``folder`` or its nearest existing parent (the file system its new folders are made
    on), None when none can be reached."""
    for part in (folder, *folder.parents):
        if os.path.isdir(part):
            return part
    return None


def folds_names(folder: os.PathLike | str) -> bool:
    """Whether the file system of ``folder`` (or of its nearest existing parent, when it is
    not made yet) takes names that differ only in case as one file.

    Asked with an entry of the folder whose name has letters (``NAME`` looked up as
    ``name``), or, in a folder without one, with a hidden probe file made and removed at once.
    False where neither can be done (a folder one cannot read or write: the run says so).

    Parameters
    ----------
    folder : path

    Returns
    -------
    bool
    """
    home = _existing_folder(Path(os.path.abspath(os.path.expanduser(folder))))
    if home is None:
        return False
    with contextlib.suppress(OSError):
        with os.scandir(home) as entries:
            for entry in entries:
                if entry.name != entry.name.swapcase():
                    other = home / entry.name.swapcase()
                    return other.exists() and os.path.samefile(other, entry.path)
    try:
        fd, probe = tempfile.mkstemp(prefix=".napari-sam-case-", dir=home)
    except OSError:
        return False
    try:
        os.close(fd)
        swapped = os.path.join(home, os.path.basename(probe).swapcase())
        return os.path.exists(swapped)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def output_key(path: os.PathLike | str, folds: bool) -> str:
    """The key under which ``path`` is one output: the resolved path, and where the file
    system ``folds`` names, in one case and Unicode normal form (``A_labels.tif`` and
    ``a_labels.tif`` one key). Letters are lowered one by one, as NTFS and APFS compare them,
    not case-folded: ``Maß`` and ``Mass`` stay two names (``str.casefold`` makes ß "ss")."""
    text = str(Path(path).resolve())
    return unicodedata.normalize("NFC", text).lower() if folds else text
