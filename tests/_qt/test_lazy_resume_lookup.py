"""Picking a lazy image without a file (a script's dask or zarr array) in the dock, once any
image without a file had been autosaved, read 16 of its slices on the UI thread to hash its
pixels and find its autosaved session: seconds of a frozen napari for a remote zarr. The
hash is now read in a worker thread; the session is still found, offered and resumed. The
same for a movie of volumes, whose hash reads 16 slices sampled across its time points."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from sam_qt_helpers import (
    blob_movie,
    blob_stack,
    canvas_click,
    commit_on,
    open_from_menu,
    use_predictor,
)


class _RecordedReads:
    """A (Z, Y, X) or (T, Z, Y, X) array whose every read is recorded with the thread that
    made it."""

    def __init__(self, pixels: np.ndarray):
        self._pixels = pixels
        self.shape, self.dtype, self.ndim = pixels.shape, pixels.dtype, pixels.ndim
        self.threads: list[int] = []

    def __getitem__(self, key):
        self.threads.append(threading.get_ident())
        return self._pixels[key]


@pytest.mark.parametrize("kind", ["volume", "movie"])
def test_a_lazy_image_is_hashed_off_the_ui_thread_and_its_session_resumed(
        make_widget, make_napari_viewer, tiny_predictor, qtbot, monkeypatch, kind):
    import dask
    import dask.array as da

    monkeypatch.setitem(dask.config.config, "scheduler", "synchronous")  # reads: the caller's
    pixels = blob_stack() if kind == "volume" else blob_movie(5)
    chunks = (1,) * (pixels.ndim - 2) + (64, 64)
    viewer, widget = make_widget(da.from_array(pixels, chunks=chunks), name="cells")
    use_predictor(widget, tiny_predictor)
    commit_on(viewer, widget, 1)
    committed = np.asarray(widget.controller.target_layer.data).copy()
    assert sorted(np.unique(committed).tolist()) == [0, 1]
    viewer.close()  # (its claim on the autosave is let go)

    reads = _RecordedReads(pixels)
    other = make_napari_viewer()
    other.add_image(da.from_array(reads, chunks=chunks), name="cells")
    ui, shown = threading.get_ident(), len(reads.threads)  # (napari drew a slice)
    _dock, w2 = open_from_menu(other)  # picks 'cells'
    w2.preload = False
    assert reads.threads[shown:].count(ui) == 0
    qtbot.waitUntil(lambda: w2._resume_row.isVisibleTo(w2), timeout=30_000)
    assert "1 commit" in w2._resume_label.text()
    assert reads.threads[shown:].count(ui) == 0  # (nor once hashed: the hash remembered)
    off_ui = len([t for t in reads.threads[shown:] if t != ui])
    assert off_ui == (6 if kind == "volume" else 16)  # every slice once; a movie's 16 of its 30
    use_predictor(w2, tiny_predictor)
    sess = w2._on_resume()
    assert len(sess.operations) == 1
    assert np.array_equal(np.asarray(w2.controller.target_layer.data), committed)


class _FailingReads(_RecordedReads):
    """Reads off the UI thread wait for ``gate``, then fail as a remote store gone away."""

    def __init__(self, pixels: np.ndarray, ui: int):
        super().__init__(pixels)
        self.ui, self.gate = ui, threading.Event()

    def __getitem__(self, key):
        if threading.get_ident() != self.ui:
            assert self.gate.wait(60)
            raise OSError("the remote store did not answer")
        return super().__getitem__(key)


def test_a_failed_look_up_names_the_image_it_read_after_another_was_picked(
        make_napari_viewer, qtbot, notifications, monkeypatch):
    """The warning of a look-up whose read failed named the image picked by then (another
    one: 'Could not read 'plain' ...' for a failure of 'cells'); nothing is said once the
    dock is closed."""
    import dask
    import dask.array as da

    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    monkeypatch.setitem(dask.config.config, "scheduler", "synchronous")  # reads: the caller's

    memory_sessions_folder().mkdir(parents=True, exist_ok=True)  # (an autosave was made)
    viewer = make_napari_viewer()
    viewer.add_image(blob_stack(), name="plain")
    reads = _FailingReads(blob_stack(), threading.get_ident())
    viewer.add_image(da.from_array(reads, chunks=(1, 64, 64)), name="cells")
    _dock, widget = open_from_menu(viewer)  # picks 'cells': its look-up reads (held)
    assert widget._image.currentData() == "cells"
    widget._image.setCurrentIndex(widget._image.findData("plain"))
    assert widget.controller.image_name() == "plain"
    reads.gate.set()
    qtbot.waitUntil(lambda: any("Could not read" in m for _, m in notifications),
                    timeout=30_000)
    (said,) = [m for _, m in notifications if "Could not read" in m]
    assert said.startswith("Could not read 'cells' to look for its autosaved session (the "
                           "remote store did not answer): pick the image again to retry."), said

    reads = _FailingReads(blob_stack(), threading.get_ident())
    viewer.add_image(da.from_array(reads, chunks=(1, 64, 64)), name="more")
    widget._image.setCurrentIndex(widget._image.findData("more"))
    widget.close()
    reads.gate.set()
    lookup = widget.controller._pixel_lookup  # (stopped by the close: its failure dropped)
    qtbot.waitUntil(lambda: not lookup.running, timeout=30_000)
    assert lookup.cancelled and lookup.error is None, lookup.error
    assert not [m for _, m in notifications if "Could not read 'more'" in m]


class _HeldHash(_RecordedReads):
    """:class:`_RecordedReads` whose reads for a pixel hash off the UI thread (``ui``) wait
    for ``gate``: a remote zarr still being hashed."""

    def __init__(self, pixels: np.ndarray, ui: int):
        super().__init__(pixels)
        self.ui, self.gate, self.ui_hashed = ui, threading.Event(), 0

    def __getitem__(self, key):
        frame = sys._getframe()
        while frame is not None and not frame.f_code.co_name.startswith("image_hash"):
            frame = frame.f_back
        if frame is not None and threading.get_ident() == self.ui:
            self.ui_hashed += 1
        elif frame is not None:
            assert self.gate.wait(60)
        return super().__getitem__(key)


def _commit_with_threaded_jobs(make_widget, tiny_predictor, reads):
    """A dock on the lazy image 'cells' read through ``reads`` ((Z, 64, 64), one chunk a
    slice): a click on slice 1 previewed at once, then committed with the dock's threaded
    jobs; returns the viewer, the widget and how many reads were made before the commit."""
    import dask.array as da

    viewer, widget = make_widget(da.from_array(reads, chunks=(1, 64, 64)), name="cells")
    c = widget.controller
    use_predictor(widget, tiny_predictor)
    viewer.dims.set_point(0, 1)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)  # (the preview decoded at once: sync)
    c.sync = False  # the dock's threaded jobs
    shown = len(reads.threads)
    assert widget._on_commit() is not None, c.status
    return viewer, widget, shown


@pytest.mark.parametrize(("looked_up", "closed"), [(False, False), (True, False), (True, True)])
def test_a_commit_on_a_lazy_image_being_hashed_reads_nothing_on_the_ui_thread(
        make_widget, make_napari_viewer, tiny_predictor, qtbot, monkeypatch, looked_up, closed):
    """A commit made while the picked lazy image was still being hashed (or its first
    commit, no autosave of an image without a file yet: nothing looked up) hashed it again
    on the UI thread for its autosave. Its autosave is now written once a worker hashed it
    (after the look-up's read), and resumes exactly; ``closed``: the dock closed first
    writes it (hashing there: nothing is lost)."""
    import dask
    import dask.array as da

    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    monkeypatch.setitem(dask.config.config, "scheduler", "synchronous")  # reads: the caller's
    if looked_up:  # an image without a file was autosaved: picking one looks for its session
        viewer0, w0 = make_widget(blob_stack(seed=1), name="other")
        use_predictor(w0, tiny_predictor)
        commit_on(viewer0, w0, 1)
        viewer0.close()

    def autosaves():
        return sorted(memory_sessions_folder().glob("*/image.sam-session.json"))

    before, ui = autosaves(), threading.get_ident()
    pixels = blob_stack()
    reads = _HeldHash(pixels, ui)
    viewer, widget, shown = _commit_with_threaded_jobs(make_widget, tiny_predictor, reads)
    c = widget.controller
    assert reads.threads[shown:].count(ui) == 0 and autosaves() == before  # (waits)
    committed = np.asarray(c.target_layer.data).copy()
    assert sorted(np.unique(committed).tolist()) == [0, 1]
    if closed:  # the dock closed: its autosave is written then (the pixels read here)
        widget.close()
        assert len(autosaves()) == len(before) + 1 and reads.ui_hashed > 0
    reads.gate.set()
    qtbot.waitUntil(lambda: len(autosaves()) == len(before) + 1, timeout=30_000)
    job = c._hash_job or c._pixel_lookup  # (after a look-up: its hash reused, no job)
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    if not closed:
        assert reads.threads[shown:].count(ui) == 0
        assert "autosaved in" in c.status and "has no file" in c.status
        assert reads.ui_hashed == 0  # (nor when it was picked)
    viewer.close()

    other = make_napari_viewer()
    other.add_image(da.from_array(pixels, chunks=(1, 64, 64)), name="cells")
    _dock, w2 = open_from_menu(other)
    w2.preload = False
    qtbot.waitUntil(lambda: w2._resume_row.isVisibleTo(w2), timeout=30_000)
    use_predictor(w2, tiny_predictor)
    sess = w2._on_resume()
    assert len(sess.operations) == 1
    assert np.array_equal(np.asarray(w2.controller.target_layer.data), committed)


def test_a_hash_for_the_autosave_failing_after_the_dock_closed_says_nothing(
        make_widget, tiny_predictor, qtbot, notifications, monkeypatch):
    """A commit on a lazy image waits for its pixels' hash to be autosaved; the dock closed
    meanwhile writes that autosave (hashing on the UI thread). The worker's read failing
    afterwards warned "Could not read 'cells' to autosave its session (...): the next commit
    tries again", about a closed dock whose autosave was written."""
    import dask

    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    monkeypatch.setitem(dask.config.config, "scheduler", "synchronous")  # reads: the caller's
    reads = _FailingReads(blob_stack(), threading.get_ident())
    _viewer, widget, _shown = _commit_with_threaded_jobs(make_widget, tiny_predictor, reads)
    c = widget.controller
    job = c._hash_job
    assert job is not None and job.running  # its read waits for the gate
    widget.close()  # writes the autosave, the pixels read here
    assert len(list(memory_sessions_folder().glob("*/image.sam-session.json"))) == 1
    reads.gate.set()
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    qtbot.wait(200)
    assert not [m for _, m in notifications if "Could not read" in m], notifications
