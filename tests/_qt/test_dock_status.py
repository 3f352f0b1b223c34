"""What the dock's job bar, embedding line and status line say while the user works: the
propagation bar counts the stack's slices, the embedding line follows a running job, the
status line follows the slice shown and the 'Live preview' box."""

from __future__ import annotations

from sam_qt_helpers import blob_stack, canvas_click, use_predictor


def test_propagation_bar_counts_the_stacks_slices_and_ends_full(make_widget, tiny_predictor,
                                                               qtbot):
    """A real worker thread: 'propagating k/6' on a 6-slice stack (it said k/12, counting
    each slice once per direction), never backwards, full at the end."""
    viewer, widget = make_widget(blob_stack(), sync=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    viewer.dims.set_point(0, 3)
    c, bar = widget.controller, widget._progress
    shown = []
    c.job_progress.connect(lambda *_: shown.append((bar.format(), bar.value(), bar.maximum())))
    canvas_click(viewer, 20, 20)
    widget.wait()
    shown.clear()
    viewer.window._qt_viewer._key_map_handler.press_key("Shift-D")
    widget.wait()
    assert c.volume is not None, c.status
    counted = [(v, m) for f, v, m in shown if f.startswith("propagating")]
    assert counted and {m for _, m in counted} == {6}, shown
    values = [v for v, _ in counted]
    assert values == sorted(values) and values[-1] == 6, shown
    assert bar.value() == bar.maximum() == 1  # full after the job (the idle bar: 100%)
