"""The labels of an image keep its stack axis when another image of its shape is picked
(session 46): *Stack axis is* now follows the image picked, and the dock marked every labels
layer of the picked image's shape with it (``metadata["stack_axis"]``), so picking a volume
beside a time series of its shape marked the time series' segmentation z: saved as a ZYX
TIFF, its frames were read as slices."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import blob_stack

from napari_sam._writer import write_labels_tiff


def pick(widget, name: str) -> None:
    """Pick image layer ``name`` in the dock's image box, as the user does."""
    widget._image.setCurrentIndex(widget._image.findData(name))
    widget.wait()


def test_a_volume_picked_does_not_mark_the_time_series_labels(make_widget, tmp_path):
    """A time series' labels stay t once a volume of its shape is picked (also when its
    stack axis is changed by hand); the volume's own labels are z; the time series' labels
    follow it when it is picked again and set z by hand."""
    import tifffile

    viewer, widget = make_widget(blob_stack(z=8), name="lapse", sync=False, preload=False,
                                 axis_labels=("t", "y", "x"))
    c = widget.controller
    seg = viewer.add_labels(np.zeros((8, 64, 64), np.uint16), name="seg")
    widget.wait()
    assert seg.metadata["stack_axis"] == "t"
    viewer.add_image(blob_stack(z=8, seed=1), name="vol")
    pick(widget, "vol")
    assert c.image_layer.name == "vol" and c.axis_kind == "z", c.status
    assert seg.metadata["stack_axis"] == "t"
    own = viewer.add_labels(np.zeros((8, 64, 64), np.uint16), name="vol seg")
    widget.wait()
    assert own.metadata["stack_axis"] == "z"
    widget._axis_kind.setCurrentIndex(1)
    widget._axis_kind.setCurrentIndex(0)
    assert seg.metadata["stack_axis"] == "t" and own.metadata["stack_axis"] == "z"
    path = tmp_path / "seg.tif"
    write_labels_tiff(str(path), seg.data, {"metadata": seg.metadata})
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "TYX"
    pick(widget, "lapse")
    widget._axis_kind.setCurrentIndex(0)  # the user: lapse is a volume after all
    assert seg.metadata["stack_axis"] == "z" and own.metadata["stack_axis"] == "z"


def test_the_labels_of_a_removed_image_follow_the_image_picked(make_widget):
    """Once the time series is removed, its labels are the picked image's again."""
    viewer, widget = make_widget(blob_stack(z=8), name="lapse", sync=False, preload=False,
                                 axis_labels=("t", "y", "x"))
    seg = viewer.add_labels(np.zeros((8, 64, 64), np.uint16), name="seg")
    widget.wait()
    viewer.add_image(blob_stack(z=8, seed=1), name="vol")
    pick(widget, "vol")
    viewer.layers.remove("lapse")
    widget.wait()
    widget._axis_kind.setCurrentIndex(1)
    assert seg.metadata["stack_axis"] == "t"
    widget._axis_kind.setCurrentIndex(0)
    assert seg.metadata["stack_axis"] == "z"
