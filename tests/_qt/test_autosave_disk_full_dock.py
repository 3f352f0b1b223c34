"""The dock on a full disk: after an autosave failed, autosave tries again at each commit and
on a timer and says so, and writes the commits made meanwhile on its own once space is freed;
an embedding store that cannot be written is named."""

from __future__ import annotations

import errno

import numpy as np
from sam_qt_helpers import commit_on, dock_on, dock_on_a_full_disk


def test_after_a_full_disk_autosave_writes_again_on_its_own_once_space_is_freed(
        make_widget, stack_file, tiny_ckpt, tmp_path, monkeypatch, qtbot):
    """Autosave turned off after a failed write; space freed, nothing was written until the
    user ticked the box again. Now the box stays ticked, the status says that autosave tries
    again, and the dock's timer writes the commits once it can, and says so."""
    import napari_sam.annotate.autosave_retry as R
    from napari_sam import session as S

    monkeypatch.setattr(R, "RETRY_FIRST_S", 1.0)
    viewer, widget, write = dock_on_a_full_disk(make_widget, stack_file, tiny_ckpt, tmp_path,
                                                monkeypatch)
    c = widget.controller
    commit_on(viewer, widget, 1)
    assert widget._autosave.isChecked()
    assert "failed (No space left on device); it tries again at the next commit and in 1 s" \
        in widget._status.text()
    qtbot.waitUntil(lambda: "failed again" in widget._status.text(), timeout=30_000)
    assert "it tries again at the next commit and in 2 s" in widget._status.text()  # (x2)
    commit_on(viewer, widget, 2, row=44)
    monkeypatch.setattr(S, "write_session", write)  # space freed: no commit after
    qtbot.waitUntil(lambda: "works again" in widget._status.text(), timeout=60_000)
    assert widget._status.text().startswith("Committed") and (
        "failed" not in widget._status.text())
    assert widget._status.text().endswith(" Autosave works again: the session (2 commits) is "
                                          "autosaved in blobs.tif.sam-session.json.")
    saved = S.read_session(S.session_file_for(stack_file))
    layer = np.asarray(c.target_layer.data)
    assert len(saved.operations) == 2 and np.array_equal(saved.labels, layer)
    assert sorted(np.unique(layer)) == [0, 1, 2]
    assert c.autosave_retry_in() is None and widget._autosave.isChecked()


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


def test_a_retry_timer_that_fires_early_still_writes_the_autosave(
        make_widget, stack_file, tiny_ckpt, tmp_path, monkeypatch, qtbot):
    """Qt fires a timer of 20 s or more on a whole second (up to about 1 s early: 30 s, 60 s,
    ..., 10 min, every retry after the first): the retry then was not due yet and did
    nothing, and nothing armed the timer again, so the autosave said 'it tries again in 30 s'
    and never did (until the next commit). Here the session's clock runs 1 s behind the
    timer's, as on such an early timeout."""
    import time
    import types

    import napari_sam.annotate.autosave_retry as R
    from napari_sam import session as S

    monkeypatch.setattr(R, "RETRY_FIRST_S", 1.0)
    behind = [0.0]
    monkeypatch.setattr(R, "time", types.SimpleNamespace(
        monotonic=lambda: time.monotonic() - behind[0]))
    viewer, widget, write = dock_on_a_full_disk(make_widget, stack_file, tiny_ckpt, tmp_path,
                                                monkeypatch)
    commit_on(viewer, widget, 1)
    assert "it tries again at the next commit and in 1 s" in widget._status.text()
    behind[0] = 1.0  # (the timer, armed for 1 s, fires when the session says 1 s is left)
    monkeypatch.setattr(S, "write_session", write)  # space freed: no commit after
    qtbot.waitUntil(lambda: "works again" in widget._status.text(), timeout=10_000)
    saved = S.read_session(S.session_file_for(stack_file))
    assert len(saved.operations) == 1
    assert np.array_equal(saved.labels, np.asarray(widget.controller.target_layer.data))
