"""Long work of an annotation session as generators that yield progress ``(done, total)``
(or a ``str``: a new status line, e.g. what the job found out once the model is loaded;
or a :class:`Phase`: the job's next phase starts, e.g. "embedding" then "propagating")
and return their result; how they run (a worker thread in the GUI, or to the end on the
calling thread: :func:`run_to_end`) is up to the caller.

Progress counts from 0 again in each phase; :class:`ProgressTracker` makes what a bar shows
of one job never go backwards within a phase (a new phase is named when it starts).

Core functions that report progress through a ``progress(done, total)`` callback instead of
yielding (``segment_volume``, ``segment_everything``) are bridged by :func:`with_progress`.
"""

from __future__ import annotations

import atexit
import math
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager

__all__ = ["Cancelled", "Phase", "Progress", "ProgressTracker", "cancel_check", "embed_job",
           "refuse_what_does_not_fit", "run_to_end", "stop_helper_threads", "tiled_embed_job",
           "with_progress"]

Progress = tuple[int, int]

#: Helper threads of :func:`with_progress` still running, with their stop events.
_HELPERS: dict[threading.Thread, threading.Event] = {}
#: How long the interpreter's exit waits for a cancelled helper to reach its next progress
#: call (seconds).
EXIT_WAIT_S = 60.0
#: The cancel check of the job advancing on this thread (:func:`cancel_check`).
_CHECKS = threading.local()


class Cancelled(Exception):
    """Raised inside a job's progress callback to stop a core function on Cancel."""


class Phase:
    """What a job yields when its next phase starts (its progress then counts from 0).

    Parameters
    ----------
    name : str
        A few words for the progress bar, e.g. ``"embedding"``, ``"propagating"``.
    """

    def __init__(self, name: str):
        self.name = str(name)

    def __repr__(self) -> str:
        return f"Phase({self.name!r})"


class ProgressTracker:
    """One job's progress as a bar shows it: the phase under way and ``(done, total)``
    that never goes backwards within a phase (a report below what was shown is held at
    the fraction shown; a new :class:`Phase` starts again from 0, under its own name)."""

    def __init__(self):
        self.phase = ""  # the name of the phase under way ("" before the first)
        self._fraction = 0.0

    def start(self, phase: Phase) -> str:
        """A new phase starts; returns its name."""
        self.phase, self._fraction = phase.name, 0.0
        return self.phase

    def update(self, done: int, total: int) -> Progress:
        """``(done, total)`` to show for a report (``total`` 0: busy, nothing counted)."""
        done, total = int(done), int(total)
        if total <= 0:
            return done, total
        done = min(max(done, math.ceil(self._fraction * total - 1e-9)), total)
        self._fraction = max(self._fraction, done / total)
        return done, total


def embed_job(emb, indices: Iterable[int] | None = None) -> Generator[Progress, None, object]:
    """Compute the embeddings of ``indices`` (default all slices) batch by batch (a phase
    "embedding" when there is any to compute)."""
    todo = list(range(len(emb))) if indices is None else list(indices)
    step = max(1, int(getattr(emb, "batch_size", 1)))
    if todo:
        yield Phase("embedding")
        refuse_what_does_not_fit(emb, todo)
    yield 0, len(todo)
    for start in range(0, len(todo), step):
        emb.compute(todo[start : start + step])
        yield min(start + step, len(todo)), len(todo)
    return emb


def tiled_embed_job(emb, indices: Iterable[int] | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    ) -> Generator[Progress, None, object]:
    """Embed the slices ``indices`` (default all) of tiled stack embeddings window by
    window: progress counts windows over all slices; closing the generator (Cancel) stops
    the embedding after the encoder call under way. Once ``should_stop()`` is true the job
    ends before the next window and returns what it embedded (``emb.stopped`` is then set:
    a preload that makes way for a click)."""
    todo = list(range(len(emb))) if indices is None else [int(i) for i in indices]
    total = len(todo) * len(emb.tiling)
    if todo:
        yield Phase("embedding tiles")
        if should_stop is None or not should_stop():  # (a click's: it embeds no tile here)
            refuse_what_does_not_fit(emb, todo)
    yield 0, total
    if todo:
        yield from with_progress(emb.compute, todo, should_stop=should_stop)
    return emb


