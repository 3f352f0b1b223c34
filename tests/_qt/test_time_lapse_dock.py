"""A (T, Z, Y, X) movie of volumes (a light-sheet movie) in the dock: SAM segments the volume
at the time point napari's time slider shows (the dock refused such a layer before: "the
image has 4 spatial dimensions ... take one time point as its own layer")."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import (
    blob_movie,
    canvas_click,
    canvas_drag,
    click_commit,
    hold_propagation,
    press_key,
    use_predictor,
)

T = 5  # (a time axis longer than MAX_CHANNELS: it cannot be read as channels)


def _movie() -> np.ndarray:
    """(T, 6, 64, 64) float32: each time point its own blob stack (another noise seed)."""
    return blob_movie(T)


def _volume_alone(make_widget, predictor, volume: np.ndarray, z: int, row: float,
                  col: float) -> np.ndarray:
    """The labels a click at (z, row, col) commits on a 3D layer of ``volume`` alone."""
    viewer, widget = make_widget(volume, name="alone", sync=False)
    use_predictor(widget, predictor)
    widget.wait()
    viewer.dims.set_point(0, z)
    click_commit(viewer, widget, row, col)
    return np.array(widget.controller.target_layer.data)


def test_the_dock_segments_the_time_point_the_slider_shows(make_widget, tiny_predictor,
                                                         tmp_path):
    movie = _movie()
    viewer, widget = make_widget(movie, name="movie", sync=False)
    use_predictor(widget, tiny_predictor)
    widget.wait()
    c = widget.controller
    # napari opens a layer at its middle step: the dock segments the time point shown
    assert c.source is not None and c.source.time_point == T // 2, c.status
    assert ("'movie' is a movie of 5 time points: SAM segments the volume at the time point "
            "the time slider shows (2 now).") in c.status, c.status
    viewer.dims.set_current_step(0, 0)
    widget.wait()
    assert c.source.time_point == 0, c.status
    assert c.points_layer.ndim == 4 and c.preview_layer.data.shape == movie.shape
    viewer.dims.set_point(1, 3)
    click_commit(viewer, widget, 20, 20)
    labels = c.target_layer.data
    assert labels.shape == movie.shape
    at_0 = labels[0].copy()
    emb_0 = c.emb

    # a prompt left at t=0 stays there (not decoded at t=1), and comes back with the slider
    canvas_click(viewer, 44, 44)
    widget.wait()
    viewer.dims.set_current_step(0, 1)
    widget.wait()
    assert c.source.time_point == 1 and "SAM now segments time point 1 of 5" in c.status, (
        c.status)
    assert len(c.points_layer.data) == 1 and not c.previews
    assert c.emb is not emb_0  # t=1 is embedded anew, not read from t=0's embedding
    click_commit(viewer, widget, 20, 20)
    np.testing.assert_array_equal(labels[0], at_0)  # t=0 kept by the commit at t=1
    alone = [_volume_alone(make_widget, tiny_predictor, movie[t], 3, 20, 20) for t in (0, 1)]
    np.testing.assert_array_equal(at_0, alone[0])
    np.testing.assert_array_equal(labels[1], alone[1])  # (each time point's ids from 1)
    assert alone[1].any() and not labels[2:].any()
    assert c.embeddings.get(c._cache_key()).stack[3].tolist() == movie[1, 3].tolist()

    # back at t=0: its prompt is back; an undo takes back the last commit, t=1's
    viewer.dims.set_current_step(0, 0)
    widget.wait()
    assert c.source.time_point == 0 and len(c.prompt_arrays()[0]) == 1
    assert [p.z for p in c.previews] == [3], c.status  # previewed again (live preview)
    assert c.status.startswith("SAM now segments time point 0 of 5."), c.status
    press_key(viewer, "Shift-U")
    widget.wait()
    assert c.status.startswith("Undid commit of label 1 in 'segmentation' at time point 1 "
                               "(time point 0 is shown: move the time slider to 1 to see "
                               "it)."), c.status
    assert not labels[1].any()
    np.testing.assert_array_equal(labels[0], at_0)
    press_key(viewer, "Shift-U")  # then t=0's
    widget.wait()
    assert not labels.any(), c.status

    # propagation at t=1 writes only labels[1]
    press_key(viewer, "Shift-X")
    viewer.dims.set_current_step(0, 1)
    widget.wait()
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    widget.wait()
    c.propagate()
    widget.wait()
    assert c.volume is not None, c.status
    press_key(viewer, "Shift-C")
    widget.wait()
    assert c.status.startswith("Committed label"), c.status
    assert labels[1].any() and not np.delete(labels, 1, axis=0).any()

    # the movie's session holds every time point, its commits each at its own
    path = c.save_session(tmp_path / "movie.json")
    from napari_sam.session import read_session

    saved = read_session(path)
    assert [(op["kind"], op["time_point"]) for op in saved.operations] == [("volume", 1)]
    assert saved.labels.shape == movie.shape and np.array_equal(saved.labels, labels)


def test_a_propagation_running_when_the_slider_moves_is_stopped(make_widget, tiny_predictor,
                                                                 qtbot, monkeypatch):
    """A propagation at t=0 still running when the time slider moves to t=1 is stopped (its
    result is of the volume left) and says why; nothing is written at either time point."""
    viewer, widget = make_widget(_movie(), name="movie", sync=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_current_step(0, 0)
    viewer.dims.set_point(1, 2)
    widget.wait()
    go = hold_propagation(monkeypatch)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    widget.wait()
    press_key(viewer, "Shift-D")
    qtbot.waitUntil(lambda: c.job is not None and c.job.phase == "propagating", timeout=60_000)
    job = c.job
    viewer.dims.set_current_step(0, 1)
    assert job.cancelled
    go.set()
    widget.wait()
    assert c.volume is None and c.source.time_point == 1
    assert (f"Stopped: {job.description} at time point 0, because the time point shown "
            "changed while it ran" in c.status), c.status
    assert c.target_layer is None or not c.target_layer.data.any()


def test_a_box_stays_at_its_time_point(make_widget, tiny_predictor, qtbot):
    """A box dragged at t=1 prompts t=1 only: at t=2 nothing is previewed (the box stays in
    'SAM boxes'), and back at t=1 it is previewed again."""
    viewer, widget = make_widget(_movie(), name="movie", sync=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_point(1, 3)
    widget.wait()
    viewer.layers.selection.active = c.boxes_layer
    qtbot.wait(10)
    canvas_drag(viewer, qtbot, (10, 10), (30, 30))
    widget.wait()
    assert [p.z for p in c.previews] == [3], c.status
    viewer.dims.set_current_step(0, 2)
    widget.wait()
    assert not c.previews and not len(c.prompt_arrays()[2]) and len(c.boxes_layer.data) == 1
    viewer.dims.set_current_step(0, 1)
    widget.wait()
    assert [p.z for p in c.previews] == [3] and len(c.prompt_arrays()[2]) == 1, c.status
