"""Batched decoding on the CPU in chunks, spread over worker threads.

SAM's mask decoder runs its two-way transformer over every prompt's own copy of the image
tokens (a mask prompt makes them differ per prompt), so one call for N prompts streams
N x E x E tokens through memory several times. On a CPU, chunks of about
:data:`CHUNK_TOKENS` tokens stay in the cache and run 1.6-2.4 times as fast per prompt as
one large call (docs/benchmarks.md, "Propagation decoding in chunks"). The chunks are
independent, so worker threads decode them at once, each with one torch thread: unlike the
OpenMP threads of one operation, a worker whose core another process holds does not hold
the others up, and on a busy machine more runnable threads get a larger share of it.

The chunks are a pure function of the number of prompts and the embedding size
(:func:`chunk_slices`), never of the number of workers, and several chunks are always
decoded with one torch thread each: results are the same whatever the machine's load and
thread policy (tested). A batch of one chunk (one ViT prompt) runs at the calling thread's
torch threads, as before.

Which code decodes with how many workers:

- :func:`decode_workers`: the workers of the thread plan (``device.configure_threads``) or
  the calling thread's torch threads, whichever is more; 1 where the calling thread runs
  inside :func:`serial_decoding` (slice workers that already share the cores among
  themselves, and the pool's own threads).
- :func:`run_chunks`: runs a function over the chunks, on the pool or in the calling thread.
"""

from __future__ import annotations

import contextlib
import os
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
    (:func:`napari_sam.device.planned_workers`, where ``configure_threads`` chose them) or
    the calling thread's torch threads, whichever is more. So several chunks are always
    decoded with one torch thread each (never one worker at several threads, whose float
    rounding may differ): their results depend neither on the workers nor on the threads.
    A batch of one chunk runs in the calling thread, at its threads."""
    if getattr(_local, "serial", False):
        return 1
    from napari_sam.device import planned_workers

    return max(1, planned_workers() or 1, torch.get_num_threads())


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
    :func:`serial_decoding`; the calling thread waits. Setting a thread's torch threads also
    sets the count that threads started later begin with, so the calling thread's count is
    set again afterwards (a GUI job started later embeds with the threads it had before).
    The first exception of a chunk is raised here, after every chunk has finished (none is
    still writing); an interrupt of the wait cancels the chunks not started yet.
    """
    workers = decode_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(chunks) < 2:
        return [fn(c) for c in chunks]

    def task(chunk: slice) -> T:
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)  # once per pool thread
        with torch.inference_mode(), serial_decoding():
            return fn(chunk)

    before = torch.get_num_threads()
    try:
        pool = _pool(workers)
        futures = [pool.submit(task, c) for c in chunks]
    except RuntimeError:  # no new threads at interpreter shutdown: decode here
        return [fn(c) for c in chunks]
    try:
        errors = [f.exception() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    finally:
        torch.set_num_threads(before)  # also the count of threads started later
    for err in errors:
        if err is not None:
            raise err
    return [f.result() for f in futures]


def _forget_pools() -> None:
    """In a forked child the parent's pool threads do not exist: start afresh."""
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)
