"""Batched decoding on the CPU in chunks, spread over worker threads.

SAM's mask decoder runs its two-way transformer over every prompt's own copy of the image
tokens (a mask prompt makes them differ per prompt), so one call for N prompts streams
N x E x E tokens through memory several times. On a CPU, chunks of about
:data:`CHUNK_TOKENS` tokens stay in the cache and run about twice as fast per prompt as one
large call (measured: docs/benchmarks.md, "Propagation decoding in chunks"). The chunks are
independent, so worker threads decode them at once, each with one torch thread: unlike the
OpenMP threads of one operation, a worker whose core another process holds does not hold
the others up, and on a busy machine more runnable threads get a larger share of it.

The chunks are a pure function of the number of prompts and the embedding size
(:func:`chunk_slices`), never of the number of workers: results are the same whatever the
machine's load and thread policy (tested).

Which code decodes with how many workers:

- :func:`decode_workers`: the workers of the thread plan (``device.configure_threads``;
  else torch's thread count), unless the calling thread runs inside :func:`serial_decoding`
  (slice workers that already share the cores among themselves, and the pool's own threads).
- :func:`run_chunks`: runs a function over the chunks, on the pool or in the calling thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["CHUNK_TOKENS", "chunk_slices", "decode_workers", "run_chunks", "serial_decoding"]

#: Image tokens (prompts x E x E) per chunk of a batched CPU decode: four prompts of a
#: 32 x 32 embedding, one of SAM's 64 x 64 (measured: docs/benchmarks.md).
CHUNK_TOKENS = 4096

T = TypeVar("T")

_local = threading.local()
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def chunk_slices(n: int, tokens_per_prompt: int, budget: int = CHUNK_TOKENS) -> list[slice]:
    """Split ``n`` prompts into consecutive chunks of at most ``budget`` image tokens.

    Parameters
    ----------
    n : int
        Prompts in the batch (>= 0).
    tokens_per_prompt : int
        Image tokens each prompt's decoder pass reads (E * E).
    budget : int
        Tokens per chunk; every chunk holds at least one prompt.

    Returns
    -------
    list of slice
        Chunks of equal size (the last one may be smaller), in order; empty for ``n == 0``.
    """
    per = max(1, int(budget) // max(1, int(tokens_per_prompt)))
    return [slice(i, min(i + per, n)) for i in range(0, int(n), per)]


@contextlib.contextmanager
def serial_decoding() -> Iterator[None]:
    """Within this context, batched decodes of the calling thread use no worker threads
    (for threads that are already one of several workers sharing the cores)."""
    before = getattr(_local, "serial", False)
    _local.serial = True
    try:
        yield
    finally:
        _local.serial = before


def decode_workers() -> int:
    """Worker threads a batched CPU decode of the calling thread may use: 1 inside
    :func:`serial_decoding`; else the thread plan's workers
    (:func:`napari_sam.device.slice_workers`) where ``configure_threads`` chose them, else
    the calling thread's torch thread count."""
    if getattr(_local, "serial", False):
        return 1
    from napari_sam.device import planned_workers

    planned = planned_workers()
    return max(1, planned if planned is not None else torch.get_num_threads())


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="napari-sam-decode")
            _pools[workers] = pool
        return pool


def run_chunks(fn: Callable[[slice], T], chunks: Sequence[slice], workers: int | None = None
               ) -> list[T]:
    """``[fn(chunk) for chunk in chunks]``, on ``workers`` threads where there are several
    chunks and workers (default :func:`decode_workers`).

    Each worker runs ``fn`` with one torch thread, in inference mode, inside
    :func:`serial_decoding`; the calling thread waits. The first exception of a chunk is
    raised here (after every chunk has finished, so none is still writing).
    """
    workers = decode_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(chunks) < 2:
        return [fn(c) for c in chunks]

    def task(chunk: slice) -> T:
        torch.set_num_threads(1)  # this thread's OpenMP setting only
        with torch.inference_mode(), serial_decoding():
            return fn(chunk)

    pool = _pool(workers)
    futures = [pool.submit(task, c) for c in chunks]
    errors = [f.exception() for f in futures]
    for err in errors:
        if err is not None:
            raise err
    return [f.result() for f in futures]
