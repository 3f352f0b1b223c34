"""Walk-through findings of round 38 in the menu-opened dock: a full uint8 labels layer, ..."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QPushButton
from sam_qt_helpers import (
    blob_stack,
    canvas_click,
    large_image_embedding_tiles,
    use_predictor,
)


def _pick(widget, text: str) -> None:
    """Pick ``text`` in the 'Labels layer' box as a user does (the box's ``activated``)."""
    index = widget._target.findText(text)
    assert index >= 0, text
    widget._target.setCurrentIndex(index)
    widget._target.activated.emit(index)


def _button(widget, text: str) -> QPushButton:
    return next(b for b in widget.findChildren(QPushButton) if b.text().startswith(text))


def test_a_commit_that_overflows_a_uint8_layer_says_so_in_the_status(stack_widget):
    """The 256th object in a uint8 layer: the status kept the stale "Shift+C commits." line
    (the OverflowError was only a notification); nothing may be written either."""
    viewer, w = stack_widget
    c = w.controller
    shape = viewer.layers["blobs"].data.shape
    full = np.zeros(shape, np.uint8)
    full[0].flat[: 255 * 2 : 2] = np.arange(1, 256)  # ids 1..255 on slice 0
    viewer.add_labels(full, name="u8labels")
    _pick(w, "u8labels")
    assert c.target_layer is viewer.layers["u8labels"]
    c.add_point(3, 20, 20)
    assert "commits" in c.status
    before = full.copy()
    _button(w, "Commit").click()
    assert np.array_equal(viewer.layers["u8labels"].data, before)  # nothing written
    assert "Not committed: 'u8labels' is uint8 and holds ids up to 255" in c.status, c.status
    assert "label 256" in c.status
    entry = "new 'segmentation' layer"
    assert f'Pick "{entry}" in \'Labels layer\'' in c.status
    _pick(w, entry)  # the entry the status names is in the box; doing what it says commits
    _button(w, "Commit").click()
    assert c.target_layer.name == "segmentation" and c.target_layer.data.dtype == np.uint32
    assert c.target_layer.data.max() == 1 and c.status.startswith("Committed label 1")


@pytest.mark.parametrize("where", [(0,), (1,), (0, 1)], ids=["1ZYX", "Z1YX", "11ZYX"])
def test_size_1_axes_a_reader_gives_are_left_out_of_the_stack(make_widget, tiny_predictor,
                                                               where):
    """(1, 6, Y, X), (6, 1, Y, X) and (1, 1, 6, Y, X) (T = 1 or C = 1 from a reader) were
    refused as 4 or 5 spatial dimensions: they are the 6-slice stack; the labels layer made
    has the image's shape (napari overlays it) with the click's object on its slice."""
    stack = blob_stack()
    image = np.expand_dims(stack, where)
    viewer, w = make_widget(image, name="blobs")
    use_predictor(w, tiny_predictor)
    c = w.controller
    assert c.source is not None and c.source.shape == stack.shape, c.status
    z_axis = c.source.z_axis
    assert image.shape[z_axis] == stack.shape[0]
    viewer.dims.set_point(z_axis, 3)
    canvas_click(viewer, 20, 20)
    assert "commits" in c.status, c.status
    _button(w, "Commit").click()
    assert c.status.startswith("Committed label 1"), c.status
    labels = c.target_layer.data
    assert labels.shape == image.shape
    zyx = np.squeeze(labels, axis=where)
    assert zyx[3].any() and not np.delete(zyx, 3, axis=0).any()


def test_a_short_first_axis_read_as_slices_is_named_in_the_status(make_widget, tiny_predictor):
    """A channel-first (3, Y, X) image was a 3-slice stack without a word (Shift+D then
    propagated across its channels): the first status line says axis 0 may be channels and
    where to pick it, until it is picked; a 6-slice stack has no such note."""
    three = np.stack([blob_stack()[3]] * 3)
    viewer, w = make_widget(three, name="chfirst")
    use_predictor(w, tiny_predictor)
    c = w.controller
    note = ("Axis 0 of 'chfirst' (size 3) is read as 3 slices: if it holds channels (colours "
            "or stains), pick it in 'Channel axis'.")
    assert note in c.status and note in w._status.text(), c.status
    w._channels.axis.setCurrentIndex(w._channels.axis.findData(0))  # axis 0 as channels
    assert c.source.channel_axis == 0 and not c.source.is_3d
    assert "Click on an object in 'chfirst'" in c.status and "Axis 0" not in c.status, c.status
    viewer.add_image(blob_stack(), name="stack")
    w._image.setCurrentIndex(w._image.findText("stack"))
    assert c.source.n_slices == 6 and "Click on an object in 'stack'" in c.status, c.status
    assert "is read as" not in c.status


def test_another_layer_selected_says_which_layer_to_select(stack_widget):
    """With the user's labels layer selected a click on the canvas went to it and the status
    kept "Click on an object in 'blobs'": it says to select 'SAM points', and the usual line
    comes back once it is selected."""
    viewer, w = stack_widget
    c = w.controller
    hint = "to segment, select 'SAM points' in the layer list (or 'SAM boxes' to draw boxes)."
    assert c.status.startswith("Click on an object in 'blobs'") and hint not in c.status
    mine = viewer.add_labels(np.zeros(viewer.layers["blobs"].data.shape, np.uint8), name="mine")
    viewer.layers.selection.active = mine
    assert f"'mine' is the selected layer, so clicks on the canvas go to it: {hint}" in (
        w._status.text()), w._status.text()
    canvas_click(viewer, 20, 20)  # goes to 'mine' (paints nothing in pan/zoom mode)
    assert not len(c.points_layer.data) and hint in c.status
    viewer.layers.selection.active = c.points_layer
    assert c.status.startswith("Click on an object in 'blobs'") and hint not in c.status
    canvas_click(viewer, 20, 20)
    assert len(c.points_layer.data) == 1 and c.status.endswith("Shift+C commits."), c.status


def test_an_empty_preview_is_called_empty(make_widget, demo_available):
    """A click on a 5 x 5 uniform crop: the model finds nothing and the preview is empty, but
    the status said "score 0.35 ... Shift+C commits." (the commit then refused)."""
    rng = np.random.default_rng(0)
    flat = np.clip(20 + rng.normal(0, 3, (5, 5)), 0, 255).astype(np.uint8)
    viewer, w = make_widget(flat, name="tiny5")
    c = w.controller
    canvas_click(viewer, 2, 2)
    w.wait()
    assert c.previews and not any(p.mask.any() for p in c.previews)
    assert "The preview is empty (the model found no object there)" in c.status, c.status
    assert "Shift+C commits." not in c.status


def test_a_commit_of_two_boxes_says_labels(stack_widget):
    """Two objects committed at once said "Committed label 1, 2 (...)"; the words follow the
    count (napari_sam.words), as "1 pixel" does."""
    viewer, w = stack_widget
    c = w.controller
    c.overwrite = True  # (the tiny random model's masks overlap)
    c.add_box(3, 5, 5, 30, 30)
    c.add_box(3, 35, 35, 60, 60)
    assert len(c.previews) == 2, c.status
    _button(w, "Commit").click()
    assert c.status.startswith("Committed labels 1, 2 ("), c.status
    assert "pixels)." in c.status


@pytest.mark.slow
def test_segment_everything_during_the_preload_makes_it_stop(make_widget, qtbot,
                                                               demo_available):
    """Segment everything while the background embedding of a large (tiled) image runs was
    refused ("... is running: wait or Cancel"); it makes the embedding stop after the tile
    under way, as a click does, and starts then (real worker threads)."""
    w, c, preload = large_image_embedding_tiles(make_widget, qtbot)
    _button(w, "Segment everything").click()
    assert c.status.startswith("Segment everything starts once the embedding in the "
                               "background stops"), c.status
    assert preload.pause.is_set()
    qtbot.waitUntil(lambda: c.job is not None and c.job is not preload, timeout=120_000)
    assert not preload.running and c.job.running
    assert c.job.description.startswith("Segmenting everything"), c.job.description
    c.cancel()


@pytest.mark.slow
def test_a_refused_action_during_the_preload_does_not_stop_the_embedding(make_widget, qtbot,
                                                                        demo_available):
    """Propagate on a large 2D image while its background embedding runs: refused at once
    (a 2D image), before waiting, so the embedding is neither asked to stop nor restarted
    (it stopped, and "Propagation starts once ..." was said before the refusal)."""
    w, c, preload = large_image_embedding_tiles(make_widget, qtbot)
    _button(w, "Propagate").click()
    assert "2D" in c.status and "starts once" not in c.status, c.status
    assert c.job is preload and preload.running and not preload.pause.is_set()
    c.cancel()


def test_selecting_a_layer_after_a_commit_keeps_the_commits_line(stack_widget):
    """The user selects their labels layer to paint after a commit: the commit's line (with
    its notes, e.g. a fragment left inside the new label) stays the status line."""
    viewer, w = stack_widget
    c = w.controller
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    c.commit()
    said = c.status
    assert said.startswith("Committed label 1"), said
    viewer.layers.selection.active = c.target_layer
    assert c.status == said
    viewer.layers.selection.active = c.points_layer
    assert c.status == said
