"""Reading a batch input with bounded memory: the input opened lazily in the standard layout
(:func:`open_image`) and handed out one slice at a time (:class:`SliceSource`), releasing the
pages of memory-mapped files as it goes."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_sam import io as nio
from napari_sam.batch.context import Context

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
            with nio.quiet_tifffile():
                arr = self._read(key)
        except (IndexError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # a damaged strip or chunk: name the file and the slice
            if self.path is None:
                raise
            where = f"slice {key}" if isinstance(key, (int, np.integer)) else f"region {key!r}"
            raise nio.ImageReadError(
                self.path,
                f"{where} could not be decoded ({_exc_name(exc)}: "
                f"{' '.join(str(exc).split())})",
                "The file is damaged (a corrupted compressed strip or chunk); copy or export "
                "it again, or open it in Fiji to see which slices are lost.",
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


@dataclass
class OpenedImage:
    stack: SliceSource  # (S, Y, X[, C])
    is2d: bool
    label_axes: str  # "YX", "ZYX" or "TYX"
    pixel_size: tuple | None
    unit: str | None
    source_axes: str

    @property
    def label_shape(self) -> tuple[int, ...]:
        s = self.stack.shape[:3]
        return s[1:] if self.is2d else s


def open_image(path: Path, ctx: Context) -> OpenedImage:
    """Read ``path`` lazily and put it in the standard layout (see :func:`napari_sam.io.to_standard`)."""
    img = nio.read_image(path, axes=ctx.axes, lazy=True)
    std = img.to_standard(channel=ctx.channel)
    axes = std.axes
    is2d = axes in ("YX", "YXC")
    stack = SliceSource(std.data, expand=is2d, path=path)
    label_axes = axes.replace("C", "")
    return OpenedImage(stack, is2d, label_axes, std.pixel_size, std.unit or "um", img.axes)
