"""The picked image layer's data replaced while the dock works on it (a script's
``layer.data = denoised``, or a stack grown by new slices): the dock kept segmenting the old
pixels (its source and embeddings were the old data's), without a word, and a grown stack's
new slices were "beside the image". It now picks the image again: the new pixels are
embedded, the prompts stay and are decoded anew (same shape) or are set aside (another
shape), and the status line says so."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import blob_stack, canvas_click, use_predictor


def _preview(widget) -> np.ndarray:
    return np.asarray(widget.controller.preview_layer.data).copy()


def _clicked(make_widget, predictor, pixels, name="blobs"):
    """A dock on ``pixels`` (slice 3 shown), one click at (20, 20), previewed at once."""
    viewer, widget = make_widget(pixels, name=name)
    use_predictor(widget, predictor)
    viewer.dims.set_point(0, 3)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 20, 20)
    assert _preview(widget).any(), widget.controller.status
    return viewer, widget


def test_new_pixels_of_the_same_shape_are_segmented(make_widget, tiny_predictor):
    """The click's preview after ``layer.data`` was replaced is the one a dock opened on the
    new pixels gives (it was the old pixels'), and the point stays."""
    new = blob_stack(seed=5)[:, ::-1].copy()  # (the discs elsewhere)
    _v, fresh = _clicked(make_widget, tiny_predictor, new, name="fresh")
    expected = _preview(fresh)
    viewer, widget = _clicked(make_widget, tiny_predictor, blob_stack())
    c = widget.controller
    old = _preview(widget)
    assert not np.array_equal(old, expected)  # (else this test could not fail)

    viewer.layers["blobs"].data = new
    assert np.array_equal(np.asarray(c.source.stack[3]), new[3])
    assert c.status.startswith("'blobs' has new pixels: SAM now segments them."), c.status
    assert len(c.points_layer.data) == 1  # the prompt stays, decoded anew
    assert np.array_equal(_preview(widget), expected)
    assert widget._on_commit() is not None, c.status
    labels = np.asarray(c.target_layer.data)
    assert np.array_equal(labels[3] > 0, expected[3] > 0)

    emb = c.emb  # the same array edited in place, then set again: its pixels are new too
    layer = viewer.layers["blobs"]
    layer.data[:] = blob_stack(seed=7)
    layer.data = layer.data
    assert c.emb is not emb and c.status.startswith("'blobs' has new pixels"), c.status


def test_a_grown_stack_is_segmented_on_its_new_slices(make_widget, tiny_predictor):
    """The stack grown from 6 to 12 slices: a click on slice 9 was "beside the image" and
    nothing could be committed there; the old prompts (of the 6-slice shape) are set aside
    and dropped with a word, and a commit on slice 9 goes into labels of the new shape (the
    6-slice labels committed before are left as they were)."""
    viewer, widget = _clicked(make_widget, tiny_predictor, blob_stack())
    c = widget.controller
    assert widget._on_commit() is not None, c.status
    first = c.target_layer
    before = np.asarray(first.data).copy()
    assert before.shape == (6, 64, 64) and before[3].any()
    viewer.dims.set_point(0, 2)
    canvas_click(viewer, 20, 20)  # (a prompt of the 6-slice shape)
    layer = viewer.layers["blobs"]
    layer.data = np.concatenate([layer.data, blob_stack(seed=3)])
    assert c.source.shape == (12, 64, 64)
    assert "'blobs' has new pixels, of shape (12, 64, 64) (was (6, 64, 64))" in c.status, \
        c.status
    assert "were dropped: the image's shape changed" in c.status, c.status
    assert len(c.points_layer.data) == 0 and not _preview(widget).any()
    viewer.dims.set_point(0, 9)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 44, 44)
    assert _preview(widget)[9].any(), c.status
    assert widget._on_commit() is not None, c.status
    assert c.target_layer is not first
    labels = np.asarray(c.target_layer.data)
    assert labels.shape == (12, 64, 64) and labels[9].any()
    assert not np.delete(labels, 9, axis=0).any()
    assert np.array_equal(first.data, before)


def test_new_pixels_refused_are_not_segmented_as_the_old_ones(make_widget, tiny_predictor):
    """``layer.data`` replaced by pixels SAM cannot segment (6 axes): the dock said so and
    went on segmenting the old pixels. Now the preview goes and a click is refused with the
    reason; the old array put back is segmented again."""
    viewer, widget = _clicked(make_widget, tiny_predictor, blob_stack())
    c = widget.controller
    layer = viewer.layers["blobs"]
    old = layer.data
    layer.data = np.zeros((2, 3, 2, 6, 64, 64), np.float32)
    assert c.source is None and "Cannot use 'blobs'" in c.status, c.status
    assert not _preview(widget).any()
    layer.data = old
    assert c.source is not None and np.array_equal(np.asarray(c.source.stack[3]), old[3])
    assert c.status.startswith("'blobs' has new pixels: SAM now segments them."), c.status
    assert len(c.points_layer.data) == 1  # the click set aside while refused: back
    viewer.dims.set_point(0, 3)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 44, 20)
    assert _preview(widget)[3].any(), c.status
    assert widget._on_commit() is not None, c.status


def test_the_image_segmented_is_picked_again_while_another_is_refused(make_widget,
                                                                        tiny_predictor):
    """'Image' shows an image the dock refused (6 axes) while the dock still segments
    'blobs': the data of 'blobs' replaced re-tried the refused one and left 'blobs' on its
    old pixels. 'blobs' is picked again."""
    viewer, widget = _clicked(make_widget, tiny_predictor, blob_stack())
    c = widget.controller
    viewer.add_image(np.zeros((2, 3, 2, 6, 64, 64), np.float32), name="odd")
    widget._image.setCurrentIndex(widget._image.findData("odd"))
    assert c.image_layer.name == "blobs" and "Cannot use 'odd'" in c.status, c.status
    new = blob_stack(seed=5)[:, ::-1].copy()
    viewer.layers["blobs"].data = new
    assert c.image_layer.name == "blobs"
    assert np.array_equal(np.asarray(c.source.stack[3]), new[3])
    assert c.status.startswith("'blobs' has new pixels: SAM now segments them."), c.status
