"""Checks of one job that fail only that job, said with the file and what to do: an output
name longer than the file system allows (:func:`output_name_problem`), an input that no
reader can open (:func:`check_input_file`: a FIFO, whose reading would wait forever, a
symbolic link whose target is missing, an empty file), and the operating system's errors
while writing (:func:`os_error_reason`: a full disk, a read-only file system)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from napari_sam import io as nio
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


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe): reading it would wait for a writer"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file or folder"


def check_input_file(path: os.PathLike | str) -> None:
    """Raise :class:`napari_sam.io.ImageReadError` for an input no reader can open, before
    anything reads it: a symbolic link whose target is missing (the target named), a FIFO,
    socket or device (reading a FIFO would wait for a writer forever), an empty file (0 bytes:
    an interrupted copy). Zarr folders, readable files and paths that do not exist (the
    reader says so) pass."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if not os.path.islink(p):
            return
        target = os.readlink(p)
        where = "" if os.path.isabs(target) else f" ({os.path.normpath(p.parent / target)})"
        raise nio.ImageReadError(
            p, f"it is a symbolic link whose target {target!r}{where} is missing",
            "Restore the target, or point the link at the image again (ln -sfn TARGET "
            "LINK).") from None
    except OSError:  # the reader says why
        return
    if stat.S_ISDIR(st.st_mode):
        return
    if not stat.S_ISREG(st.st_mode):
        raise nio.ImageReadError(
            p, f"not a regular file ({_kind(st.st_mode)})",
            "napari-sam reads image files and .zarr folders; save the data as an image file, "
            "or move this one out of the input folder.")
    if st.st_size == 0:
        raise nio.ImageReadError(p, "the file is empty (0 bytes)",
                                 "It was not written completely; copy it again.")


def os_error_reason(exc: OSError, job: Job) -> str | None:
    """A one-line reason for an error of the operating system while ``job`` wrote its output,
    naming the output folder and what to do; None for other errors (the caller's
    one-line text). ``ENOSPC``/``EDQUOT`` (a full disk or quota), ``EROFS`` (a read-only
    file system), ``EACCES``/``EPERM`` on a path in the output folder, ``ENAMETOOLONG``."""
    code = getattr(exc, "errno", None)
    folder = job.output.parent
    path = os.fsdecode(exc.filename) if exc.filename is not None else job.output
    writing = f"(writing {path})"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        what = "no space left" if code == errno.ENOSPC else "disk quota exceeded"
        return (f"{what} on the device of {folder} {writing}: nothing was written for it; "
                "free space there or write the outputs to another folder (-o), then rerun")
    if code == errno.EROFS:
        return (f"{folder} is on a read-only file system {writing}: write the outputs to "
                "another folder (-o)")
    in_output = Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))
    if code in (errno.EACCES, errno.EPERM) and in_output:
        return (f"permission denied {writing}: make {folder} writable for you (or remove the "
                "file in the way), or write the outputs to another folder (-o)")
    if code == errno.ENAMETOOLONG:
        return (f"a name is longer than the file system allows {writing}: rename the input to "
                "a shorter name, or use a shorter --suffix or -o path")
    return None
