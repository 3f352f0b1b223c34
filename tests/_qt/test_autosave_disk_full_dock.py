"""The dock on a full disk: after an autosave failed the status keeps saying autosave is off
at every commit, and ticking *Autosave next to the image* again (space freed) writes the
commits made meanwhile at once; an embedding store that cannot be written is named."""

from __future__ import annotations

import errno

import numpy as np
from qtpy.QtCore import QPoint, Qt
from sam_qt_helpers import commit_on, dock_on, dock_on_a_full_disk


def test_ticking_autosave_again_after_a_full_disk_saves_at_once(
        make_widget, stack_file, tiny_ckpt, tmp_path, monkeypatch, qtbot):
    from napari_sam import session as S

    viewer, widget, write = dock_on_a_full_disk(make_widget, stack_file, tiny_ckpt, tmp_path,
                                                monkeypatch)
    c = widget.controller
    commit_on(viewer, widget, 1)
    assert not widget._autosave.isChecked()
    commit_on(viewer, widget, 2, row=44)
    assert widget._status.text().endswith(
        "Autosave is still off since it failed (No space left on device): turn it on again "
        "once it can write (space, permissions; it saves at once), or use 'Save session'.")
    monkeypatch.setattr(S, "write_session", write)  # space freed
    box = widget._autosave
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    assert box.isChecked() and c.wait_autosave(60)
    saved = S.read_session(S.session_file_for(stack_file))
    layer = np.asarray(c.target_layer.data)
    assert len(saved.operations) == 2 and np.array_equal(saved.labels, layer)
    assert sorted(np.unique(layer)) == [0, 1, 2]
    assert widget._status.text() == "Autosave is on: the session (2 commits) is autosaved."


def test_an_embedding_store_on_a_full_disk_says_which_and_what_to_do(
        make_widget, stack_file, tiny_ckpt, tmp_path, monkeypatch):
    """It said "Segment Anything: unexpected OSError: [Errno 28] No space left on device.
    Please report it at the project's issue tracker", naming no store."""
    import zarr

    viewer, widget = dock_on(make_widget, stack_file, tiny_ckpt)
    store = tmp_path / "emb.zarr"
    widget._store.setText(str(store))
    widget._on_store_changed()

    def full(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr.Array, "__setitem__", full)
    widget._on_compute()
    assert (f"Could not write {store}: no space left on the device of {tmp_path}; free space "
            "there or pick a folder on another disk (for the 'Embedding store': or clear it to "
            "keep the embeddings in memory), then try again.") in widget._status.text()
    assert "unexpected" not in widget._status.text()