def refuse_what_does_not_fit(emb, todo: list[int]) -> None:
    """Raise a :class:`~.errors.Refusal` where the embeddings of the slices ``todo`` would
    not fit in the memory free here (:func:`~.memory_checks.embedding_problem`): under a
    memory limit napari would be ended by the system, not told."""
    from .errors import Refusal
    from .memory_checks import embedding_problem

    problem = embedding_problem(emb, emb.missing(todo), getattr(emb, "store", None) is not None)
    if problem:
        raise Refusal(problem)


@contextmanager
def cancel_check(check: Callable[[], bool]) -> Iterator[None]:
    """While this block runs, a :func:`with_progress` generator started on this thread
    stops its function at the function's next ``progress`` call once ``check()`` is true.

    The runner of a job wraps each step of the job's generator in it (``check``: "was the
    job cancelled?"): a Cancel pressed while the job's thread waits for the function's next
    report then stops the function at that report, not at the one after it (the generator
    is closed only once it has yielded again: a SAM 2 slice later, 20 s on a CPU).
    """
    before = getattr(_CHECKS, "check", None)
    _CHECKS.check = check
    try:
        yield
    finally:
        _CHECKS.check = before


def with_progress(fn: Callable, *args, **kwargs) -> Generator[Progress, None, object]:
    """Run ``fn(*args, progress=callback, **kwargs)`` in a helper thread and yield its progress.

    Closing the generator (Cancel), or the check of the job's runner (:func:`cancel_check`)
    turning true, makes the next ``progress`` call raise :class:`Cancelled` inside ``fn``;
    the helper thread is joined before the generator finishes, so nothing keeps running
    after a job reports that it ended. A call that repeats the last ``(done, total)`` (a
    check inside a long step, e.g. a SAM 2 slice) is not yielded again.
    """
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    cancelled = getattr(_CHECKS, "check", None) or stop.is_set
    last = [None]

    def progress(done, total):
        if stop.is_set() or cancelled():
            raise Cancelled
        if (int(done), int(total)) != last[0]:
            last[0] = (int(done), int(total))
            events.put(("progress", last[0]))

    def target():
        try:
            events.put(("result", fn(*args, progress=progress, **kwargs)))
        except BaseException as err:  # noqa: BLE001 - re-raised on the job's thread
            events.put(("error", err))

    thread = threading.Thread(target=target, name=f"napari-sam {fn.__name__}", daemon=True)
    _HELPERS[thread] = stop
    thread.start()
    try:
        while True:
            kind, value = events.get()
            if kind == "progress":
                yield value
            elif kind == "result":
                return value
            else:
                raise value
    finally:
        stop.set()
        thread.join()
        _HELPERS.pop(thread, None)


@atexit.register
def stop_helper_threads(timeout: float = EXIT_WAIT_S) -> list[threading.Thread]:
    """Stop the helper threads of :func:`with_progress` and wait for them (at most
    ``timeout`` seconds in all); returns those still running.

    Registered to run when the interpreter exits: a cancelled job's helper thread (a daemon)
    runs on to its next progress call, and a daemon thread stopped inside torch while the
    interpreter shuts down aborts the process ("terminate called without an active
    exception"), e.g. when napari's window is closed while segment everything runs."""
    import time

    end = time.monotonic() + timeout
    for thread, stop in list(_HELPERS.items()):
        stop.set()
        thread.join(max(0.0, end - time.monotonic()))
    return [t for t in _HELPERS if t.is_alive()]


def run_to_end(gen: Generator[Progress, None, object],
               on_message: Callable[[str], None] | None = None) -> object:
    """Run a job generator on the calling thread; returns what it returns.
    ``on_message(text)`` receives the status lines it yields."""
    while True:
        try:
            value = next(gen)
        except StopIteration as stop:
            return stop.value
        if isinstance(value, str) and on_message is not None:
            on_message(value)
