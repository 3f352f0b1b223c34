"""Checks of one job that fail only that job, said with the file and what to do: an output
name longer than the file system allows (:func:`output_name_problem`)."""

from __future__ import annotations

import os
from pathlib import Path

from napari_sam.batch.context import Context, Job
from napari_sam.batch.inputs import stem_of

#: The longest file name a job writes, less its output's name: the temporary of the output's
#: sidecar, ``.<output>.json.<12 hex digits>.tmp`` (the lock, the work folder and the output's
#: own temporary are shorter).
NAME_EXTRA = len(".") + len(".json") + len(".0123456789ab.tmp")
#: The longest file name (bytes) where the file system does not say (ext4, XFS, APFS, NTFS).
DEFAULT_NAME_MAX = 255


def name_max(folder: os.PathLike | str) -> int:
    """The longest file name, in bytes, that the file system of ``folder`` (or of its nearest
    existing parent) allows; :data:`DEFAULT_NAME_MAX` where it does not say."""
    p = Path(folder).absolute()
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    try:
        return int(os.pathconf(p, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # AttributeError: no pathconf (Windows)
        return DEFAULT_NAME_MAX


def output_name_problem(job: Job, ctx: Context) -> str | None:
    """Why ``job`` cannot write its output under its name, or None: with the names written
    beside it (:data:`NAME_EXTRA` bytes more: its sidecar's temporary) it would be longer than
    the file system allows. Says how long the input's name may be, and to rename it (or,
    for ``auto`` and ``segment``, to give a shorter ``--suffix``)."""
    name = job.output.name
    size = len(os.fsencode(name))
    limit = name_max(job.output.parent)
    if size + NAME_EXTRA <= limit:
        return None
    keep = limit - NAME_EXTRA - (size - len(os.fsencode(stem_of(job.input))))
    fix = "rename the input to a shorter name" + (
        f" (at most {keep} bytes before its suffix)" if keep > 0 else "")
    if ctx.command != "embed":
        fix += " or give a shorter --suffix"
    return (f"the output name would be longer than the file system allows ({limit} bytes): "
            f"{name[:24]}...{name[-16:]} has {size} bytes, and the files written beside it "
            f"(its sidecar's temporary) {size + NAME_EXTRA}; nothing was written for it: "
            f"{fix}")
