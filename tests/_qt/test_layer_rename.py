"""Layers renamed in napari's layer list while the dock is open: the dock's 'Image' and
'Labels layer' boxes follow the new names and keep the layers the user picked (the boxes
hold layer names, so a stale name once read as "that layer is gone")."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, use_predictor

pytest.importorskip("napari")


def test_renamed_image_and_labels_layers_stay_picked_under_their_new_names(make_widget,
                                                                          tiny_predictor):
    viewer, widget = make_widget(blob_stack(z=4), name="first")
    use_predictor(widget, tiny_predictor)
    viewer.add_image(blob_stack(z=4), name="second")
    widget._image.setCurrentIndex(widget._image.findData("first"))
    c = widget.controller
    picked = viewer.layers["first"]
    assert c.image_layer is not None and c.image_layer.name == "first"
    mine = viewer.add_labels(np.zeros((4, 64, 64), np.uint32), name="mine")
    widget._target.setCurrentIndex(widget._target.findText("mine"))
    widget._on_target_changed()
    assert c.target_layer is mine

    picked.name = "nuclei"
    mine.name = "my nuclei"
    assert widget._image.currentText() == "nuclei"
    assert [widget._image.itemText(i) for i in range(widget._image.count())] == [
        "nuclei", "second"]
    assert c.image_layer.name == "nuclei" and c.image_layer.data is picked.data
    assert widget._target.currentText() == "my nuclei"
    assert c.target_layer is mine

    # a later change of the layer list keeps both picks
    viewer.add_image(blob_stack(z=4), name="third")
    assert widget._image.currentText() == "nuclei" and c.image_layer.data is picked.data
    assert widget._target.currentText() == "my nuclei" and c.target_layer is mine
