"""Multiscale (pyramid) image layers in the dock: napari opens an OME-Zarr with several
resolution levels as one multiscale layer (``layer.data`` a list of levels, level 0 the
full resolution). The dock segments level 0, in its pixel grid, with the layer's scale.

Session 39's walk-through: the dock refused such a layer ("multiscale (pyramid) images are
not supported yet"), and its advice (add ``layer.data[0]`` as a layer of its own) lost the
voxel size and the autosave beside the file, saying nothing about either."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from sam_qt_helpers import blob_stack, canvas_click, press_key, use_predictor

from napari_sam.cli import main

SCALE = (2.0, 0.5, 0.5)


def _disc(center=(20, 20), size: int = 64) -> np.ndarray:
    """(size, size) bool: :func:`blob_stack`'s disc at ``center`` (radius 8)."""
    yy, xx = np.mgrid[:size, :size]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 < 64


def _iou(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a & b).sum() / max((a | b).sum(), 1))


def _levels(stack: np.ndarray) -> list[np.ndarray]:
    """Level 0 and the 2x and 4x downsampled levels (rows and columns) of ``stack``."""
    return [stack, stack[:, ::2, ::2].copy(), stack[:, ::4, ::4].copy()]


def _click_commit(viewer, widget, z: int, row: float, col: float) -> None:
    """Show slice ``z``, click data pixel (row, col) of level 0 on the canvas (world
    coordinates: times the layer's scale), press Shift+C."""
    c = widget.controller
    viewer.dims.set_point(0, z * SCALE[0])
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, row * SCALE[1], col * SCALE[2])
    widget.wait()
    assert c.previews, c.status
    press_key(viewer, "Shift-C")
    widget.wait()
    assert c.status.startswith("Committed label"), c.status


def test_a_pyramid_layer_is_segmented_at_full_resolution(make_widget, demo_available, qtbot):
    stack = blob_stack()  # (6, 64, 64)
    viewer, widget = make_widget(_levels(stack), sync=False, multiscale=True, scale=SCALE,
                                 name="pyramid")
    c = widget.controller
    widget.wait()
    assert viewer.layers["pyramid"].multiscale and c.image_layer is viewer.layers["pyramid"]
    assert c.source is not None and c.source.shape == (6, 64, 64), c.status
    _click_commit(viewer, widget, 3, 20, 20)

    labels = viewer.layers["segmentation"]
    assert labels.data.shape == (6, 64, 64)  # level 0's grid
    assert np.allclose(labels.scale, SCALE) and np.allclose(labels.translate, 0)
    assert np.allclose(c.points_layer.scale, SCALE)
    iou = _iou(np.asarray(labels.data[3]) == 1, _disc())
    print(f"one click on the disc of the pyramid's level 0: IoU {iou:.3f}")
    assert iou >= 0.8, iou
    assert not np.asarray(labels.data[[0, 1, 2, 4, 5]]).any()

    # propagate a click on the other disc through the stack: every slice, level 0's grid
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 44 * SCALE[1], 44 * SCALE[2])
    widget.wait()
    widget._on_propagate()
    qtbot.waitUntil(lambda: c.job is None and c.volume is not None, timeout=120_000)
    press_key(viewer, "Shift-C")
    widget.wait()
    assert c.status.startswith("Committed label"), c.status
    ious = [_iou(np.asarray(labels.data[z]) == 2, _disc((44, 44))) for z in range(6)]
    print("propagated through the pyramid's level 0: IoU per slice",
          [round(v, 3) for v in ious])
    assert min(ious) >= 0.8, ious


