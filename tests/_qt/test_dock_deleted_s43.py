"""A dock deleted by napari (closing napari deletes its docks without a closeEvent) while the
torch import is still running: the callbacks waiting for it must find the dock closed, not
touch its deleted boxes (CI, session 42: "wrapped C/C++ object of type QComboBox has been
deleted" from the Device box, a traceback printed as napari quit)."""

from __future__ import annotations

import numpy as np
from qtpy import sip

from napari_sam._qt import torch_import as torch_import_module


class _PendingImport:
    """A torch import not finished yet: :meth:`finish` runs what waits for it."""

    error = None
    done = False

    def __init__(self):
        self.waiting = []

    def then(self, fn, eager=False):
        self.waiting.append(fn)

    def finish(self):
        self.done = True
        for fn in self.waiting:
            fn()


def test_a_dock_deleted_before_torch_is_imported_ignores_the_import(make_widget, monkeypatch):
    pending = _PendingImport()
    monkeypatch.setattr(torch_import_module, "_IMPORT", pending)
    image = np.random.default_rng(0).normal(20, 3, (3, 48, 48)).astype("float32")
    _viewer, widget = make_widget(image, preload=False)
    assert pending.waiting, "the dock waits for the import"
    assert widget._closed is False
    sip.delete(widget)  # what napari's close does to its docks, without a closeEvent
    assert sip.isdeleted(widget)
    pending.finish()  # raised RuntimeError: wrapped C/C++ object ... has been deleted
    assert widget._closed is True  # set by the dock's 'destroyed'
