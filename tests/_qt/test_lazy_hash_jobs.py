"""The dock's background reads of a lazy image's pixel hash (a script's dask or zarr array
without a file): the look-up of its autosaved session when it is picked, and the hash its
commits' autosave waits for.

- The dock closing let them read every sampled slice to the end, for nothing (a remote zarr:
  minutes of reads, and napari's exit waited for them): they now stop at the next slice.
- The autosave's hash polled the look-up job every 20 ms from a second worker thread (one of
  the two a 2-core machine's pool has): it now follows the look-up's end, reusing its hash.
- Ticking *Autosave* again hashed such an image on the UI thread: now in a worker.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sam_qt_helpers import blob_movie, blob_stack, canvas_click, open_from_menu, use_predictor
from test_lazy_resume_lookup import _HeldHash


@pytest.fixture
def lazy_cells(make_napari_viewer, monkeypatch):
    """``lazy_cells(looked_up, pixels=None) -> (viewer, widget, reads, ui)``: the dock opened
    on 'cells', a dask array of a (6, 64, 64) stack (or ``pixels``, one chunk a slice) whose
    hash reads off the UI thread wait for ``reads.gate``; ``looked_up``: an image without a
    file was autosaved before, so picking it starts the look-up of its session (held)."""
    import dask
    import dask.array as da

    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    monkeypatch.setitem(dask.config.config, "scheduler", "synchronous")  # reads: the caller's
    made = []

    def make(looked_up: bool, pixels=None):
        if looked_up:
            memory_sessions_folder().mkdir(parents=True, exist_ok=True)
        ui = threading.get_ident()
        reads = _HeldHash(blob_stack() if pixels is None else pixels, ui)
        viewer = make_napari_viewer()
        chunks = (1,) * (reads.ndim - 2) + (64, 64)
        viewer.add_image(da.from_array(reads, chunks=chunks), name="cells")
        _dock, widget = open_from_menu(viewer)
        widget.preload = False
        made.append(reads)
        return viewer, widget, reads, ui

    yield make
    for reads in made:  # (a failed test's worker is not left waiting)
        reads.gate.set()


def _autosaves():
    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    return sorted(memory_sessions_folder().glob("*/image.sam-session.json"))


def _commit(viewer, widget, predictor, axis: int = 0) -> np.ndarray:
    """A click on slice 1 (decoded at once; ``axis``: the viewer's axis of the slices),
    committed with the dock's threaded jobs; the committed labels."""
    c = widget.controller
    use_predictor(widget, predictor)
    c.sync = True
    viewer.dims.set_point(axis, 1)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    c.sync = False
    assert widget._on_commit() is not None, c.status
    labels = np.asarray(c.target_layer.data).copy()
    assert sorted(np.unique(labels).tolist()) == [0, 1]
    return labels


def _off_ui(reads, ui) -> int:
    return len([t for t in reads.threads if t != ui])


def _stopped_at_next_slice(qtbot, reads, ui, held) -> None:
    """The held reads let go: the job ``held`` ends, stopped (not failed) after reading at
    most the slice under way off the UI thread (all 6 when it read on)."""
    reads.gate.set()
    qtbot.waitUntil(lambda: not held.running, timeout=10_000)
    assert _off_ui(reads, ui) <= 1
    assert held.cancelled and not held.succeeded and held.error is None


@pytest.mark.parametrize("job", ["lookup", "autosave"])
def test_closing_the_dock_stops_a_hash_read_at_the_next_slice(
        lazy_cells, tiny_predictor, qtbot, notifications, job):
    """Closed while its worker read the first slice, the dock's look-up (or autosave hash)
    read the other 5 after it: now none, and nothing is offered, said or written after."""
    viewer, widget, reads, ui = lazy_cells(looked_up=job == "lookup")
    c = widget.controller
    if job == "autosave":  # a first commit: its autosave waits for a worker's hash
        _commit(viewer, widget, tiny_predictor)
        assert _autosaves() == []
    held = c._pixel_lookup if job == "lookup" else c._hash_job
    assert held is not None and held.running and held.worker is not None
    widget.close()  # (the autosave: written here, hashing on the UI thread)
    written = [(p, p.stat().st_mtime_ns) for p in _autosaves()]
    assert len(written) == (job == "autosave")
    _stopped_at_next_slice(qtbot, reads, ui, held)  # (the slice under way when it closed)
    qtbot.wait(100)
    assert [(p, p.stat().st_mtime_ns) for p in _autosaves()] == written
    assert not notifications, notifications
    assert not widget._resume_row.isVisibleTo(widget)


def test_a_commit_during_the_look_up_is_autosaved_at_its_end_from_its_hash(
        lazy_cells, tiny_predictor, qtbot):
    """A commit made while the look-up read the pixels started a second worker that polled
    the look-up every 20 ms, then took its hash: it held one of the pool's threads (2 on a
    2-core machine) for the whole look-up. The autosave now follows the look-up's end."""
    from qtpy.QtCore import QThreadPool

    viewer, widget, reads, ui = lazy_cells(looked_up=True)
    c = widget.controller
    lookup = c._pixel_lookup
    assert lookup is not None and lookup.running
    pool = QThreadPool.globalInstance()
    busy = pool.activeThreadCount()
    committed = _commit(viewer, widget, tiny_predictor)
    qtbot.wait(100)
    assert pool.activeThreadCount() == busy  # no second worker waits for the look-up
    assert _autosaves() == []
    reads.gate.set()
    qtbot.waitUntil(lambda: not lookup.running, timeout=30_000)
    (saved,) = _autosaves()  # written as the look-up ended
    assert _off_ui(reads, ui) == 6 and reads.ui_hashed == 0  # each slice read once, there
    assert "autosaved in" in c.status, c.status
    from napari_sam import session as S

    assert np.array_equal(S.read_session(saved).labels, committed)


def test_ticking_autosave_again_hashes_a_lazy_image_off_the_ui_thread(
        lazy_cells, tiny_predictor, qtbot):
    """Autosave unticked, a commit, ticked again: the session was autosaved at once, its
    image hashed on the UI thread (seconds of a frozen napari for a remote zarr). Now a
    worker hashes it and the autosave follows."""
    viewer, widget, reads, ui = lazy_cells(looked_up=False)
    c = widget.controller
    widget._autosave.setChecked(False)
    committed = _commit(viewer, widget, tiny_predictor)
    assert c._hash_job is None or not c._hash_job.running
    widget._autosave.setChecked(True)
    assert reads.ui_hashed == 0
    assert c.status == ("Autosave is on: the session (1 commit) is autosaved once the "
                        "image's pixels are read."), c.status
    reads.gate.set()
    qtbot.waitUntil(lambda: len(_autosaves()) == 1, timeout=30_000)
    assert reads.ui_hashed == 0 and _off_ui(reads, ui) == 6
    from napari_sam import session as S

    (saved,) = _autosaves()
    assert np.array_equal(S.read_session(saved).labels, committed)
    assert "autosaved in" in c.status, c.status


def test_a_commit_during_the_look_up_is_autosaved_after_the_time_slider_moved(
        lazy_cells, tiny_predictor, qtbot):
    """A lazy movie: a commit made while the look-up read the pixels, then the time slider
    moved before the look-up ended (the dock's source is then another time point's): the
    commit was never autosaved (until a next commit, or the dock closing); it now is."""
    from napari_sam import session as S

    viewer, widget, reads, ui = lazy_cells(looked_up=True, pixels=blob_movie(5))
    c = widget.controller
    lookup = c._pixel_lookup
    assert lookup is not None and lookup.running and c.source.time_point == 2
    committed = _commit(viewer, widget, tiny_predictor, axis=1)  # (time point 2, slice 1)
    assert _autosaves() == []
    viewer.dims.set_point(0, 0)  # time point 0
    assert c.source.time_point == 0
    reads.gate.set()
    qtbot.waitUntil(lambda: not lookup.running, timeout=30_000)
    qtbot.waitUntil(lambda: len(_autosaves()) == 1, timeout=30_000)
    (saved,) = _autosaves()
    assert np.array_equal(S.read_session(saved).labels, committed)


def test_picking_another_image_stops_the_autosave_hash_of_the_image_left(
        lazy_cells, tiny_predictor, qtbot, notifications):
    """A commit's autosave waiting for a worker's hash is written (hashing on the UI thread)
    when another image is picked: the worker read on to the last sampled slice for nothing;
    it now stops at the next one."""
    viewer, widget, reads, ui = lazy_cells(looked_up=False)
    c = widget.controller
    committed = _commit(viewer, widget, tiny_predictor)
    held = c._hash_job
    assert held is not None and held.running and _autosaves() == []
    viewer.add_image(blob_stack(seed=1), name="other")
    widget._image.setCurrentIndex(widget._image.findData("other"))
    assert c.image_layer.name == "other"
    (saved,) = _autosaves()  # written as 'cells' was left
    _stopped_at_next_slice(qtbot, reads, ui, held)
    assert not notifications, notifications
    from napari_sam import session as S

    assert np.array_equal(S.read_session(saved).labels, committed)


@pytest.mark.parametrize("how", ["remove", "clear"])
def test_removing_the_image_writes_the_autosave_waiting_for_its_hash(
        lazy_cells, tiny_predictor, qtbot, notifications, how):
    """A commit's autosave waiting for a worker's hash of a lazy image, and the image layer
    removed before that read ended: the commit was never autosaved (the dock let go of the
    image, and the worker's end found none). It is now written as the image goes (hashing on
    the UI thread, as when another image is picked), and the worker stops at its next slice;
    also by ``layers.clear()``, which removes the labels layer first."""
    from napari_sam import session as S

    viewer, widget, reads, ui = lazy_cells(looked_up=False)
    c = widget.controller
    committed = _commit(viewer, widget, tiny_predictor)
    held = c._hash_job
    assert held is not None and held.running and _autosaves() == []
    if how == "clear":
        viewer.layers.clear()
    else:
        viewer.layers.remove("cells")
    assert c.image_layer is None and c.source is None
    (saved,) = _autosaves()  # written as 'cells' went
    _stopped_at_next_slice(qtbot, reads, ui, held)
    qtbot.wait(100)
    assert _autosaves() == [saved] and not notifications, notifications
    assert np.array_equal(S.read_session(saved).labels, committed)
