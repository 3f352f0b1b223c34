"""The dock's *Embedding store* field takes a path as a user types it: ``~`` is the home
folder, and the field shows where the store is (session 41's walk-through: ``~/emb.zarr``
typed there made a folder named ``~`` in the folder napari was started from)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from sam_qt_helpers import blob_stack, use_predictor


def test_a_tilde_store_is_in_the_home_folder(make_widget, tiny_predictor, tmp_path, qtbot,
                                              monkeypatch):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    viewer, widget = make_widget(blob_stack(z=3), name="blobs")
    use_predictor(widget, tiny_predictor)
    qtbot.keyClicks(widget._store, "~/emb.zarr")
    qtbot.keyClick(widget._store, Qt.Key_Return)  # editingFinished, as leaving the field
    assert widget._store.text() == str(home / "emb.zarr")
    widget._on_compute()
    assert widget.controller.ready(range(3)), widget.controller.status
    assert (home / "emb.zarr").is_dir()
    assert list(cwd.iterdir()) == []
    qtbot.keyClick(widget._store, Qt.Key_A, Qt.ControlModifier)
    qtbot.keyClicks(widget._store, "rel.zarr")  # relative: to napari's folder, shown whole
    qtbot.keyClick(widget._store, Qt.Key_Return)
    assert widget._store.text() == str(cwd / "rel.zarr")
