"""A disk that fills up while a file is written, for the tests of writes that fail."""

from __future__ import annotations

import builtins
import contextlib
import errno


class WrappedFile:
    """A file's stand-in that passes everything to the file ``_fh`` (subclasses change
    ``write``); closed on leaving a ``with`` block."""

    _fh = None

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


class FillsUp(WrappedFile):
    """A binary file whose writes fail with ENOSPC after ``room`` bytes (a disk that fills)."""

    def __init__(self, fh, room: int):
        self._fh, self._room = fh, room

    def write(self, data) -> int:
        self._room -= memoryview(data).nbytes
        if self._room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._fh.write(data)


@contextlib.contextmanager
def disk_fills_after(monkeypatch, room: int):
    """Within the block, every file opened for binary writing (``open(f, "wb")``) fills up
    after ``room`` bytes, whichever module opens it."""
    real = builtins.open

    def opening(file, mode="r", *args, **kwargs):
        fh = real(file, mode, *args, **kwargs)
        return FillsUp(fh, room) if "w" in mode and "b" in mode else fh

    with monkeypatch.context() as m:
        m.setattr(builtins, "open", opening)
        yield