def test_picking_a_pyramid_says_once_which_level_is_segmented(make_widget, tiny_predictor):
    viewer, widget = make_widget(blob_stack(), name="flat")
    use_predictor(widget, tiny_predictor)
    said = []
    widget.controller.status_changed.connect(said.append)
    viewer.add_image(_levels(blob_stack()), multiscale=True, scale=SCALE, name="pyramid")
    widget._image.setCurrentIndex(widget._image.findText("pyramid"))
    widget.wait()
    c = widget.controller
    assert c.image_layer is viewer.layers["pyramid"], c.status
    note = ("'pyramid' is a multiscale image (3 levels): SAM segments its full-resolution "
            "level (64 x 64 px).")
    picked = [t for t in said if note in t]  # the line said when it was picked
    assert len(picked) == 1 and picked[0].startswith(note), said
    assert np.allclose(c.points_layer.scale, SCALE)
    _click_commit(viewer, widget, 1, 20, 20)  # later lines do not repeat it
    assert note not in c.status and viewer.layers["segmentation"].data.shape == (6, 64, 64)


def _ome_zarr(path, levels: list[np.ndarray]):
    """An OME-Zarr 0.4 group (zarr format 2) with ``levels`` "0", "1", ... (each level
    halves rows and columns) and voxel size :data:`SCALE` at level 0."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    for k, arr in enumerate(levels):
        group.create_array(str(k), shape=arr.shape, dtype=arr.dtype,
                           chunks=(1, *arr.shape[1:]))[...] = arr
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [SCALE[0], SCALE[1] * 2 ** k, SCALE[2] * 2 ** k]}]}
        for k in range(len(levels))]}]
    return path


def test_an_ome_zarr_opened_by_napari_autosaves_beside_the_store(make_widget, demo_available,
                                                                  tmp_path):
    stack = blob_stack().astype(np.uint16)
    store = _ome_zarr(tmp_path / "nuclei.zarr", _levels(stack))
    viewer, widget = make_widget(sync=False)
    viewer.open(str(store), plugin="napari")  # napari's own reader
    widget.wait()
    layer = viewer.layers["nuclei"]
    if not layer.multiscale:
        pytest.skip("napari's reader opened the OME-Zarr as a single-level layer")
    c = widget.controller
    assert c.image_layer is layer and c.source.shape == (6, 64, 64), c.status
    scale = np.asarray(layer.scale, float)  # napari's reader: 1, or the file's voxel size
    assert "'nuclei' is a multiscale image (3 levels)" in c.status, c.status
    viewer.dims.set_point(0, 3 * scale[0])
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 44 * scale[1], 44 * scale[2])
    widget.wait()
    press_key(viewer, "Shift-C")
    widget.wait()
    assert c.status.startswith("Committed label"), c.status
    labels = viewer.layers["segmentation"]
    assert labels.data.shape == (6, 64, 64) and np.allclose(labels.scale, scale)
    assert _iou(np.asarray(labels.data[3]) == 1, _disc((44, 44))) >= 0.8
    assert c.wait_autosave(60)
    widget.wait()
    sidecar = tmp_path / "nuclei.zarr.sam-session.json"
    assert sidecar.is_file(), sorted(p.name for p in tmp_path.iterdir())
    image = json.loads(sidecar.read_text())["image"]
    assert image["path"] == str(store) and image["shape"] == [6, 64, 64]

    # the command line replays the autosave on the store (its level 0): the same labels
    out = tmp_path / "out"
    code = main(["segment", str(store), "--prompts", str(sidecar), "-o", str(out),
                 "--device", "cpu", "-q"])
    assert code == 0
    assert np.array_equal(tifffile.imread(out / "nuclei_labels.tif"), np.asarray(labels.data))


def _tiled_commit(make_widget, data, **kwargs) -> np.ndarray:
    """Open ``data`` (at scale 0.5) in the dock, click data pixel (400, 300) of its full
    resolution (the embeddings are tiled), commit; the labels layer's data."""
    viewer, widget = make_widget(data, sync=False, scale=(0.5, 0.5), name="big", **kwargs)
    widget.wait()
    c = widget.controller
    assert c.source.shape == (1, 640, 640), c.status
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 400 * 0.5, 300 * 0.5)
    widget.wait()
    assert c.emb is not None and c.emb.tiling is not None, c.status  # tiled
    press_key(viewer, "Shift-C")
    widget.wait()
    labels = viewer.layers["segmentation"]
    assert labels.data.shape == (640, 640) and np.allclose(labels.scale, (0.5, 0.5))
    return np.asarray(labels.data).copy()


