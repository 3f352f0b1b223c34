"""Session 40's dock walk-through of napari's view settings and of the layers' lifecycle while a
job runs: in grid mode a click on the image's tile prompted another pixel of the image (the
one at that place of the 'SAM points' tile) and the preview showed in a third tile."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import canvas_click, grid_of_two_images, press_key, propagating_held

from napari_sam._qt import layers as L


def test_grid_mode_refuses_clicks_that_would_prompt_another_pixel_and_says_what_to_do(
        make_widget, tiny_predictor, qtbot):
    viewer, widget, grid = grid_of_two_images(make_widget, tiny_predictor, qtbot)
    c = widget.controller
    said = ("Grid mode is on: each layer is drawn in a tile of its own, so a click on 'img' "
            "would prompt the pixel at that place of the 'SAM points' tile, not the one under "
            "the mouse. Turn grid mode off (Ctrl+G, or the grid button at the bottom left of "
            "the layer list) to prompt;")
    assert widget._status.text().startswith(said), widget._status.text()
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    qtbot.wait(50)  # the refused point is removed after napari's release callbacks
    assert len(c.points_layer.data) == 0 and not c.previews
    assert widget._status.text().startswith(said)
    assert widget._status.text().endswith("The point was not kept.")
    grid.enabled = False  # back to one view: the status says what to do, and clicks prompt
    assert widget._status.text().startswith("Click on an object in 'img'"), widget._status.text()
    canvas_click(viewer, 20, 20)
    qtbot.waitUntil(lambda: bool(c.previews), timeout=30_000)
    assert np.allclose(c.points_layer.data, [[3, 20, 20]], atol=0.5)
    assert [p.z for p in c.previews] == [3]


@pytest.mark.parametrize("how", ["Clear", "delete 'SAM points'"])
def test_prompts_cleared_while_a_propagation_runs_say_why_its_result_was_dropped(
        make_widget, tiny_predictor, qtbot, monkeypatch, how):
    """The prompts cleared (Shift+X) or their layer deleted while a propagation ran: its result
    was dropped with "Add a point ..." as the only word."""
    viewer, widget, go = propagating_held(make_widget, tiny_predictor, qtbot, monkeypatch)
    c = widget.controller
    if how == "Clear":
        press_key(viewer, "Shift-X")
    else:
        viewer.layers.remove(L.POINTS_NAME)
        qtbot.waitUntil(lambda: c.points_layer is not None, timeout=5000)  # put back empty
    go.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    qtbot.wait(50)
    assert c.volume is None and not c.previews and len(c.points_layer.data) == 0
    assert widget._status.text() == (
        "The propagation ended, but its prompts were cleared while it ran, so its preview was "
        "dropped: click the object to segment it again."), widget._status.text()
