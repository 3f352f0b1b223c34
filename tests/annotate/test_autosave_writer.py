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


def test_labels_whose_copy_does_not_fit_in_memory_are_written_in_place(memory_room):
    """Under a memory limit the snapshot (a second copy of the labels) and the buffer kept
    warm (a third) got napari killed at the first commit on a large stack; where a copy
    does not fit, the autosave is written from the labels on the calling thread instead,
    and a written buffer is kept only while another of its size still fits."""
    from napari_sam.annotate.autosave_writer import COPY_MARGIN

    big = np.zeros(BACKGROUND_BYTES // 4, np.uint32)
    w = AutosaveWriter(post=lambda fn: fn())
    memory_room(big.nbytes + COPY_MARGIN - 1)
    assert not w.in_background(big)  # no room for the copy: written in place
    memory_room(big.nbytes + COPY_MARGIN)
    assert w.in_background(big)
    snap = w.snapshot(big)
    memory_room(big.nbytes + COPY_MARGIN - 1)  # less room once it is written
    w.submit(lambda: None, snap)
    assert w.wait(30)
    assert w.snapshot(big) is not snap  # the written buffer was let go, not kept warm
    memory_room(2 * big.nbytes + COPY_MARGIN)
    kept = w.snapshot(big)
    w.submit(lambda: None, kept)
    assert w.wait(30)
    memory_room(0)  # a kept buffer of the right size costs nothing more: still background
    assert w.in_background(big) and w.snapshot(big) is kept


def test_a_session_short_of_memory_autosaves_its_commit_in_place(session, tmp_path,
                                                                 monkeypatch, memory_room):
    from napari_sam import session as S
    from napari_sam.annotate import autosave_writer

    s = session
    s.path = str(tmp_path / "blobs.tif")
    monkeypatch.setattr(autosave_writer, "BACKGROUND_BYTES", 0)  # every autosave: large
    s.autosave_writer = AutosaveWriter(post=lambda fn: None)  # (news: not needed here)
    written = []
    write = S.write_session
    monkeypatch.setattr(S, "write_session", lambda sess, *a, **k: written.append(
        np.shares_memory(sess.labels, s.labels)) or write(sess, *a, **k))
    memory_room(autosave_writer.COPY_MARGIN)  # no room for a copy of the labels
    s.go_to_slice(3)
    s.add_point(3, 20, 20)
    s.update_preview()
    s.commit()
    assert written == [True]  # written from the labels themselves, no copy made
    saved = S.read_session(S.session_file_for(s.path))  # at once: written before commit returned
    assert len(saved.operations) == 1 and saved.labels.max() == 1


def test_a_movie_snapshot_keeps_the_hashes_of_the_time_points_it_did_not_change():
    """Only the time points a commit changed are hashed again (each was hashed per autosave);
    hashes are kept for the writer's own snapshots only (not for labels written inline)."""
    w = AutosaveWriter(post=lambda fn: None)
    movie = np.zeros((4, 2, 8, 8), np.uint32)
    snap = w.snapshot(movie)
    assert w.known_hashes(snap) == [None] * 4
    w.remember(snap, ["a", "b", "c", "d"])
    w.submit(lambda: None, snap)
    assert w.wait(30)
    movie[2, 1, 3, 3] = 5
    again = w.snapshot(movie)
    assert again is snap and np.array_equal(again, movie)
    assert w.known_hashes(again) == ["a", "b", None, "d"]
    other = movie.copy()
    w.remember(other, ["x"] * 4)  # not a snapshot: nothing kept (nor the array held)
    assert w.known_hashes(other) == [None] * 4