def test_a_pyramid_larger_than_the_model_input_is_tiled_at_level_0(make_widget, demo_available):
    """A 2D pyramid whose level 0 (640 x 640) is larger than the demo model's 256 px input:
    level 0 is embedded in tiles, as any large image, and a click gives pixel for pixel the
    labels the same click gives on level 0 opened as a single-level layer."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:640, :640]
    disc = (yy - 400) ** 2 + (xx - 300) ** 2 < 15 ** 2
    image = (rng.normal(20, 3, (640, 640)) + 100 * disc).astype(np.float32)
    levels = [image, image[::2, ::2].copy(), image[::4, ::4].copy()]
    pyramid = _tiled_commit(make_widget, levels, multiscale=True)
    flat = _tiled_commit(make_widget, image)
    got = pyramid == 1
    print(f"a click on a tiled 640 x 640 level 0: {got.sum()} px, IoU with the disc "
          f"{_iou(got, disc):.3f} (the demo model's tiled mask; the same on the flat layer)")
    assert got.any() and (got & disc).sum() >= 0.9 * got.sum()  # on the disc
    assert np.array_equal(pyramid, flat)


def test_a_time_lapse_pyramid_with_channels_is_a_movie_that_keeps_the_voxel_size(
        make_widget, demo_available):
    """A (T, C, Z, Y, X) pyramid added with napari's ``channel_axis`` (one (T, Z, Y, X)
    multiscale layer per channel; session 40's walk-through), its time axis in seconds: the
    dock takes each 4D layer as a movie of 2 time points (napari's unit of axis 0 is time;
    until session 42 it refused them, 2 being short enough to be channels, and gave a
    console line adding one time point). A click at time point 1 commits into labels aligned
    with the original: its voxel size, position and units kept."""
    stack = blob_stack()  # (6, 64, 64)
    movie = np.stack([stack, stack])[:, None].repeat(2, axis=1)  # (T=2, C=2, 6, 64, 64)
    levels = [movie, movie[..., ::2, ::2].copy()]
    viewer, widget = make_widget(sync=False)
    viewer.add_image(levels, multiscale=True, channel_axis=1, name=["nuc", "mem"],
                     scale=(60.0, *SCALE), translate=(0.0, 4.0, 1.0, 3.0),
                     units=("second", "micrometer", "micrometer", "micrometer"))
    widget.wait()
    c = widget.controller
    name = c.image_name()
    assert c.source is not None and c.source.n_times == 2, c.status
    assert f"'{name}' is a movie of 2 time points" in c.status, c.status
    viewer.dims.set_point(0, 60.0)  # time point 1
    viewer.dims.set_point(viewer.dims.ndim - 3, 4.0 + 3 * SCALE[0])
    widget.wait()
    assert c.source.time_point == 1, c.status
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 1.0 + 20 * SCALE[1], 3.0 + 20 * SCALE[2])
    widget.wait()
    assert c.previews, c.status
    press_key(viewer, "Shift-C")
    widget.wait()
    assert c.status.startswith("Committed label 1"), c.status
    labels = viewer.layers["segmentation"]
    np.testing.assert_allclose(labels.scale, (60.0, *SCALE))
    np.testing.assert_allclose(labels.translate, (0.0, 4.0, 1.0, 3.0))
    data = np.asarray(labels.data)
    iou = _iou(data[1, 3] == 1, _disc())
    assert iou >= 0.8 and not data[0].any() and not data[1, [0, 1, 2, 4, 5]].any(), iou
