"""A lazy movie's content hash (a script's dask array of (T, Z, Y, X), no file) is read once:
its autosave is named by a hash of 16 slices sampled across all its time points, and the
dock made a new object to hash (``hashed_stack``, a :class:`~napari_sam.annotate.
movie_sessions.MovieFrames`) for each time point's source, so every commit after the time
slider moved read the 16 slices again (in a worker: minutes for a remote zarr, the commit's
autosave waiting for them). The hash is the movie's, not the time point's: it is now kept
while the source reads the same array, and read again for another array (the layer's
``data`` replaced, another movie picked)."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import blob_movie, canvas_click, open_from_menu, use_predictor

from napari_sam import session as S

T = 5


@pytest.fixture
def lazy_movie(make_napari_viewer, monkeypatch):
    """``(viewer, widget, hashed)``: the dock (opened from napari's menu) on 'movie', a dask
    array of a (5, 6, 64, 64) movie; ``hashed``: the slices each image hash read, one entry
    per hash (counted at :func:`napari_sam.session.image_hash_steps`, which every hash of
    the dock, in a worker or not, goes through)."""
    import dask
    import dask.array as da

    monkeypatch.setitem(dask.config.config, "scheduler", "synchronous")
    hashed: list[int] = []
    real = S.image_hash_steps

    def counted(stack, remember=False):
        hashed.append(0)
        at = len(hashed) - 1
        steps = real(stack, remember)
        while True:
            try:
                step = next(steps)
            except StopIteration as end:
                return end.value
            hashed[at] += 1
            yield step

    monkeypatch.setattr(S, "image_hash_steps", counted)
    viewer = make_napari_viewer()
    viewer.add_image(da.from_array(blob_movie(T), chunks=(1, 1, 64, 64)), name="movie")
    _dock, widget = open_from_menu(viewer)
    widget.preload = False
    assert widget.controller.source.n_times == T
    return viewer, widget, hashed


def _commit_at(qtbot, viewer, widget, t: int, z: int = 1) -> None:
    """Move the time slider to ``t``, click (20, 20) on slice ``z`` (previewed at once),
    commit with the dock's threaded jobs, and wait for the autosave (its hash read in a
    worker if needed)."""
    c = widget.controller
    c.sync = True  # (the time point's embeddings and the preview at once)
    viewer.dims.set_current_step(0, t)
    assert c.source.time_point == t
    viewer.dims.set_current_step(1, z)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    c.sync = False  # the dock's threaded jobs: a lazy image's hash is read in a worker
    assert widget._on_commit() is not None, c.status
    qtbot.waitUntil(lambda: c._autosave_waits is None and (
        c._hash_job is None or not c._hash_job.running), timeout=30_000)
    assert c.wait_autosave(30)


def _autosaved_labels(widget) -> np.ndarray:
    return S.read_session(widget.controller.autosave_path()).labels


def test_moving_the_time_slider_keeps_the_movies_hash(lazy_movie, tiny_predictor, qtbot):
    """A commit at time point 0 hashes the movie (16 slices); the time slider moved to 1, a
    commit there read the 16 slices again: now nothing, and both are autosaved."""
    viewer, widget, hashed = lazy_movie
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

    viewer, widget, hashed = lazy_movie
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
