"""Reading a stack one slice at a time with bounded memory (:class:`SliceSource`): each index
returns a numpy copy of what it covers, and the pages of a memory-mapped file are released as
the reading goes on; a damaged strip or chunk becomes an :class:`ImageReadError` naming the
file and the slice."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np

from napari_sam.io.readers import ImageReadError, missing_codec_hint, quiet_tifffile

_MADVISE_EVERY = 64 << 20  # release memory-mapped input pages after this many bytes read


class SliceSource:
    """A read-only ``(S, Y, X[, C])`` view of a (lazy) array that hands out slice copies.

    Indexing reads only what is asked for and returns a numpy array. For memory-mapped inputs
    the pages already read are released (``madvise(MADV_DONTNEED)``) after every 64 MiB, so
    the resident memory of a pass over a 100 GB stack stays about one slice.
    """

    def __init__(self, data, expand: bool = False, path: os.PathLike | str | None = None):
        self.data = data
        self.path = None if path is None else Path(path)  # named in decoding errors
        self.expand = bool(expand)  # a 2D image seen as a stack of one slice
        shape = tuple(int(s) for s in data.shape)
        self.shape = (1, *shape) if self.expand else shape
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)
        self._mmap = getattr(data, "_mmap", None) if isinstance(data, np.memmap) else None
        self._since = 0

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(math.prod(self.shape)) * self.dtype.itemsize

    def _release(self, nbytes: int) -> None:
        if self._mmap is None:
            return
        self._since += nbytes
        if self._since >= _MADVISE_EVERY:
            self.release()

    def release(self) -> None:
        """Drop the resident pages of a memory-mapped input (a no-op otherwise)."""
        self._since = 0
        if self._mmap is not None and hasattr(self._mmap, "madvise"):
            import mmap

            with contextlib.suppress(OSError, ValueError):
                self._mmap.madvise(mmap.MADV_DONTNEED)

    def __getitem__(self, key):
        try:
            with quiet_tifffile():
                arr = self._read(key)
        except (IndexError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # a damaged strip or chunk: name the file and the slice
            if self.path is None:
                raise
            where = f"slice {key}" if isinstance(key, (int, np.integer)) else f"region {key!r}"
            text = " ".join(str(exc).split())
            raise ImageReadError(
                self.path,
                f"{where} could not be decoded ({_exc_name(exc)}: {text})",
                missing_codec_hint(text) or "The file is damaged (a corrupted compressed strip "
                "or chunk); copy or export it again, or open it in Fiji to see which slices are "
                "lost.",
            ) from exc
        self._release(arr.nbytes)
        return arr

    def _read(self, key) -> np.ndarray:
        if self.expand:
            if isinstance(key, tuple):
                first, rest = key[0], key[1:]
            else:
                first, rest = key, ()
            if isinstance(first, (int, np.integer)):
                if int(first) not in (0, -1):
                    raise IndexError(f"index {first} out of range for a stack of 1 slice")
                arr = np.array(self.data[rest] if rest else self.data[...])
            else:
                arr = np.array(self.data[rest] if rest else self.data[...])[None][first]
        else:
            arr = np.array(self.data[key])
        return arr

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)


def _exc_name(exc: BaseException) -> str:
    """``zlib.error`` rather than a bare ``error``."""
    name = type(exc).__name__
    mod = type(exc).__module__
    return f"{mod}.{name}" if name.islower() and mod not in ("builtins", "__main__") else name
