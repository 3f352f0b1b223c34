"""Session 40: the dock opened from the menu, as a user sees it.

- The line beside 'Compute embeddings' kept "0 of 6 slices embedded" while the slices were
  embedded, and said nothing of the tiles of a large image for minutes: it now counts the
  job's slices or tiles, and says how the job ended.
- Ticking 'Model sees the layer's contrast' over limits equal to those the slices were
  embedded with said "Contrast changed" and embedded them again.
- Undo and Redo were always enabled: a click with nothing to undo changed only the status
  line. They are enabled when they can act, their tooltips naming the commit.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from qtpy.QtWidgets import QPushButton
from sam_qt_helpers import (
    blob_stack,
    click_button,
    click_commit,
    contrast_box,
    large_image_embedding_tiles,
    press_key,
    use_predictor,
)

from napari_sam._qt.layer_contrast import HINT


def _settled(widget, qtbot) -> None:
    """Wait for the preload the dock scheduled (from the event loop) to end."""
    c = widget.controller
    qtbot.wait(50)
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)


def test_the_embedding_line_counts_the_slices_while_compute_embeddings_runs(
        make_widget, tiny_predictor, qtbot):
    _viewer, widget = make_widget(blob_stack(z=6), sync=False, name="stack")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    _settled(widget, qtbot)
    assert widget._emb_state.text() == "1 of 6 slices embedded"
    seen = []  # the line at each progress report of the job (threaded)
    c.job_progress.connect(lambda *_: seen.append(widget._emb_state.text()))
    click_button(qtbot, widget, "Compute embeddings")
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    # (the job's first report, busy, comes before its embedding phase starts)
    assert seen[0] == "1 of 6 slices embedded", seen
    assert all(re.fullmatch(r"embedding slices [0-5]/5", t) for t in seen[1:]), seen
    assert seen[-1] == "embedding slices 5/5", seen
    assert widget._emb_state.text() == "6 of 6 slices embedded"


def test_the_embedding_line_counts_tiles_and_says_a_cancel_until_the_image_changes(
        make_widget, qtbot):
    widget, c, job = large_image_embedding_tiles(make_widget, qtbot)
    line = widget._emb_state
    qtbot.waitUntil(lambda: bool(re.fullmatch(r"embedding tiles [1-9]\d*/\d+", line.text())),
                    timeout=60_000)
    click_button(qtbot, widget, "Cancel")
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert line.text() == "cancelled: not embedded yet", line.text()
    c.set_image(c.image_layer)  # the same image again (its source is made anew): still so
    assert c.job is None and line.text() == "cancelled: not embedded yet", line.text()
    viewer = widget.viewer
    viewer.add_image(np.zeros((64, 64), np.uint8), name="small")
    widget._image.setCurrentIndex(widget._image.findData("small"))
    _settled(widget, qtbot)
    assert line.text() == "embedded"


@pytest.mark.parametrize("axis_kind", ["z", "t"])
def test_ticking_the_contrast_box_over_the_limits_embedded_with_keeps_the_embeddings(
        stack_widget, qtbot, axis_kind):
    """Also in a time series: its lines say frames (session 46: they said slices)."""
    viewer, widget = stack_widget
    c, layer = widget.controller, viewer.layers["blobs"]
    widget._axis_kind.setCurrentIndex(int(axis_kind == "t"))
    assert c.axis_kind == axis_kind
    units = "frames" if axis_kind == "t" else "slices"
    _settled(widget, qtbot)
    emb = c.emb
    lo, hi = emb.contrast_limits  # the stack's percentiles the slices were embedded with
    layer.contrast_limits = (lo, hi)
    qtbot.waitUntil(lambda: widget._status.text().startswith(HINT), timeout=30_000)
    contrast_box(widget).click()
    unchanged = (f"Contrast unchanged: the {units} were embedded with the layer's limits "
                 f"({lo:.6g}-{hi:.6g}) already; their embeddings are kept.")
    # (said once the debounce timer fires: a loaded machine fires it late)
    qtbot.waitUntil(lambda: widget._status.text() == unchanged, timeout=30_000)
    assert c.emb is emb and c.model_contrast() is None and c.job is None
    layer.contrast_limits = (lo, (lo + hi) / 2)  # a change of the user's is still applied
    qtbot.waitUntil(lambda: c.model_contrast() == (lo, (lo + hi) / 2), timeout=30_000)
    assert widget._status.text().startswith(f"Contrast changed: {units} are embedded again"), \
        widget._status.text()


def _history_buttons(widget) -> tuple[QPushButton, QPushButton]:
    undo, redo = (next(b for b in widget.findChildren(QPushButton) if b.text().startswith(t))
                  for t in ("Undo", "Redo"))
    return undo, redo


def test_undo_and_redo_are_enabled_only_when_they_can_act(stack_widget, qtbot):
    viewer, widget = stack_widget
    c = widget.controller
    undo, redo = _history_buttons(widget)
    assert not undo.isEnabled() and not redo.isEnabled()
    assert undo.toolTip() == "Nothing to undo: no commit made yet. Key: Shift+U."
    before = widget._status.text()
    assert click_button(qtbot, widget, "Undo") == before  # a disabled button: no line

    click_commit(viewer, widget, 20, 20)
    labels = c.target_layer
    committed = np.array(labels.data)
    assert undo.isEnabled() and not redo.isEnabled()
    assert undo.toolTip() == ("Undo the commit of label 1 in 'segmentation'; pixels you "
                              "changed since are left as they are. Key: Shift+U.")
    viewer.layers.selection.active = labels
    press_key(viewer, "Control-Z")  # napari's own undo: the dock's Undo still has the step
    assert not np.asarray(labels.data).any()
    assert undo.isEnabled() and not redo.isEnabled()
    viewer.layers.selection.active = c.points_layer

    text = click_button(qtbot, widget, "Undo")
    assert text.startswith("Undid commit of label 1 in 'segmentation'."), text
    assert not undo.isEnabled() and redo.isEnabled()
    assert redo.toolTip() == "Redo the commit of label 1 in 'segmentation'. Key: Shift+R."
    empty = np.array(labels.data)
    text = click_button(qtbot, widget, "Undo")  # disabled: nothing happens
    np.testing.assert_array_equal(np.asarray(labels.data), empty)
    assert text.startswith("Undid commit"), text

    text = click_button(qtbot, widget, "Redo")
    assert text.startswith("Redid commit of label 1 in 'segmentation'."), text
    np.testing.assert_array_equal(np.asarray(labels.data), committed)
    assert undo.isEnabled() and not redo.isEnabled()
    viewer.layers.remove(labels)  # its steps go with it
    assert not undo.isEnabled() and not redo.isEnabled()
