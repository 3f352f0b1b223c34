"""The line a resumed session says, and the first click after it."""

from __future__ import annotations

from sam_qt_helpers import canvas_click, pick_checkpoint


def _open(make_widget, stack_file, tiny_ckpt):
    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open(str(stack_file), plugin="napari")
    return viewer, widget


def _click(viewer, widget, z: int, row: float = 20, col: float = 20) -> None:
    viewer.dims.set_point(0, z)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, row, col)


def test_the_resume_line_is_not_said_again_with_a_later_preview(make_widget, stack_file,
                                                                 tiny_ckpt):
    """Resume a session without pending prompts: 'Loaded the session ...' is said once; the
    first click's preview line, much later, is the preview's alone (it came back glued to
    it: the line was kept for a preview that did not follow)."""
    v1, w1 = _open(make_widget, stack_file, tiny_ckpt)
    _click(v1, w1, 1)
    assert w1._on_commit() is not None, w1.controller.status  # autosaved next to the image
    v1.window.remove_dock_widget(w1)  # (a live dock's file is not offered to another)

    v2, w2 = _open(make_widget, stack_file, tiny_ckpt)
    assert w2._resume_row.isVisibleTo(w2)
    sess = w2._on_resume()
    c = w2.controller
    assert len(sess.operations) == 1 and c.previews == []
    assert c.status.startswith("Loaded the session blobs.tif") and "continue where" in c.status
    _click(v2, w2, 3)
    assert len(c.previews) == 1
    assert "Loaded the session" not in c.status, c.status
    assert c.status == c.preview_status and c.status.startswith("point object"), c.status
