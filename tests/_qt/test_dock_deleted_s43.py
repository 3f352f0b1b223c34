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


def _pending_dock(make_widget, monkeypatch, tiny_predictor, sync=True):
    """A dock on a 3-slice stack whose torch import has not finished (``(pending, viewer,
    widget)``), the tiny model chosen."""
    from sam_qt_helpers import blob_stack, use_predictor

    pending = _PendingImport()
    monkeypatch.setattr(torch_import_module, "_IMPORT", pending)
    viewer, widget = make_widget(blob_stack(z=3), sync=sync, preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    return pending, viewer, widget


def test_a_device_picked_before_torch_is_imported_in_a_deleted_dock_is_dropped(
        make_widget, monkeypatch, tiny_predictor, notifications):
    """A Device (or Precision) change waits for the torch import; napari closed meanwhile:
    the change found the deleted box ("unexpected RuntimeError: wrapped C/C++ object of type
    QComboBox has been deleted", an error notification, printed as napari quit)."""
    pending, _viewer, widget = _pending_dock(make_widget, monkeypatch, tiny_predictor)
    c = widget.controller
    device = c.device
    widget._device.setCurrentIndex(widget._device.findText("cpu"))
    widget._precision.setCurrentIndex(1)
    assert len(pending.waiting) >= 3, "the changes wait for the import"
    sip.delete(widget)
    pending.finish()
    assert notifications == []
    assert c.device == device  # nothing applied to the closed dock's session


def test_a_click_before_torch_is_imported_in_a_deleted_dock_is_not_previewed(
        make_widget, monkeypatch, tiny_predictor, notifications):
    """A click's preview waits for the torch import; the dock deleted meanwhile: the closed
    session decodes nothing (it previewed into the layers of a closed dock, or said "No image
    layer" as napari quit)."""
    pending, viewer, widget = _pending_dock(make_widget, monkeypatch, tiny_predictor)
    c = widget.controller
    viewer.dims.set_point(0, 1)
    c.points_layer.add([1, 20, 20])
    assert c.previews == [] and pending.waiting, "the preview waits for the import"
    sip.delete(widget)
    pending.finish()
    assert c.previews == [] and c.job is None
    assert notifications == []


def test_closing_napari_while_a_click_waits_for_a_job_previews_nothing(
        make_widget, tiny_predictor, qtbot, monkeypatch, notifications):
    """A click waits for the running embedding job; napari closed: the job is cancelled and,
    when it ends, the closed session decodes nothing (it tried: "No image layer: open an
    image ..." printed as napari quit)."""
    from sam_qt_helpers import blob_stack, held_encoder, use_predictor

    viewer, widget = make_widget(blob_stack(z=6), sync=False, preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    gate, entered, _fail = held_encoder(monkeypatch, tiny_predictor)
    viewer.dims.set_point(0, 3)
    job = c.compute_embeddings()
    assert entered.wait(60) and job.running and job.worker is not None
    c.points_layer.add([3, 20, 20])  # waits for the job
    viewer.close()  # File > Close Window (Qt deletes the dock without a closeEvent)
    qtbot.waitUntil(lambda: not widget._links, timeout=60_000)
    gate.set()
    qtbot.waitUntil(lambda: not job.running, timeout=60_000)
    qtbot.wait(200)  # what its end would start
    assert job.cancelled and c.job is None and c.previews == []
    assert notifications == []
