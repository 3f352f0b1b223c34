"""A demo-architecture checkpoint picked in the dock without its metadata file: the warning
that its settings come from the demo model reached the console only (the registry's log);
the dock now shows it as a napari notification, once per loaded model."""

from __future__ import annotations

import shutil

import numpy as np
from sam_qt_helpers import canvas_click, pick_checkpoint

from napari_sam.models.registry import DEMO_NAME, where


def _disc_image() -> np.ndarray:
    yy, xx = np.mgrid[:96, :96]
    return np.where((yy - 48) ** 2 + (xx - 48) ** 2 < 15 ** 2, 200, 30).astype(np.uint8)


def test_a_checkpoint_without_its_json_says_so_in_the_dock(make_widget, notifications, qtbot,
                                                            tmp_path):
    alone = tmp_path / "round1.pt"
    shutil.copyfile(where(DEMO_NAME), alone)
    viewer, widget = make_widget(_disc_image(), sync=False, preload=False, name="disc")
    pick_checkpoint(widget, alone)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 48, 48)
    qtbot.waitUntil(lambda: widget.controller.job is None and widget.controller.predictor
                    is not None, timeout=120_000)
    said = [(s, m) for s, m in notifications if "no metadata file" in m]
    assert len(said) == 1, notifications
    severity, message = said[0]
    assert "warning" in severity.lower()
    assert str(alone) in message and "round1.json" in message and "Keep the .json" in message
    canvas_click(viewer, 40, 50)  # the model is loaded: no second note
    qtbot.waitUntil(lambda: widget.controller.job is None, timeout=60_000)
    assert len([m for _, m in notifications if "no metadata file" in m]) == 1
