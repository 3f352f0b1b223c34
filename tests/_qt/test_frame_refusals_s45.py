"""A (T, Y, X) time series (napari names its axes ("t", "y", "x")) is told in frames also
in the dock's refusals and job lines: Shift+D with nothing prompted, Shift+C with the
prompts not previewed or on another frame, negative points alone, and 'Segment
everything' on the current frame said 'slice' (in the status line and napari's
notification; session 45)."""

from __future__ import annotations

from sam_qt_helpers import blob_stack, canvas_click, press_key, use_predictor


def test_refusals_and_job_lines_of_a_time_series_say_frames(make_widget, tiny_predictor,
                                                             notifications):
    viewer, widget = make_widget(blob_stack(z=8), name="cells", sync=False,
                                 axis_labels=("t", "y", "x"))
    c = widget.controller
    said = []
    c.status_changed.connect(said.append)
    use_predictor(widget, tiny_predictor)
    widget.wait()
    assert c.axis_kind == "t", c.status
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
