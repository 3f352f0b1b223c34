"""The dock after an autosave failed on a full disk: the status keeps saying autosave is off
at every commit, and ticking *Autosave next to the image* again (space freed) writes the
commits made meanwhile at once."""

from __future__ import annotations

import errno

import numpy as np
from qtpy.QtCore import QPoint, Qt
from sam_qt_helpers import commit_on, dock_on


def test_ticking_autosave_again_after_a_full_disk_saves_at_once(
        make_widget, stack_file, tiny_ckpt, tmp_path, monkeypatch, qtbot):
    from napari_sam import session as S

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    viewer, widget = dock_on(make_widget, stack_file, tiny_ckpt)
    c = widget.controller
    monkeypatch.setattr(c, "notify_warning", lambda text: None)
    write = S.write_session

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(S, "write_session", full)
    commit_on(viewer, widget, 1)
    assert not widget._autosave.isChecked()
    commit_on(viewer, widget, 2, row=44)
    assert widget._status.text().endswith(
        "Autosave is still off since it failed (No space left on device): turn it on again "
        "once there is room (it saves at once), or use 'Save session'.")
    monkeypatch.setattr(S, "write_session", write)  # space freed
    box = widget._autosave
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    assert box.isChecked() and c.wait_autosave(60)
    saved = S.read_session(S.session_file_for(stack_file))
    layer = np.asarray(c.target_layer.data)
    assert len(saved.operations) == 2 and np.array_equal(saved.labels, layer)
    assert sorted(np.unique(layer)) == [0, 1, 2]
    assert widget._status.text() == "Autosave is on: the session (2 commits) is autosaved."
