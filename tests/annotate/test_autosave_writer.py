"""The autosave writer: writes run one at a time on its worker, a newer write replaces the one
waiting (reusing its buffer), waiting returns once all are written, and a write that raises
does not stop the worker."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam.annotate.autosave_writer import BACKGROUND_BYTES, AutosaveWriter


def test_a_newer_write_replaces_the_one_waiting():
    w = AutosaveWriter(post=lambda fn: fn())
    gate, started, done = threading.Event(), threading.Event(), []

    def first():
        started.set()
        gate.wait(30)
        done.append(("first", threading.get_ident()))

    w.submit(first)
    assert started.wait(30)
    labels = np.arange(12, dtype=np.uint32).reshape(1, 3, 4)
    snaps = []
    for k in range(3):  # three autosaves while the first is written
        snap = w.snapshot(labels + k)
        snaps.append(snap)
        w.submit(lambda k=k, snap=snap: done.append((k, int(snap[0, 0, 0]))), snap)
    assert snaps[1] is snaps[0] and snaps[2] is snaps[0]  # the waiting one's buffer, reused
    assert not w.idle
    gate.set()
    assert w.wait(30) and w.idle
    assert [d[0] for d in done] == ["first", 2] and done[1] == (2, 2)  # only the newest
    assert done[0][1] != threading.get_ident()
    assert w.snapshot(labels) is snaps[0]  # the written buffer is kept warm for the next


def test_a_write_that_raises_does_not_stop_the_worker():
    w = AutosaveWriter(post=lambda fn: fn())
    done = []

    def bad():
        raise ValueError("boom")

    w.submit(bad)
    assert w.wait(30)
    w.submit(lambda: done.append(1))
    assert w.wait(30) and done == [1]


def test_without_post_nothing_goes_to_the_worker():
    big = np.zeros(BACKGROUND_BYTES // 4, np.uint32)
    assert not AutosaveWriter().in_background(big)
    assert AutosaveWriter(post=print).in_background(big)
    assert not AutosaveWriter(post=print).in_background(big[:-1])
    assert not AutosaveWriter(post=print).in_background(None)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_write_that_ends_its_thread_leaves_no_one_waiting_forever():
    """A BaseException out of a write (SystemExit in it, say) ends the worker: waiting
    returns and the next write runs on a new worker (the writer stayed 'busy' for good, so
    save, load and quit waited forever; reviewer of session 36)."""
    w = AutosaveWriter(post=lambda fn: fn())
    done = []

    def fatal():
        raise SystemExit("gone")

    w.submit(fatal)
    assert w.wait(10) and w.idle
    w.submit(lambda: done.append("next"))
    assert w.wait(10) and done == ["next"]
