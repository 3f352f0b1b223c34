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


def test_status_names_the_previews_slice_after_moving_away(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    canvas_click(viewer, 20, 20)
    on_its_slice = widget._status.text()
    assert on_its_slice.endswith("Shift+C commits."), on_its_slice
    viewer.dims.set_point(0, 5)
    assert widget._status.text().startswith(
        "The preview is on slice 3 (slice 5 is shown): go back to slice 3"), c.status
    viewer.dims.set_point(0, 3)
    assert widget._status.text() == on_its_slice


def test_live_preview_ticked_again_previews_the_kept_prompts(stack_widget):
    from napari_sam.annotate.commit_words import LIVE_OFF

    viewer, widget = stack_widget
    c = widget.controller
    widget._live.click()
    canvas_click(viewer, 20, 20)
    assert widget._status.text() == LIVE_OFF and not c.previews
    widget._live.click()  # ticked again: the line about it being off goes
    assert c.previews and widget._status.text().endswith("Shift+C commits."), c.status


def test_the_live_off_line_goes_with_the_last_prompt(stack_widget):
    from napari_sam.annotate.commit_words import LIVE_OFF

    viewer, widget = stack_widget
    c = widget.controller
    widget._live.click()
    canvas_click(viewer, 20, 20)
    assert widget._status.text() == LIVE_OFF
    c.points_layer.selected_data = {0}
    c.points_layer.remove_selected()
    assert widget._status.text().startswith("Click on an object in 'blobs'"), c.status
