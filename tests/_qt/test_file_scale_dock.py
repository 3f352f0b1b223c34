"""The voxel size of an image's file, dropped by napari's reader, is set on the layer by the
dock, so labels committed and saved from napari keep it as the command line's outputs do
(session 32's walk-through: a CT volume of 12.5 µm voxels gave labels without a voxel size
from the dock, with it from `napari-sam segment`)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from sam_qt_helpers import blob_stack

from napari_sam.io import read_image


def _imagej(path, data, axes, spacing, pixel):
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / pixel, 1 / pixel),
                     metadata={"axes": axes, "spacing": spacing, "unit": "um"})


def test_a_ct_volumes_voxel_size_reaches_the_saved_labels(make_widget, demo_available,
                                                          tmp_path):
    path = tmp_path / "ct.tif"
    _imagej(path, blob_stack(z=6), "ZYX", 12.5, 12.5)
    viewer, widget = make_widget(sync=False)
    viewer.open(str(path), plugin="napari")
    widget.wait()
    layer, c = viewer.layers["ct"], widget.controller
    assert tuple(layer.scale) == pytest.approx((12.5, 12.5, 12.5))
    assert [str(u) for u in layer.units] == ["micrometer"] * 3
    assert ("Voxel size 12.5 x 12.5 x 12.5 um (ZYX) from the file of 'ct' (napari's reader "
            "dropped it): the layer's scale is set, and labels made here keep it.") in c.status
    assert tuple(c.points_layer.scale) == pytest.approx((12.5, 12.5, 12.5))
    c.go_to_slice(3)
    widget.wait()
    c.add_point(3, 20, 20)
    widget.wait()
    assert c.previews and c.previews[0].z == 3
    c.commit()
    widget.wait()
    labels = viewer.layers["segmentation"]
    assert tuple(labels.scale) == pytest.approx((12.5, 12.5, 12.5))
    assert labels.data[3, 20, 20] == 1
    out = tmp_path / "ct_labels.tif"
    labels.save(str(out), plugin="napari-sam-stacks")
    back = read_image(out)
    assert back.pixel_size == pytest.approx((12.5, 12.5, 12.5)) and back.unit == "um"


def test_a_hyperstack_scales_its_spatial_axes_only_and_a_scaled_layer_is_kept(
        make_widget, tiny_predictor, tmp_path):
    path = tmp_path / "cells.tif"
    _imagej(path, np.stack([blob_stack(z=4), blob_stack(z=4, seed=1)], axis=1), "ZCYX",
            2.0, 0.5)
    viewer, widget = make_widget(sync=True, preload=False)
    viewer.open(str(path), plugin="napari")
    layer = viewer.layers["cells"]
    assert tuple(layer.scale) == pytest.approx((2.0, 1.0, 0.5, 0.5))
    assert (widget.controller.channel_axis, widget.controller.channel) == (1, 0)

    scaled = tmp_path / "scaled.tif"
    _imagej(scaled, blob_stack(z=4), "ZYX", 3.0, 0.25)
    viewer.open(str(scaled), plugin="napari")
    assert tuple(viewer.layers["scaled"].scale) == (1, 1, 1)  # until the dock uses it
    widget._image.setCurrentIndex(widget._image.findData("scaled"))
    assert tuple(viewer.layers["scaled"].scale) == pytest.approx((3.0, 0.25, 0.25))
    viewer.layers["scaled"].scale = (1, 2, 2)  # the user's own scale
    widget._image.setCurrentIndex(widget._image.findData("cells"))
    widget._image.setCurrentIndex(widget._image.findData("scaled"))
    assert tuple(viewer.layers["scaled"].scale) == pytest.approx((1, 2, 2))


def test_labels_opened_beside_the_image_keep_it_unscaled(make_widget, tiny_predictor,
                                                         tmp_path):
    """Labels opened beside a CT volume (napari's reader: scale 1) for proofreading: scaling
    the image alone would no longer line them up (the reviewer's catch); the dock says so and
    leaves both."""
    from sam_qt_helpers import use_predictor

    path = tmp_path / "ct.tif"
    _imagej(path, blob_stack(z=6), "ZYX", 12.5, 12.5)
    tifffile.imwrite(tmp_path / "ct_labels.tif", (blob_stack(z=6) > 100).astype(np.uint16))
    viewer, widget = make_widget(sync=True, preload=False)
    use_predictor(widget, tiny_predictor)
    viewer.open(str(tmp_path / "ct_labels.tif"), plugin="napari", layer_type="labels")
    viewer.open(str(path), plugin="napari")
    widget._image.setCurrentIndex(widget._image.findData("ct"))
    assert widget.controller.image_layer.name == "ct"
    assert tuple(viewer.layers["ct"].scale) == (1, 1, 1)
    assert ("Voxel size 12.5 x 12.5 x 12.5 um (ZYX) from the file of 'ct' (napari's reader "
            "dropped it): not set on the layer, as 'ct_labels' of the same size is at scale 1"
            ) in widget.controller.status, widget.controller.status


def test_picking_an_image_reads_its_files_metadata_once(make_widget, tiny_predictor, tmp_path,
                                                        monkeypatch):
    """The dock asks a picked image's file for its stack axis, channel axis and voxel size:
    three reads of a large TIFF's metadata (session 32's reread); one now, and a file
    written anew is read anew."""
    from napari_sam.io import readers

    path = tmp_path / "cells.tif"
    _imagej(path, np.stack([blob_stack(z=4), blob_stack(z=4, seed=1)], axis=1), "ZCYX",
            2.0, 0.5)
    reads = []
    real = readers.read_image
    monkeypatch.setattr(readers, "read_image",
                        lambda p, *a, **k: reads.append(str(p)) or real(p, *a, **k))
    viewer, widget = make_widget(sync=True, preload=False)
    viewer.open(str(path), plugin="napari")
    assert tuple(viewer.layers["cells"].scale) == pytest.approx((2.0, 1.0, 0.5, 0.5))
    assert (widget.controller.channel_axis, widget.controller.axis_kind) == (1, "z")
    assert reads == [str(path)]
    _imagej(path, np.stack([blob_stack(z=5), blob_stack(z=5, seed=1)], axis=1), "TCYX",
            1.0, 0.25)
    assert readers.file_header(path).axes == "TCYX" and len(reads) == 2


def test_a_file_rewritten_with_its_time_stamp_kept_is_read_again(tmp_path):
    """cp -p, rsync -t and tar keep a file's size and modification time: the header of the
    file before was kept (the reviewer's catch); its change time tells them apart."""
    import os

    from napari_sam.io import file_header

    path = tmp_path / "cells.tif"
    data = np.stack([blob_stack(z=4), blob_stack(z=4, seed=1)], axis=1)
    _imagej(path, data, "ZCYX", 2.0, 0.5)
    assert file_header(path).pixel_size == pytest.approx((2.0, 0.5, 0.5))
    stat = os.stat(path)
    _imagej(path, data, "ZCYX", 3.0, 0.5)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size
    assert file_header(path).pixel_size == pytest.approx((3.0, 0.5, 0.5))


def test_the_view_follows_the_voxel_size_it_sets(make_widget, tmp_path):
    """napari fits an image it opens at scale 1; the dock's 0.5 um pixels then left it in the
    top-left quarter of the canvas, and its 2 um z step moved the slider to slice 2 of 9."""
    path = tmp_path / "stack.tif"
    _imagej(path, np.zeros((9, 120, 160), np.uint16), "ZYX", 2.0, 0.5)
    viewer, widget = make_widget()
    viewer.open(str(path), plugin="napari")  # napari shows the middle slice, fitted
    layer = viewer.layers["stack"]
    assert tuple(layer.scale) == pytest.approx((2.0, 0.5, 0.5))
    assert round(layer.world_to_data(viewer.dims.point)[0]) == 4  # the slice napari showed
    center, zoom = tuple(viewer.camera.center), viewer.camera.zoom
    viewer.reset_view()  # what napari shows an image opened at this scale
    assert center[1:] == pytest.approx(tuple(viewer.camera.center)[1:], abs=0.5)
    assert zoom == pytest.approx(viewer.camera.zoom, rel=0.02)


def _camera(viewer):
    cam = getattr(viewer, "scene", viewer).camera  # (napari 0.9: viewer.camera deprecated)
    return tuple(cam.center), cam.zoom


def test_a_second_file_picked_later_leaves_the_view_as_it_is(make_widget, tmp_path):
    """The view napari fitted to the first file: picking the second (the same voxel size)
    scaled the camera and the sliders again, showing its top-left quarter and the last slice
    of both (reviewer of session 42)."""
    for name in ("a", "b"):
        _imagej(tmp_path / f"{name}.tif", np.zeros((9, 120, 160), np.uint16), "ZYX", 2.0, 0.5)
    viewer, widget = make_widget(preload=False)
    viewer.open(str(tmp_path / "a.tif"), plugin="napari")
    viewer.open(str(tmp_path / "b.tif"), plugin="napari")
    before, point = _camera(viewer), tuple(viewer.dims.point)
    widget._image.setCurrentIndex(widget._image.findText("b"))
    assert tuple(viewer.layers["b"].scale) == pytest.approx((2.0, 0.5, 0.5))
    assert _camera(viewer) == before and tuple(viewer.dims.point) == point
    assert round(viewer.layers["b"].world_to_data(viewer.dims.point)[0]) == 4  # (overlaid)


def test_a_volume_shown_in_3d_is_fitted_again(make_widget, tmp_path):
    _imagej(tmp_path / "v.tif", np.zeros((9, 120, 160), np.uint16), "ZYX", 2.0, 0.5)
    viewer, widget = make_widget(preload=False)
    viewer.dims.ndisplay = 3
    viewer.open(str(tmp_path / "v.tif"), plugin="napari")
    assert tuple(viewer.layers["v"].scale) == pytest.approx((2.0, 0.5, 0.5))
    shown = _camera(viewer)
    viewer.reset_view()
    assert shown[0] == pytest.approx(_camera(viewer)[0], abs=0.5)
    assert shown[1] == pytest.approx(_camera(viewer)[1], rel=0.02)
