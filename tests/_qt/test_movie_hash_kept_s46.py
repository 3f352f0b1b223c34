"""A lazy movie's content hash (a script's dask array of (T, Z, Y, X), no file) is read once:
its autosave is named by a hash of 16 slices sampled across all its time points, and the
dock made a new object to hash (``hashed_stack``, a :class:`~napari_sam.annotate.
movie_sessions.MovieFrames`) for each time point's source, so every commit after the time
slider moved read the 16 slices again (in a worker: minutes for a remote zarr, the commit's
autosave waiting for them). The hash is the movie's, not the time point's: it is now kept
while the source reads the same array, and read again for another array (the layer's
``data`` replaced, another movie picked)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sam_qt_helpers import blob_movie, canvas_click, commit_on, open_from_menu, use_predictor

from napari_sam import session as S

T = 5


@pytest.fixture
def lazy_movie(make_napari_viewer, monkeypatch, request):
    """``(viewer, widget, hashed, gate)``: the dock (opened from napari's menu) on 'movie', a
    dask array of a (5, 6, 64, 64) movie; ``hashed``: the slices each image hash read, one
    entry per hash (counted at :func:`napari_sam.session.image_hash_steps`, which every hash
    of the dock, in a worker or not, goes through); a worker's reads wait for ``gate`` (set:
    a remote zarr's reads are held by clearing it). Parametrized indirectly with True: an
    image without a file was autosaved before, so the dock opens looking up the movie's
    session, its read held (``gate`` cleared)."""
    import dask
    import dask.array as da

    monkeypatch.setitem(dask.config.config, "scheduler", "synchronous")
    hashed: list[int] = []
    real = S.image_hash_steps
    ui, gate = threading.get_ident(), threading.Event()
    gate.set()

    def counted(stack, remember=False):
        hashed.append(0)
        at = len(hashed) - 1
        steps = real(stack, remember)
        while True:
            if threading.get_ident() != ui:
                assert gate.wait(60)
            try:
                step = next(steps)
            except StopIteration as end:
                return end.value
            hashed[at] += 1
            yield step

    monkeypatch.setattr(S, "image_hash_steps", counted)
    if getattr(request, "param", False):
        from napari_sam.annotate.memory_sessions import memory_sessions_folder

        memory_sessions_folder().mkdir(parents=True, exist_ok=True)
        gate.clear()
    viewer = make_napari_viewer()
    viewer.add_image(da.from_array(blob_movie(T), chunks=(1, 1, 64, 64)), name="movie")
    _dock, widget = open_from_menu(viewer)
    widget.preload = False
    assert widget.controller.source.n_times == T
    yield viewer, widget, hashed, gate
    gate.set()  # (a failed test's worker is not left waiting)


def _commit_at(qtbot, viewer, widget, t: int, z: int = 1, wait: bool = True) -> None:
    """Move the time slider to ``t``, click (20, 20) on slice ``z`` (previewed at once),
    commit with the dock's threaded jobs, and (``wait``) wait for the autosave (its hash read
    in a worker if needed)."""
    c = widget.controller
    viewer.dims.set_current_step(0, t)  # (threaded: the dock reads no hash here)
    assert c.source.time_point == t
    widget.wait()
    viewer.dims.set_current_step(1, z)
    widget.wait()
    c.sync = True  # (the preview at once)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    c.sync = False  # the dock's threaded jobs: a lazy image's hash is read in a worker
    assert widget._on_commit() is not None, c.status
    if not wait:
        return
    qtbot.waitUntil(lambda: c._autosave_waits is None and (
        c._hash_job is None or not c._hash_job.running), timeout=30_000)
    assert c.wait_autosave(30)


def _autosaved_labels(widget) -> np.ndarray:
    return S.read_session(widget.controller.autosave_path()).labels


def test_moving_the_time_slider_keeps_the_movies_hash(lazy_movie, tiny_predictor, qtbot):
    """A commit at time point 0 hashes the movie (16 slices); the time slider moved to 1, a
    commit there read the 16 slices again: now nothing, and both are autosaved."""
    viewer, widget, hashed, _gate = lazy_movie
    use_predictor(widget, tiny_predictor)
    _commit_at(qtbot, viewer, widget, 0)
    assert sum(hashed) == 16, hashed  # the movie's hash: read once, for the autosave
    _commit_at(qtbot, viewer, widget, 1)
    assert sum(hashed) == 16, hashed  # not read again
    _commit_at(qtbot, viewer, widget, 0, z=3)  # (back at time point 0)
    assert sum(hashed) == 16, hashed
    labels = _autosaved_labels(widget)
    assert labels.shape == (T, 6, 64, 64) and labels[0].any() and labels[1].any()
    assert not labels[2:].any()


def test_other_pixels_are_hashed_again(lazy_movie, tiny_predictor, qtbot):
    """The hash is kept for the array the movie's source reads, not for the layer: the
    layer's ``data`` replaced by other pixels (the time slider moved: the dock reads them),
    its commit hashes them (the autosave of the old pixels is not theirs); another movie
    picked is hashed too."""
    import dask.array as da

    viewer, widget, hashed, _gate = lazy_movie
    c = widget.controller
    use_predictor(widget, tiny_predictor)
    _commit_at(qtbot, viewer, widget, 0)
    _commit_at(qtbot, viewer, widget, 1)
    assert sum(hashed) == 16, hashed
    first = S.image_hash(c.hashed_stack())

    layer = viewer.layers["movie"]
    layer.data = da.from_array(blob_movie(T)[::-1].copy(), chunks=(1, 1, 64, 64))
    _commit_at(qtbot, viewer, widget, 2)  # (a source of the new data)
    assert sum(hashed) == 32, hashed  # the new pixels read
    second = S.image_hash(c.hashed_stack())
    assert second != first
    _commit_at(qtbot, viewer, widget, 3)
    assert sum(hashed) == 32, hashed  # the new data's hash kept in turn

    viewer.add_image(da.from_array(blob_movie(T)[:, ::-1].copy(), chunks=(1, 1, 64, 64)),
                     name="other")
    widget._image.setCurrentIndex(widget._image.findData("other"))
    assert c.image_layer.name == "other"
    qtbot.waitUntil(lambda: c._pixel_lookup is None or not c._pixel_lookup.running,
                    timeout=30_000)
    assert sum(hashed) == 48, hashed  # another movie: its own hash (its look-up's)
    assert S.image_hash(c.hashed_stack()) not in (first, second)


@pytest.mark.parametrize("lazy_movie", [False, True], indirect=True,
                         ids=["autosave-hash", "look-up"])
def test_a_commit_while_the_movie_is_hashed_waits_for_that_hash(lazy_movie, tiny_predictor,
                                                                 qtbot):
    """A commit at time point 0 whose autosave waits for a worker reading the movie's hash
    (its own, or the look-up's of the movie's session, started at another time point); the
    time slider moved to 1 and a commit there before that read ended: a second worker read
    the same 16 slices again. The autosave now waits for the read under way, and holds both
    commits once it ends."""
    viewer, widget, hashed, gate = lazy_movie
    c = widget.controller
    lookup = c._pixel_lookup
    use_predictor(widget, tiny_predictor)
    gate.clear()  # (a remote zarr: the worker's reads take their time)
    _commit_at(qtbot, viewer, widget, 0, wait=False)
    held = lookup if lookup is not None else c._hash_job
    assert held is not None and held.running
    assert c._hash_job is (None if lookup is not None else held)
    _commit_at(qtbot, viewer, widget, 1, wait=False)
    assert c._hash_job is (None if lookup is not None else held)  # no second read
    assert held.running
    gate.set()
    qtbot.waitUntil(lambda: not held.running and c._autosave_waits is None, timeout=30_000)
    assert c.wait_autosave(30)
    assert sum(hashed) == 16, hashed
    labels = _autosaved_labels(widget)
    assert labels[0].any() and labels[1].any() and not labels[2:].any()


class _HeldReads:
    """A (T, Z, Y, X) array whose reads off the UI thread wait for ``gate`` (a remote zarr)."""

    def __init__(self, pixels: np.ndarray):
        self._pixels, self.ui, self.gate = pixels, threading.get_ident(), threading.Event()
        self.shape, self.dtype, self.ndim = pixels.shape, pixels.dtype, pixels.ndim

    def __getitem__(self, key):
        if threading.get_ident() != self.ui:
            assert self.gate.wait(60)
        return self._pixels[key]


def test_the_time_slider_moved_during_the_look_up_still_offers_the_session(
        make_widget, make_napari_viewer, tiny_predictor, qtbot, monkeypatch):
    """The look-up of a lazy movie's autosaved session reads the movie's hash, whichever time
    point is shown: the time slider moved while it read, its result was dropped (taken for
    another image's), so the autosaved session was never offered, nor resumed."""
    import dask
    import dask.array as da

    monkeypatch.setitem(dask.config.config, "scheduler", "synchronous")
    chunks = (1, 1, 64, 64)
    viewer, widget = make_widget(da.from_array(blob_movie(T), chunks=chunks), name="cells")
    use_predictor(widget, tiny_predictor)
    commit_on(viewer, widget, 1)  # (a commit at time point 1, autosaved)
    committed = np.asarray(widget.controller.target_layer.data).copy()
    assert committed[1].any()
    viewer.close()  # (its claim on the autosave is let go)

    reads = _HeldReads(blob_movie(T))
    other = make_napari_viewer()
    other.add_image(da.from_array(reads, chunks=chunks), name="cells")
    _dock, w2 = open_from_menu(other)  # picks 'cells': its look-up's read held
    w2.preload = False
    c = w2.controller
    lookup = c._pixel_lookup
    assert lookup is not None and lookup.running
    shown = c.source.time_point
    other.dims.set_current_step(0, 0 if shown else 3)  # (the slider moved meanwhile)
    assert c.source.time_point != shown
    reads.gate.set()
    qtbot.waitUntil(lambda: w2._resume_row.isVisibleTo(w2), timeout=30_000)
    assert "1 commit" in w2._resume_label.text()
    use_predictor(w2, tiny_predictor)
    sess = w2._on_resume()
    assert len(sess.operations) == 1
    assert np.array_equal(np.asarray(c.target_layer.data), committed)


@pytest.mark.parametrize("waiting", [False, True], ids=["autosaved", "autosave-waits"])
def test_a_removed_movie_is_not_kept_for_its_hash(lazy_movie, tiny_predictor, qtbot, waiting):
    """The movie's hash is kept with the object it was read from (a :class:`~napari_sam.
    annotate.movie_sessions.MovieFrames`, which reads the movie's array): the movie's layer
    removed, that object kept the whole array alive (a movie in memory: gigabytes) until
    another movie was hashed. Also where the removal comes while a worker reads the hash
    for a commit's autosave."""
    import gc
    import weakref

    viewer, widget, _hashed, gate = lazy_movie
    c = widget.controller
    use_predictor(widget, tiny_predictor)
    if waiting:
        gate.clear()  # (the worker's read held)
    _commit_at(qtbot, viewer, widget, 0, wait=not waiting)
    job = c._hash_job
    data = weakref.ref(viewer.layers["movie"].data)
    viewer.layers.remove("movie")
    assert c.source is None
    gate.set()
    if job is not None:
        qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    qtbot.wait(50)  # (what the job's end posted)
    job = None
    gc.collect()
    assert data() is None
