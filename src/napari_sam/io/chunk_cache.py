"""Reading a chunked lazy array (a tiled or compressed TIFF through tifffile's zarr store, a
zarr array) with its decoded chunks kept in a bounded LRU (:class:`ChunkCache`), so that
overlapping reads decode each chunk once.

A batch job reads its input in many overlapping regions: the windows of a tiled image overlap
by their halo and are rarely aligned with the file's tiles, and the contrast limits, the
propagation's contrast rules and the trace read slices again. Read straight from zarr, each
of those reads decodes every chunk it touches: a 1024 x 1024 x 3 stack of 256 px tiles (48
tiles) decoded 376 tiles for one ``napari-sam segment`` with the demo model, each tile up to 9
times. Through a :class:`ChunkCache` a read decodes only the chunks that are not in the
cache, in one read of the block they span.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict

import numpy as np

__all__ = ["CHUNK_CACHE_BYTES", "ChunkCache", "chunk_cached"]

#: the decoded chunks one input keeps in memory (a band of windows' rows of a few slices)
CHUNK_CACHE_BYTES = 128 << 20


def chunk_cached(data, max_bytes: int = CHUNK_CACHE_BYTES):
    """``data`` read through a :class:`ChunkCache` when it is a chunked lazy array (zarr:
    a ``chunks`` tuple of ints) whose chunks are small enough to keep several (an eighth of
    ``max_bytes`` at most); any other array (numpy, memmap, dask) as it is."""
    chunks = getattr(data, "chunks", None)
    if isinstance(data, np.ndarray) or not isinstance(chunks, tuple) or len(chunks) != len(
            data.shape) or not all(isinstance(c, (int, np.integer)) and c > 0 for c in chunks):
        return data
    if math.prod(int(c) for c in chunks) * np.dtype(data.dtype).itemsize > max_bytes // 8:
        return data
    return ChunkCache(data, max_bytes)


class ChunkCache:
    """A read-only view of a chunked array that keeps its most recently decoded chunks.

    ``cache[key]`` takes basic indices (integers, slices of step 1, ``...``) and returns a
    numpy array equal to ``numpy.asarray(data[key])``; other keys read ``data`` directly, and
    so do regions of more than half ``max_bytes`` (their chunks would not stay cached, and
    putting them together through the cache held the region three times over).

    Parameters
    ----------
    data : zarr.Array or any array with ``shape``, ``dtype`` and a tuple of int ``chunks``
    max_bytes : int
        Bytes of decoded chunks kept (least recently used dropped first).

    Attributes
    ----------
    reads : int
        Reads of ``data`` made so far (one per block of missing chunks).

    Threads may read at once (``auto``'s slice workers share one input): the cache's table is
    changed under a lock, the reads themselves run outside it.
    """

    def __init__(self, data, max_bytes: int = CHUNK_CACHE_BYTES):
        self.data = data
        self.shape = tuple(int(s) for s in data.shape)
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)
        self.chunks = tuple(int(c) for c in data.chunks)
        self.max_bytes = int(max_bytes)
        self.reads = 0
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(math.prod(self.shape)) * self.dtype.itemsize

    def __array__(self, dtype=None, copy=None):
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, key):
        bounds = _basic_bounds(key, self.shape)
        if bounds is None:
            return np.asarray(self.data[key])
        region, squeeze = bounds
        if math.prod(b - a for a, b in region) * self.dtype.itemsize > self.max_bytes // 2:
            # its chunks would not stay cached: read straight through, one copy instead of
            # three (the block read, its chunks' copies for the cache, the region put together)
            return np.asarray(self.data[key])
        out = np.empty(tuple(b - a for a, b in region), self.dtype)
        if out.size:
            self._fill(out, region)
        return out[tuple(0 if s else slice(None) for s in squeeze)]

    def _fill(self, out: np.ndarray, region: list[tuple[int, int]]) -> None:
        """Copy ``data[region]`` into ``out``: the cached chunks it covers from the cache,
        the others read in one block and cached."""
        grid = [range(a // c, (b - 1) // c + 1) for (a, b), c in zip(region, self.chunks)]
        held, missing = {}, []
        with self._lock:
            for idx in itertools.product(*grid):
                chunk = self._cache.get(idx)
                if chunk is None:
                    missing.append(idx)
                else:
                    self._cache.move_to_end(idx)
                    held[idx] = chunk
        if missing:
            held.update(self._read_block(missing))
        for idx, chunk in held.items():
            dst, src = [], []
            for i, (a, b), c in zip(idx, region, self.chunks):
                lo, hi = max(a, i * c), min(b, (i + 1) * c)
                dst.append(slice(lo - a, hi - a))
                src.append(slice(lo - i * c, hi - i * c))
            out[tuple(dst)] = chunk[tuple(src)]

    def _read_block(self, missing: list[tuple]) -> dict[tuple, np.ndarray]:
        """Read the block of chunks spanning ``missing`` at once; cache and return those."""
        lo = [min(idx[d] for idx in missing) for d in range(self.ndim)]
        hi = [max(idx[d] for idx in missing) + 1 for d in range(self.ndim)]
        start = [i * c for i, c in zip(lo, self.chunks)]
        block = np.asarray(self.data[tuple(
            slice(s, min(i * c, n)) for s, i, c, n in zip(start, hi, self.chunks, self.shape))])
        got = {idx: block[tuple(slice(i * c - s, (i + 1) * c - s)
                                for i, c, s in zip(idx, self.chunks, start))].copy()
               for idx in missing}
        with self._lock:
            self.reads += 1
            for idx, part in got.items():
                old = self._cache.pop(idx, None)  # another thread read it meanwhile
                self._bytes += part.nbytes - (0 if old is None else old.nbytes)
                self._cache[idx] = part
            while self._bytes > self.max_bytes and self._cache:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.nbytes
        return got


def _basic_bounds(key, shape: tuple[int, ...]):
    """``(region, squeeze)`` of a basic index: per axis ``(start, stop)`` and whether an
    integer dropped it; None for any other key (arrays, steps other than 1, None)."""
    key = key if isinstance(key, tuple) else (key,)
    if sum(k is Ellipsis for k in key) > 1:
        return None
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1:]
    if len(key) > len(shape):
        return None
    key = key + (slice(None),) * (len(shape) - len(key))
    region, squeeze = [], []
    for k, n in zip(key, shape):
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            k = int(k)
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of range for an axis of size {n}")
            k %= n
            region.append((k, k + 1))
            squeeze.append(True)
        elif isinstance(k, slice) and k.step in (None, 1):
            a, b, _ = k.indices(n)
            region.append((a, max(a, b)))
            squeeze.append(False)
        else:
            return None
    return region, squeeze
