"""Review s20 of the dock with SAM 2 and checkpoint files, driven like a user (the dock
opened from the plugin menu, a file picked in 'Model', jobs in worker threads): propagating
again after editing a slice of the image in place, a truncated SAM 2 checkpoint picked, and
a checkpoint trained from the demo model (not the demo)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sam_qt_helpers import blob_stack

from sam2_checkpoint import save_sam2_checkpoint

pytestmark = pytest.mark.timeout(600)


def _choose_file(widget, path):
    """Pick a checkpoint file in 'Model', as the Model box's file dialog does."""
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(path=str(path))


def test_propagating_again_after_a_slice_is_edited_in_place_matches_a_fresh_run(
        make_widget, tmp_path, qtbot):
    path = save_sam2_checkpoint(tmp_path / "sam2.pt", "present")
    stack = blob_stack(z=5, size=40)
    viewer, widget = make_widget(stack.copy(), sync=False, preload=False, name="blobs")
    image = viewer.layers["blobs"]
    c = widget.controller
    _choose_file(widget, path)
    viewer.dims.set_point(0, 1)
    c.points_layer.add([1, 14, 14])
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=60_000)

    def propagate():
        widget._on_propagate()
        qtbot.waitUntil(lambda: c.job is None and c.volume is not None, timeout=120_000)
        return np.asarray(c.volume.labels).copy()

    propagate()  # the slices' features are kept
    image.data[3] = image.data[3][::-1, ::-1].copy()  # the user edits slice 3 in place
    image.refresh()
    kept = propagate()
    c.drop_sam2_features()
    fresh = propagate()
    assert (kept == 1).any() and np.array_equal(kept, fresh)


def test_a_truncated_sam2_checkpoint_is_reported_when_picked(make_widget, tmp_path,
                                                             notifications, tiny_predictor):
    from sam_qt_helpers import use_predictor

    good = save_sam2_checkpoint(tmp_path / "sam2.pt")
    cut = tmp_path / "sam2_cut.pt"
    cut.write_bytes(good.read_bytes()[:200_000])
    viewer, widget = make_widget(blob_stack(z=3, size=40), preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    before = c.model_choice
    _choose_file(widget, cut)
    message = ("sam2_cut.pt cannot be read as a PyTorch checkpoint (RuntimeError): a truncated "
               "download or another file format? Download it again")
    assert any(message in m for _, m in notifications)
    assert c.status.startswith(f"Failed: Reading the checkpoint sam2_cut.pt. {message}")
    assert c.model_choice == before  # the model in use stays
    assert widget._model.findText("file: sam2_cut.pt") == -1  # not offered as a model
    assert widget._model.currentData() == before  # and 'Model' shows it again


def test_a_checkpoint_trained_from_the_demo_is_not_shown_as_the_demo(make_widget, tmp_path,
                                                                      demo_available):
    import torch

    from napari_sam.models.checkpoint import read_checkpoint

    state, _ = read_checkpoint(demo_available)
    tuned = tmp_path / "tuned.pt"
    torch.save({k: v.float() + (0.01 if k.endswith(".bias") else 0.0)
                for k, v in state.items()}, tuned)
    shutil.copy(demo_available.with_suffix(".json"), tmp_path / "tuned.json")
    viewer, widget = make_widget(blob_stack(z=2), name="img")
    c = widget.controller
    _choose_file(widget, tuned)
    widget._on_compute()
    assert c.predictor.model.config.encoder == "cnn" and c.ready([0, 1])
    assert not c.using_demo and widget._demo.isHidden()
    assert c.status.startswith("Embeddings ready") and "[demo model]" not in c.status
    _choose_file(widget, demo_available)  # the bundled file itself, by its path: the demo
    widget._on_compute()
    assert c.using_demo and not widget._demo.isHidden()
    assert c.status.endswith("[demo model]")


def test_a_cancelled_file_dialog_leaves_the_model_in_use_shown(make_widget, monkeypatch):
    """'Checkpoint file...' then Cancel in the file dialog: 'Model' shows the model in use
    again (it stayed on 'Checkpoint file...', a model that is not in use)."""
    from qtpy.QtWidgets import QFileDialog

    viewer, widget = make_widget(blob_stack(z=2), preload=False, name="img")
    before = widget.controller.model_choice
    assert before is not None
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *args, **kwargs: ("", "")))
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed()
    assert widget.controller.model_choice == before
    assert widget._model.currentData() == before
