"""Session 34's dock walk-through (a biologist annotating the real stack, mixing the dock with
napari's view and tools): a finished propagation was dropped without a word by a trip to the
3D view and back, and by a click made while it ran (the next commit then wrote one slice)."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import canvas_click, press_key, propagating_held


def test_the_3d_view_and_back_keeps_a_finished_propagation(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    press_key(viewer, "Shift-D")
    assert c.volume is not None, widget._status.text()
    said = widget._status.text()
    assert said.startswith("Propagated 1 object"), said
    propagated = np.asarray(c.volume.labels) > 0
    viewer.dims.ndisplay = 3
    assert widget._status.text().startswith("The view is 3D"), widget._status.text()
    viewer.dims.ndisplay = 2
    assert c.volume is not None and widget._status.text() == said  # (was: one slice's preview)
    press_key(viewer, "Shift-C")
    assert widget._status.text().startswith("Committed label 1"), widget._status.text()
    np.testing.assert_array_equal(np.asarray(c.target_layer.data) == 1, propagated)


def test_a_click_while_a_propagation_runs_drops_its_result_and_says_so(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    viewer, widget, go = propagating_held(make_widget, tiny_predictor, qtbot, monkeypatch)
    c = widget.controller
    viewer.dims.set_point(0, 5)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 44, 44)  # the next nucleus, on another slice, while it runs
    assert ("The prompts changed since the running propagation started, so its result will "
            "be dropped when it ends (the prompts stay): to propagate them, press Cancel, then "
            "Shift+D.") in widget._status.text()
    go.set()
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=60_000)
    status = widget._status.text()
    assert c.volume is None and status.startswith(
        "The propagation ended, but the prompts changed while it ran, so its preview was "
        "dropped; the prompts are kept: press Shift+D to propagate them."), status
    assert "Shift+C commits" in status  # then the slice's own preview


def test_previewing_the_prompts_a_propagation_runs_on_does_not_say_it_will_be_dropped(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    """Shift+S on the propagated slice while the propagation ran said "started without these
    prompts, so its result will be dropped": false (the prompts are the ones it propagates),
    and its result was then kept."""
    viewer, widget, go = propagating_held(make_widget, tiny_predictor, qtbot, monkeypatch)
    c = widget.controller
    press_key(viewer, "Shift-S")  # the same prompts previewed again on their slice
    status = widget._status.text()
    assert status.startswith("point object: score ") and "dropped" not in status, status
    go.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.volume is not None and c.volume.object_ids == [1]  # kept, as nothing changed
    assert widget._status.text().startswith("Propagated 1 object over "), widget._status.text()


def test_a_click_on_another_slice_says_it_adds_to_the_same_object(stack_widget):
    """Clicking the next nucleus on another slice without committing gave one label over
    both nuclei, the status naming one "point object"; it now says the points make one."""
    viewer, widget = stack_widget
    c = widget.controller
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    assert "make one object" not in widget._status.text()
    viewer.dims.set_point(0, 1)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 44, 44)
    assert (" Its points on slices 1, 3 make one object (Propagate carries it through them); "
            "for two objects, remove this point, commit the first object, then click the "
            "next.") in widget._status.text()


def test_a_commit_into_a_hidden_labels_layer_says_it_is_hidden(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    press_key(viewer, "Shift-C")
    assert "hidden" not in widget._status.text()
    c.target_layer.visible = False  # the user hid the labels to look at the image
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 44, 44)
    press_key(viewer, "Shift-C")
    status = widget._status.text()
    assert status.startswith("Committed label 2") and status.endswith(
        "'segmentation' is hidden: tick its eye to see it."), status
