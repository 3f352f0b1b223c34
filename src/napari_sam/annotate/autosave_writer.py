"""Autosaves of large labels written on a worker thread, one at a time, the newest first.

An autosave of a large labels layer (1 GB: 60 x 2048 x 2048 uint32) froze napari for 5-20 s
after every commit: the labels were copied (into fresh memory: 0.4-2 s of page faults),
hashed (BLAKE2, the TIFF's content address: about 2 s), compressed and written (2.5-4 s) on
the UI thread. :class:`AutosaveWriter` splits it: the caller copies the labels into a buffer
kept warm between autosaves (:meth:`AutosaveWriter.snapshot`, about 0.1 s per GB) and hands
the rest of the write to :meth:`AutosaveWriter.submit`; one worker thread writes the
submitted autosaves in order. A write asked for while one is under way waits; a newer one
replaces it (only the newest is written, into the waiting one's buffer), so an older state
never follows a newer one onto the disk.

A process killed while a write is under way leaves the autosave the last finished write
made (files are written to a temporary name and renamed): it misses the commits made since
that write began, normally none or one (the write of 1 GB of labels takes a few seconds).
Python waits for the worker (not a daemon thread) before it exits, so napari closing
normally finishes the write under way and the one waiting.

Labels below :data:`BACKGROUND_BYTES` (and every autosave of a writer without ``post``: a
script, the tests of the core) are written on the calling thread, after any write under way,
as before: there the file always holds the last commit.

A movie's (T, Z, Y, X) labels: the snapshot into a buffer whose time points' hashes are
known (:meth:`AutosaveWriter.remember`) copies only the time points that differ from it and
keeps the others' hashes (:meth:`AutosaveWriter.known_hashes`), so that an autosave hashes
and writes only the time points a commit changed (each has its own TIFF:
:mod:`napari_sam.session_label_files`), not all T.

Memory. The snapshot is a second copy of the labels (1.26 GB for a 300 x 1024 x 1024 uint32
layer), and the buffer kept warm a third: under a memory limit (a cluster job's cgroup, a
small laptop) the first commit on a large stack got napari killed by the kernel, losing the
work. Where a copy does not fit in the memory available (:func:`napari_sam.memory.
available_memory`, with :data:`COPY_MARGIN` to spare), the autosave is written on the calling
thread from the labels themselves (napari waits for the write, seconds for 1 GB, instead of
being killed), and a written buffer is kept only while another copy of its size would still
fit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from napari_sam.memory import available_memory

__all__ = ["BACKGROUND_BYTES", "COPY_MARGIN", "AutosaveWriter"]

#: labels this large (bytes) are autosaved on the worker thread; smaller ones, which write
#: in well under 0.1 s, on the calling thread (the file then always holds the last commit)
BACKGROUND_BYTES = 16 * 2**20

#: memory (bytes) left free beside a snapshot of the labels or a kept buffer: room for the
#: write's own buffers (a uint16 copy of uint32 labels, the compressor's) and napari's work
COPY_MARGIN = 512 * 2**20


class AutosaveWriter:
    """Writes autosaves one at a time on a worker thread (see the module docstring).

    Parameters
    ----------
    post : callable(fn), optional
        Runs ``fn()`` on the thread that owns the session (the GUI's UI thread; it must not
        wait for the write to run it). None: no worker thread, every write runs on the
        calling thread (:attr:`background` is False).
    """

    def __init__(self, post: Callable[[Callable[[], None]], None] | None = None):
        self.post = post
        self._cond = threading.Condition()
        self._waiting: tuple[Callable[[], None], np.ndarray | None] | None = None
        self._busy = False
        self._thread: threading.Thread | None = None
        self._spare: np.ndarray | None = None  # a written snapshot's buffer, reused
        # a movie's per-time-point hashes of the buffers' content (None: not known)
        self._hashes: dict[int, tuple[np.ndarray, list]] = {}

    @property
    def background(self) -> bool:
        """Whether large autosaves are written on the worker thread."""
        return self.post is not None

    def in_background(self, labels) -> bool:
        """Whether an autosave of ``labels`` (None: none) goes to the worker thread: large
        labels whose snapshot fits in memory (a buffer of their size kept from an earlier
        write: always); where it does not, the buffer kept is let go too."""
        if not (self.background and labels is not None and labels.nbytes >= BACKGROUND_BYTES):
            return False
        with self._cond:
            if _fits(self._spare, labels) or (
                    self._waiting is not None and _fits(self._waiting[1], labels)):
                return True
            self._forget(self._spare)
            self._spare = None  # (a buffer of another shape: no use, and in the way)
        return _room_for(labels.nbytes)

    def plan(self, labels) -> tuple[bool, bool]:
        """``(inline, in_place)`` for an autosave of ``labels`` (None: none): written on the
        calling thread (not :meth:`in_background`), and there from the labels as they are, no
        copy made: large labels whose copy does not fit in memory (the caller's thread owns
        them and waits for the write, so nothing changes them meanwhile)."""
        inline = not self.in_background(labels)
        large = labels is not None and labels.nbytes >= BACKGROUND_BYTES
        return inline, inline and self.background and large

    def _forget(self, buffer: np.ndarray | None) -> None:
        """Let the hashes of ``buffer`` go (it is dropped; the caller holds the lock)."""
        if buffer is not None:
            self._hashes.pop(id(buffer), None)

    @property
    def idle(self) -> bool:
        """No write under way or waiting."""
        with self._cond:
            return not self._busy and self._waiting is None

    def snapshot(self, labels: np.ndarray) -> np.ndarray:
        """A copy of ``labels`` for :meth:`submit`, in the buffer of the write waiting (which
        the next :meth:`submit` replaces) or of one written, when they fit; else new.

        A movie's (T, Z, Y, X) labels copied into a buffer whose time points' hashes are
        known (:meth:`remember`): the time points equal to the buffer's are not copied, and
        keep their hash (:meth:`known_hashes`), so only those a commit changed are hashed
        and written again.

        Taking the waiting write's buffer drops that write: call :meth:`submit` right after,
        with nothing between that may fail, or the newest state reaches no file."""
        with self._cond:
            buf = None
            if self._waiting is not None and _fits(self._waiting[1], labels):
                buf = self._waiting[1]
                self._waiting = None  # (its state is older than the one copied now)
            elif _fits(self._spare, labels):
                buf, self._spare = self._spare, None
            known = (None, None) if buf is None else self._hashes.pop(id(buf), (None, None))
        hashes = known[1] if buf is not None and known[0] is buf and labels.ndim == 4 else None
        if buf is None:
            buf = np.array(labels, copy=True)
        elif hashes is None:
            np.copyto(buf, labels)
        if hashes is None:
            if labels.ndim == 4:  # (hashed by the write: remember keeps them)
                with self._cond:
                    self._hashes[id(buf)] = (buf, [None] * labels.shape[0])
            return buf
        hashes = list(hashes)
        for t in range(labels.shape[0]):
            if hashes[t] is None or not _equal(buf[t], labels[t]):
                np.copyto(buf[t], labels[t])
                hashes[t] = None
        with self._cond:
            self._hashes[id(buf)] = (buf, hashes)
        return buf

    def known_hashes(self, buffer: np.ndarray) -> list:
        """The hashes of the time points of ``buffer`` (a movie's snapshot) known from an
        earlier write (:func:`napari_sam.session.labels_hash` of each; None: not known)."""
        with self._cond:
            known = self._hashes.get(id(buffer))
        if known is None or known[0] is not buffer:
            return [None] * (buffer.shape[0] if buffer.ndim == 4 else 1)
        return list(known[1])

    def remember(self, buffer: np.ndarray, hashes: list) -> None:
        """Keep the hashes of the time points of the snapshot ``buffer`` (its content as it
        is now), for the next :meth:`snapshot` into it; of any other array (not a movie's
        snapshot: labels written on the calling thread), nothing is kept."""
        with self._cond:
            known = self._hashes.get(id(buffer))
            if known is not None and known[0] is buffer:
                self._hashes[id(buffer)] = (buffer, list(hashes))

    def submit(self, write: Callable[[], None], buffer: np.ndarray | None = None) -> None:
        """Run ``write()`` on the worker thread after the write under way, instead of one
        waiting. ``buffer``: the snapshot it writes (:meth:`snapshot`), reused once written.
        ``write`` reports its own errors (through :attr:`post`); one it lets out is dropped
        so the worker goes on."""
        with self._cond:
            if self._waiting is not None and self._waiting[1] is not buffer:
                self._forget(self._waiting[1])  # (dropped: its hashes with it)
            self._waiting = (write, buffer)
            if self._thread is None:
                self._busy = True
                self._thread = threading.Thread(target=self._run, name="napari-sam autosave",
                                                daemon=False)
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no write is under way or waiting; False when ``timeout`` (seconds)
        ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy and self._waiting is None,
                                       timeout)

    def _run(self) -> None:
        try:
            self._write_all()
        finally:  # also after a BaseException out of a write: wait() must not hang on it
            with self._cond:
                if self._thread is threading.current_thread():
                    self._busy, self._thread, self._waiting = False, None, None
                    self._hashes = {k: v for k, v in self._hashes.items()
                                    if v[0] is self._spare}
                self._cond.notify_all()

    def _write_all(self) -> None:
        while True:
            with self._cond:
                if self._waiting is None:
                    self._busy, self._thread = False, None
                    self._cond.notify_all()
                    return
                write, buf = self._waiting
                self._waiting = None
            try:
                write()
            except Exception:  # noqa: BLE001 - the write says its errors; the worker goes on
                pass
            del write
            keep = buf is not None and _room_for(buf.nbytes)  # (another copy would fit)
            with self._cond:
                if keep:
                    self._spare = buf
                else:
                    self._forget(buf)
            del buf


def _room_for(nbytes: int) -> bool:
    """Whether ``nbytes`` more fit in the memory available, :data:`COPY_MARGIN` to spare
    (unknown: yes)."""
    room = available_memory()
    return room is None or room >= nbytes + COPY_MARGIN


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two (Z, Y, X) arrays of one dtype hold the same values, compared 8 MiB at a
    time (no temporary of their size; contiguous ones as 8-byte words: about as fast as a
    copy, 2.7 ms for 40 MiB), stopping at the first difference."""
    if not (a.flags.c_contiguous and b.flags.c_contiguous):
        return all(np.array_equal(a[z], b[z]) for z in range(a.shape[0]))
    a, b = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)
    if a.size % 8 == 0:
        a, b = a.view(np.uint64), b.view(np.uint64)
    step = 2**23 // a.itemsize
    return all(np.array_equal(a[i:i + step], b[i:i + step]) for i in range(0, a.size, step))


def _fits(buf: np.ndarray | None, labels: np.ndarray) -> bool:
    return buf is not None and buf.shape == labels.shape and buf.dtype == labels.dtype
