"""Picking a lazy image without a file (a script's dask or zarr array) in the dock, once any
image without a file had been autosaved, read 16 of its slices on the UI thread to hash its
pixels and find its autosaved session: seconds of a frozen napari for a remote zarr. The
hash is now read in a worker thread; the session is still found, offered and resumed. The
same for a movie of volumes, whose hash reads slices of every time point."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sam_qt_helpers import blob_movie, blob_stack, commit_on, open_from_menu, use_predictor


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
    qtbot.wait(500)
    assert not [m for _, m in notifications if "Could not read 'more'" in m]
