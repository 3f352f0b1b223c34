"""A folder shared or moved with its autosaved session (session 41's walk-through: a name
with spaces, brackets, ``#``, ``%``, é, 中文 and an upper-case ``.TIF``): the dock offers the
session at the new place and resumes it; the record's absolute image path (the old place)
is only a note. Behaviour already right; pinned."""

from __future__ import annotations

import shutil

import numpy as np
import tifffile
from qtpy.QtWidgets import QPushButton
from sam_qt_helpers import blob_stack, canvas_click, pick_checkpoint


def test_a_session_moved_with_its_folder_is_offered_and_resumed(make_widget, tmp_path,
                                                                 tiny_ckpt, qtbot):
    folder = tmp_path / "A dir [x] #1"
    folder.mkdir()
    name = "my [cell] #1 50% é 中文.TIF"
    tifffile.imwrite(folder / name, blob_stack())
    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open(str(folder / name), plugin="napari")
    viewer.dims.set_point(0, 2)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 20, 20)
    assert widget._on_commit().ids == [1]
    saved = np.array(viewer.layers["segmentation"].data)
    assert (folder / f"{name}.sam-session.json").is_file()
    viewer.close()

    moved = tmp_path / "B moved"
    shutil.move(str(folder), str(moved))
    other, w2 = make_widget()
    pick_checkpoint(w2, tiny_ckpt)
    other.open(str(moved / name), plugin="napari")
    assert w2._resume_row.isVisibleTo(w2)
    assert "A saved session exists for this image (1 commit, label 1" in w2._resume_label.text()
    (resume,) = [b for b in w2._resume_row.findChildren(QPushButton) if b.text() == "Resume"]
    resume.click()
    assert w2.controller.status.startswith(f"Loaded the session {name}.sam-session.json "
                                           "(1 commit, label 1"), w2.controller.status
    assert np.array_equal(np.asarray(other.layers["segmentation"].data), saved)
