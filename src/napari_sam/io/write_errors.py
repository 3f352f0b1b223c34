"""Errors of the operating system while an output is written (a full disk, a quota, a
read-only file system, no permission): the error names the output file, and
:func:`write_problem` turns it into one line that says what to do.

Writers catch the error where they know the destination and call :func:`naming_output`;
``torch.save`` hides the ``OSError`` of a full disk behind a ``RuntimeError`` ("unexpected
pos ..."), so checkpoints are written through :class:`WriteRecorder`, which keeps it; it
hides a ``KeyboardInterrupt`` raised during a write (Ctrl-C, or a SIGTERM handler that raises
it) the same way, and the recorder keeps that too.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["WRITE_ERRNOS", "WriteRecorder", "naming_output", "write_problem"]

_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

#: The errors of a write that the user can act on: no space, a quota, a read-only file
#: system, no permission.
WRITE_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS,
                          errno.EACCES, errno.EPERM})


def naming_output(exc: BaseException, path: os.PathLike | str,
                  tmp: os.PathLike | str | None = None) -> BaseException:
    """Make ``exc`` name the output ``path`` when it is an ``OSError`` of
    :data:`WRITE_ERRNOS` that names no file, or the temporary file (or folder) ``tmp``
    written in its place (a hidden name the user never sees); other errors unchanged.
    Returns ``exc``; call it in an ``except`` clause, then ``raise``."""
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS and (
            exc.filename is None or _inside(exc.filename, tmp)):
        exc.filename = os.fspath(path)
    return exc


def _inside(name, tmp) -> bool:
    """Whether the file ``name`` is ``tmp`` or in it (a zarr store's chunk)."""
    if tmp is None or isinstance(name, int):
        return False
    name, tmp = os.path.abspath(os.fsdecode(name)), os.path.abspath(os.fspath(tmp))
    return name == tmp or name.startswith(tmp + os.sep)


class WriteRecorder:
    """A binary file's stand-in for writers that hide why a write failed (``torch.save``):
    ``write`` and ``flush`` pass through and keep the ``OSError`` raised (``error``), or the
    ``KeyboardInterrupt`` (``interrupted``: Ctrl-C during the write, which ``torch.save``
    turns into a ``RuntimeError`` "unexpected pos ...")."""

    def __init__(self, fh):
        self._fh = fh
        self.error: OSError | None = None
        self.interrupted = False

    def write(self, data) -> int:
        """Write ``data`` (bytes) to the file; an ``OSError`` or a ``KeyboardInterrupt`` is
        kept, then raised."""
        try:
            return self._fh.write(data)
        except OSError as e:
            self.error = e
            raise
        except KeyboardInterrupt:
            self.interrupted = True
            raise

    def flush(self) -> None:
        """Flush the file; an ``OSError`` or a ``KeyboardInterrupt`` is kept, then raised."""
        try:
            self._fh.flush()
        except OSError as e:
            self.error = e
            raise
        except KeyboardInterrupt:
            self.interrupted = True
            raise


def write_problem(exc: BaseException, flag: str = "-o", instead: str | None = None
                  ) -> str | None:
    """One line for an ``OSError`` that only a write raises (no space left, a quota, a
    read-only file system): the file (when the error names one), what went wrong and what
    to do (``flag``: the command's option that picks another place; ``instead``: what to
    do instead of that, e.g. in the GUI); None for other errors.

    Examples
    --------
    "could not write out/a.tif: no space left on the device of out; free space there or
    write to another folder (-o), then run the command again"
    """
    code = getattr(exc, "errno", None)
    if not isinstance(exc, OSError) or code not in _FULL | {errno.EROFS}:
        return None
    name = os.fsdecode(exc.filename) if exc.filename is not None else None
    what = f"could not write {name}" if name else "could not write an output"
    folder = f" of {Path(name).parent}" if name else ""
    then = instead or f"write to another folder ({flag}), then run the command again"
    if code == errno.EROFS:
        return f"{what}: the file system{folder} is read-only; make it writable or {then}"
    why = "no space left on the device" if code == errno.ENOSPC else "disk quota exceeded on"
    return f"{what}: {why}{folder or ' it'}; free space there or {then}"
