"""A (T, Y, X) time series in the dock (napari names its axes ("t", "y", "x"): 'Stack axis
is' t) is told in frames, as its status lines after Propagate already were: the embedded
line, the ready line, the trace of each object and the boxes of Propagate and Segment
everything said 'slices'; so did the refusals and job lines (Shift+D with nothing prompted,
Shift+C with the prompts not previewed or on another frame, negative points alone, 'Segment
everything' on the current frame), in the status line and napari's notification (session
45)."""

from __future__ import annotations

import re

from qtpy.QtWidgets import QLabel, QPushButton
from sam_qt_helpers import blob_stack, canvas_click, press_key, use_predictor


def time_series_dock(make_widget, tiny_predictor):
    """The dock on an 8-frame (T, Y, X) series named ("t", "y", "x"), the tiny model in use:
    (viewer, widget, controller, the status lines said from then on)."""
    viewer, widget = make_widget(blob_stack(z=8), name="cells", sync=False,
                                 axis_labels=("t", "y", "x"))
    c = widget.controller
    said = []
    c.status_changed.connect(said.append)
    use_predictor(widget, tiny_predictor)
    widget.wait()
    assert c.axis_kind == "t", c.status
    return viewer, widget, c, said


def click_and_propagate(viewer, widget) -> None:
    """A click at (20, 20) on frame 3, then Propagate (Shift+D), each waited for."""
    viewer.dims.set_current_step(0, 3)
    widget.wait()
    canvas_click(viewer, 20, 20)
    widget.wait()
    press_key(viewer, "Shift-D")  # Propagate
    widget.wait()


def test_a_time_series_is_told_in_frames(make_widget, tiny_predictor):
    viewer, widget, c, said = time_series_dock(make_widget, tiny_predictor)
    assert widget._scope.itemText(0) == "objects on this frame"
    assert widget._auto_scope.itemText(0) == "current frame"
    assert "Embeddings ready (1 frame)." in said, said
    click_and_propagate(viewer, widget)
    assert re.fullmatch(r"[1-8] of 8 frames embedded", widget._emb_state.text()), (
        widget._emb_state.text())
    trace = widget._trace
    titles = [w.text() for w in trace.findChildren(QLabel) if w.text().startswith("Object")]
    assert len(titles) == 1 and titles[0].startswith("Object 1: frames "), titles
    assert re.search(r"\(stopped (earlier|later) at \d", titles[0]), titles
    assert "flagged frame</span>" in trace.legend.text()
    buttons = [t for b in trace.findChildren(QPushButton) for t in (b.text(), b.toolTip())]
    assert "frame 2: stopped early?" in buttons and "Add a point on frame 2" in buttons, buttons
    assert any(t.startswith("stopped at frame 3 (") for t in buttons), buttons  # (its tooltip)
    shown = [*said, widget._emb_state.text(), *titles, *buttons]
    assert not [t for t in shown if "slice" in t.lower()], shown
    # a volume again: slices
    widget._axis_kind.setCurrentIndex(0)
    assert widget._scope.itemText(0) == "objects on this slice"
    assert widget._auto_scope.itemText(0) == "current slice"
    assert re.fullmatch(r"[1-8] of 8 slices embedded", widget._emb_state.text()), (
        widget._emb_state.text())


def test_refusals_and_job_lines_of_a_time_series_say_frames(make_widget, tiny_predictor,
                                                             notifications):
    viewer, widget, c, said = time_series_dock(make_widget, tiny_predictor)
    viewer.dims.set_current_step(0, 3)
    widget.wait()
    press_key(viewer, "Shift-D")  # nothing prompted
    refusal = "No prompts to propagate: click the object (or draw a box) on this frame first."
    assert c.status == refusal, c.status
    assert ("warning", refusal) in notifications, notifications
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20, modifiers=("Shift",))  # a negative point alone
    widget.wait()
    assert c.status.startswith("Nothing to segment on this frame: negative points alone do "
                               "not say which object to cut from"), c.status
    press_key(viewer, "Shift-X")
    widget._live.setChecked(False)
    canvas_click(viewer, 20, 20)
    widget.wait()
    press_key(viewer, "Shift-C")  # not previewed
    assert c.status.startswith("Not committed: the prompts have no preview yet ('Live "
                               "preview' is off). Press Shift+S to preview them on this frame"), (
        c.status)
    viewer.dims.set_current_step(0, 5)
    widget.wait()
    press_key(viewer, "Shift-C")  # the prompt is on frame 3
    assert c.status.startswith("Not committed: nothing is previewed on this frame (5); the "
                               "prompts are on frame 3: go there"), c.status
    widget._on_automatic()  # 'Where': current frame
    widget.wait()
    assert "Segmenting everything in this frame ..." in said, said
    assert not [t for t in said if "slice" in t], [t for t in said if "slice" in t]
