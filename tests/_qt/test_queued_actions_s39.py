"""Propagate and Segment everything pressed while the dock embeds the visible slice (the
embedding a click started, or the preload) wait for it and start when it is ready; they were
refused ("'Computing SAM embeddings' is running: wait for it or press Cancel."). Real worker
threads; the encoder is held until the test has pressed the button."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QPushButton
from sam_qt_helpers import (
    HELD_FAILURE,
    blob_stack,
    held_encoder,
    held_model_load,
    large_image_embedding_tiles,
    use_predictor,
)


def _button(widget, text: str) -> QPushButton:
    return next(b for b in widget.findChildren(QPushButton) if b.text().startswith(text))


@pytest.fixture
def clicked_while_embedding(make_widget, tiny_predictor, qtbot, monkeypatch):
    """``(widget, controller, gate, the embedding job, fail)``: a click on slice 3 of the
    menu-opened dock's stack is being embedded, the encoder held until ``gate`` is set (at
    the latest when the test ends)."""
    viewer, w = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    use_predictor(w, tiny_predictor)
    viewer.dims.set_point(0, 3)
    gate, entered, fail = held_encoder(monkeypatch, tiny_predictor)
    c = w.controller
    c.add_point(3, 20, 20)  # the click starts embedding slice 3
    qtbot.waitUntil(entered.is_set, timeout=30_000)
    embedding = c.job
    assert embedding is not None and embedding.running
    assert embedding.description == "Computing SAM embeddings"
    yield w, c, gate, embedding, fail
    gate.set()


def test_propagate_while_the_slice_is_embedded_starts_when_it_is_ready(
        clicked_while_embedding, qtbot):
    w, c, gate, embedding, fail = clicked_while_embedding
    _button(w, "Propagate").click()
    assert c.status.startswith("Propagation starts once the embedding under way"), c.status
    assert "Cancel drops both" in c.status
    assert c.job is embedding  # nothing else started yet
    gate.set()
    qtbot.waitUntil(lambda: c.job is not None and c.job is not embedding, timeout=60_000)
    assert c.job.description.startswith("Propagating through the stack"), c.job.description
    qtbot.waitUntil(lambda: not c.job.running if c.job is not None else True, timeout=120_000)
    assert c.volume is not None, c.status  # the propagated preview is there to commit


def test_cancel_drops_the_embedding_and_the_waiting_action(
        clicked_while_embedding, qtbot):
    w, c, gate, embedding, fail = clicked_while_embedding
    _button(w, "Segment everything").click()
    assert c.status.startswith("Segment everything starts once the embedding"), c.status
    c.cancel()
    gate.set()
    qtbot.waitUntil(lambda: not embedding.running, timeout=60_000)
    qtbot.wait(200)
    assert c.job is None or not c.job.description.startswith("Segmenting"), c.job.description


def test_a_failed_embedding_drops_the_waiting_action(clicked_while_embedding, qtbot):
    """The embedding fails (e.g. a download): its message stays the status line, and the
    waiting Propagate does not start a second attempt that fails the same way."""
    w, c, gate, embedding, fail = clicked_while_embedding
    _button(w, "Propagate").click()
    assert c.status.startswith("Propagation starts once"), c.status
    fail.append(True)
    gate.set()
    qtbot.waitUntil(lambda: not embedding.running, timeout=60_000)
    qtbot.wait(200)
    assert c.job is embedding or c.job is None, c.job.description  # no second attempt
    assert c.status.startswith("Failed: Computing SAM embeddings"), c.status
    assert HELD_FAILURE in c.status


@pytest.mark.slow
def test_cancelling_what_the_background_embedding_made_way_for_lets_it_go_on(
        make_widget, qtbot, demo_available):
    """Segment everything on a large 2D image stops its background embedding of tiles; Cancel
    then left the image half embedded, silently, and said "the slices it had embedded": the
    embedding goes on, the status line says so, and names tiles."""
    from napari_sam.annotate.click_first import RESUME_DESCRIPTION

    w, c, preload = large_image_embedding_tiles(make_widget, qtbot)
    _button(w, "Segment everything").click()
    qtbot.waitUntil(lambda: c.job is not None and c.job is not preload, timeout=120_000)
    assert c.job.description.startswith("Segmenting everything"), c.job.description
    c.cancel()
    qtbot.waitUntil(lambda: c.job is not None and c.job.description == RESUME_DESCRIPTION,
                    timeout=120_000)
    assert c.status.startswith("Cancelled: Segmenting everything in this slice."), c.status
    assert "slices it had" not in c.status, c.status
    assert "Meanwhile the other tiles of this slice are embedded" in c.status, c.status
    c.cancel()


def test_the_status_line_names_segmenting_and_propagating_not_embedding(stack_widget):
    """The status line said "Embedding ..." (the job's first line) for minutes while Segment
    everything segmented, and while Propagate propagated: each says its own phase."""
    viewer, w = stack_widget
    c = w.controller
    said = []
    c.status_changed.connect(said.append)
    _button(w, "Segment everything").click()
    assert "Segmenting everything in this slice ..." in said, said
    c.add_point(3, 20, 20)
    said.clear()
    _button(w, "Propagate").click()
    assert "Propagating 1 object through the stack ..." in said, said
    assert c.status.startswith("Propagated 1 object"), c.status


def test_a_waiting_propagate_is_not_started_on_an_image_picked_meanwhile(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    """Propagate pressed while the model loads, then another image picked: the load is let
    finish (so the job ends as if it succeeded), and the waiting Propagate ran on the new
    image's prompts and labels (the reviewer's catch). It is not started, and says why."""

    viewer, w = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    viewer.add_image(blob_stack() * 0.5, name="other")
    w._image.setCurrentIndex(w._image.findText("blobs"))
    w._on_image_changed()
    c = w.controller
    gate, entered = held_model_load(monkeypatch, c, tiny_predictor)
    viewer.dims.set_point(0, 3)
    try:
        c.add_point(3, 20, 20)  # the click's job loads the model first
        qtbot.waitUntil(entered.is_set, timeout=30_000)
        loading = c.job
        qtbot.waitUntil(lambda: loading.phase.startswith("loading the model"), timeout=30_000)
        _button(w, "Propagate").click()
        assert c.status.startswith("Propagation starts once the embedding under way (loading "
                                   "the model 'held')"), c.status
        w._image.setCurrentIndex(w._image.findText("other"))
        w._on_image_changed()
        assert not loading.cancelled  # a load is let finish
    finally:
        gate.set()
    qtbot.waitUntil(lambda: "Propagation was not started" in c.status, timeout=60_000)
    assert "the image, the model or a setting changed while it waited" in c.status
    assert c.job is None or not c.job.description.startswith("Propagating"), c.job.description
    assert c.volume is None
