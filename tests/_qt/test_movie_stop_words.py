"""What the dock says on a (T, Z, Y, X) movie when the time slider moves while the time point
left is still being embedded: the stop line names the time point it was for, as the dock's
other lines on a movie do ("time point 1: 6 of 6 slices embedded")."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import blob_stack, held_encoder, held_model_load, use_predictor


def _movie_at_time_point_3(make_widget, predictor=None):
    """A (5, 6, 64, 64) movie in the dock (threaded jobs, no preload yet), time point 3 and
    slice 2 shown; ``predictor`` in use where given. Returns ``(viewer, widget)``."""
    movie = np.stack([blob_stack(seed=t) for t in range(5)])
    viewer, widget = make_widget(movie, name="movie", sync=False, preload=False)
    if predictor is not None:
        use_predictor(widget, predictor)
    viewer.dims.set_current_step(0, 3)
    viewer.dims.set_point(1, 2)
    return viewer, widget


def test_the_preload_stopped_by_the_time_slider_names_its_time_point(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    viewer, widget = _movie_at_time_point_3(make_widget, tiny_predictor)
    c = widget.controller
    gate, entered, _ = held_encoder(monkeypatch, tiny_predictor)
    widget.preload = True
    widget._on_preload()
    qtbot.waitUntil(entered.is_set, timeout=60_000)
    job = c.job
    viewer.dims.set_current_step(0, 1)  # the user scrubs to t=1 while t=3 is embedded
    assert job.cancelled and job.stale
    gate.set()
    widget.wait()
    assert c.source.time_point == 1
    # both lines kept (was: one or the other, by turns), and the stop line names its time
    # point (was: "Stopped: Computing SAM embeddings, because ...", naming none)
    assert c.status.startswith(
        "SAM now segments time point 1 of 5. Stopped: Computing SAM embeddings at time point "
        "3, because the time point shown changed while it ran (its result could not have "
        "been applied; the slices it had embedded are kept). Click on an object in 'movie'"
    ), c.status
    assert widget._emb_state.text() == "time point 1: 1 of 6 slices embedded"


def _scrub_back_to_an_embedded_time_point(make_widget, predictor, qtbot, monkeypatch):
    """Time point 1's slice 2 embedded; then, while time point 3's is embedded, the user
    scrubs back to time point 1. Returns the widget once the stopped job has ended."""
    movie = np.stack([blob_stack(seed=t) for t in range(5)])
    viewer, widget = make_widget(movie, name="movie", sync=False, preload=False)
    use_predictor(widget, predictor)
    viewer.dims.set_current_step(0, 1)
    viewer.dims.set_point(1, 2)
    widget.preload = True
    widget._on_preload()
    widget.wait()
    widget.preload = False
    viewer.dims.set_current_step(0, 3)
    widget.wait()
    gate, entered, _ = held_encoder(monkeypatch, predictor)
    widget.preload = True
    widget._on_preload()
    qtbot.waitUntil(entered.is_set, timeout=60_000)
    job = widget.controller.job
    viewer.dims.set_current_step(0, 1)
    assert job.cancelled and job.stale
    gate.set()
    widget.wait()
    qtbot.wait(100)  # (the preload asked for by the stopped job's end: nothing to embed)
    assert widget.controller.source.time_point == 1 and widget.controller.job is None
    return widget


def test_scrubbing_back_to_an_embedded_time_point_keeps_both_lines(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    """Back at a time point whose slice is embedded already: the status said only "Stopped:
    ... at time point 3 ...", not which time point SAM segments now (the preload that would
    say both had nothing to embed and dropped them)."""
    widget = _scrub_back_to_an_embedded_time_point(make_widget, tiny_predictor, qtbot,
                                                   monkeypatch)
    line = ("SAM now segments time point 1 of 5. Stopped: Computing SAM embeddings at time "
            "point 3, because the time point shown changed while it ran")
    qtbot.waitUntil(lambda: widget.controller.status.startswith(line), timeout=30_000)


def test_the_embedding_line_of_the_time_point_shown_is_not_cancelled_by_another_ones_job(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    """The job stopped was time point 3's: the line about time point 1 said "time point 1:
    cancelled: 1 of 6 slices embedded", though nothing of time point 1 was cancelled."""
    widget = _scrub_back_to_an_embedded_time_point(make_widget, tiny_predictor, qtbot,
                                                   monkeypatch)
    assert widget._emb_state.text() == "time point 1: 1 of 6 slices embedded"


def test_a_movie_job_stopped_by_another_image_says_the_image_changed(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    """Another image picked while a movie's time point 3 is embedded: the stop line said
    "because the time point shown changed" (the new image has no time point 3)."""
    viewer, widget = _movie_at_time_point_3(make_widget, tiny_predictor)
    c = widget.controller
    viewer.add_image(blob_stack(seed=9), name="volume")
    gate, entered, _ = held_encoder(monkeypatch, tiny_predictor)
    widget.preload = True
    widget._on_preload()
    qtbot.waitUntil(entered.is_set, timeout=60_000)
    job = c.job
    widget._image.setCurrentIndex(widget._image.findData("volume"))
    assert job.cancelled and job.stale
    gate.set()
    widget.wait()
    assert job.note == (
        "Stopped: Computing SAM embeddings, because the image, the model or a setting changed "
        "while it ran (its result could not have been applied; the slices it had embedded "
        "are kept)."), job.note


def test_the_time_point_shown_while_the_model_loads_is_embedded_once_it_has(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    """The time slider moved while the model loaded (the job is let finish, not stopped):
    time point 1's slice was never embedded ("time point 1: 0 of 6 slices embedded", the
    first click waited for it) and the status lost "SAM now segments time point 1 of 5."."""
    viewer, widget = _movie_at_time_point_3(make_widget)
    c = widget.controller
    gate, entered = held_model_load(monkeypatch, c, tiny_predictor)
    widget.preload = True
    widget._on_preload()
    qtbot.waitUntil(entered.is_set, timeout=60_000)
    job = c.job
    viewer.dims.set_current_step(0, 1)
    assert not job.stale  # (a model that loads is let finish)
    gate.set()
    qtbot.waitUntil(lambda: widget._emb_state.text() == "time point 1: 1 of 6 slices embedded",
                    timeout=30_000)
    widget.wait()
    assert c.status.startswith("SAM now segments time point 1 of 5. Click on an object"), (
        c.status)
