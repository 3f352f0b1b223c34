"""'Stack axis is' changed after the dock has spoken: the propagation trace kept the words of
the axis it was propagated with ('Object 1: frames 1-7' in a volume), the tooltips and the
keys' help said 'slice' in a time series (set once, when the dock was made), and an image
refused was notified again at each renamed viewer axis, for the same reason (session 46)."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QPushButton
from sam_qt_helpers import blob_stack, canvas_click, press_key, use_predictor


def _trace_words(widget) -> list[str]:
    """What the trace panel says: its titles, legend, plots' tooltips, buttons and theirs."""
    trace = widget._trace
    titles = [w.text() for w in trace.findChildren(QLabel) if w.text().startswith("Object")]
    plots = [p.toolTip() for p in trace.plots]
    buttons = [t for b in trace.findChildren(QPushButton) for t in (b.text(), b.toolTip())]
    return [*titles, trace.legend.text(), *plots, *buttons]


def test_the_trace_shown_is_told_in_the_words_of_the_stack_axis_picked_after(
        make_widget, tiny_predictor):
    """A time series propagated, then 'Stack axis is' z: the trace says slices (it said
    frames), its numbers the same; t again: frames."""
    viewer, widget = make_widget(blob_stack(z=8), name="cells", sync=False,
                                 axis_labels=("t", "y", "x"))
    c = widget.controller
    use_predictor(widget, tiny_predictor)
    widget.wait()
    assert c.axis_kind == "t", c.status
    viewer.dims.set_current_step(0, 3)
    widget.wait()
    canvas_click(viewer, 20, 20)
    widget.wait()
    press_key(viewer, "Shift-D")  # Propagate
    widget.wait()
    trace = widget._trace.trace
    assert trace is not None and trace["objects"], c.status
    frames = _trace_words(widget)
    assert frames[0].startswith("Object 1: frames "), frames
    assert "(stopped earlier at " in frames[0] or "(stopped later at " in frames[0], frames
    assert "flagged frame</span>" in frames[1], frames
    widget._axis_kind.setCurrentIndex(0)  # z: a volume
    assert c.axis_kind == "z"
    slices = _trace_words(widget)
    assert widget._trace.trace is trace and len(slices) == len(frames), slices
    assert slices == [t.replace("frame", "slice").replace("earlier at", "down at").replace(
        "later at", "up at") for t in frames], (slices, frames)
    assert slices[0].startswith("Object 1: slices "), slices
    assert "earlier" not in slices[0] and "later" not in slices[0], slices
    assert "flagged slice</span>" in slices[1] and "annotated slice</span>" in slices[1]
    assert slices[2].endswith("Click to go to a slice."), slices
    assert not [t for t in slices if "frame" in t], slices
    widget._axis_kind.setCurrentIndex(1)  # t again
    assert _trace_words(widget) == frames
