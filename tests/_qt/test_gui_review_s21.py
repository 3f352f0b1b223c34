"""Review s21 of the dock's geometry, driven like a user (the dock opened from the plugin
menu, real mouse events on the canvas, jobs in worker threads where they matter): images
with rotate, shear or an affine, a transform changed after the dock opened, the 3D view, a
view of another plane than (Y, X), labels layers that do not fit the image, and 4D images."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, canvas_click, use_predictor

pytestmark = pytest.mark.timeout(600)


def _disc(size: int, centre, r: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < r * r


def _image(z: int, size: int, centre, seed: int = 0) -> np.ndarray:
    """(z, size, size) float32 noise with one bright disc at ``centre`` on every slice."""
    img = np.random.default_rng(seed).normal(20, 3, (z, size, size)).astype(np.float32)
    img[:, _disc(size, centre)] += 100
    return img


def _matrix(layer) -> np.ndarray:
    """The layer's data -> world transform as a homogeneous matrix (napari's public API)."""
    n = layer.ndim
    origin = np.asarray(layer.data_to_world(np.zeros(n)), float)
    out = np.eye(n + 1)
    out[:n, :n] = np.stack([np.asarray(layer.data_to_world(e), float) - origin
                            for e in np.eye(n)], axis=1)
    out[:n, n] = origin
    return out


def _click_data(viewer, image, data_point):
    """Click on the canvas where data pixel ``data_point`` of ``image`` is shown."""
    world = image.data_to_world(data_point)
    canvas_click(viewer, world[-2], world[-1])


def test_rotated_image_prompts_the_pixel_under_the_click_and_labels_show_over_it(
        make_widget, demo_available, qtbot):
    """rotate=30: the click prompts the data pixel under it, the preview and the committed
    label cover the object, and our layers are rotated like the image."""
    img = _image(1, 128, (90, 30))[0]
    viewer, widget = make_widget(img, sync=False, name="rotated", rotate=30)
    c = widget.controller
    image = viewer.layers["rotated"]
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    viewer.layers.selection.active = c.points_layer
    _click_data(viewer, image, (90, 30))
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=120_000)
    assert np.allclose(c.points_layer.data, [[90, 30]], atol=0.5)
    mask = c.previews[0].mask
    assert mask[90, 30] and img[mask].mean() > 90  # the object, not the background
    widget._on_commit()
    target = c.target_layer
    assert target.data[90, 30] == 1
    assert (target.data[_disc(128, (90, 30), 10)] == 1).mean() > 0.95
    for layer in (target, c.points_layer, c.boxes_layer, c.preview_layer):
        assert np.allclose(_matrix(layer), _matrix(image))


@pytest.mark.parametrize("transform", [
    {"affine": np.array([[2, 0, 0, 0], [0, .5, 0, 4], [0, 0, .5, 4], [0, 0, 0, 1.]])},
    {"shear": (0, 0, 0.3)},
    {"rotate": 25, "scale": (3, 1, 1), "translate": (5, 0, 0)},
], ids=["affine-voxel-size", "shear-in-plane", "rotate-in-plane"])
def test_affine_or_in_plane_shear_click_prompts_the_slice_and_pixel_shown(
        make_widget, tiny_predictor, transform):
    viewer, widget = make_widget(_image(4, 128, (40, 96)), name="img", **transform)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    image = viewer.layers["img"]
    viewer.dims.set_point(0, image.data_to_world((2, 40, 96))[0])
    assert c.current_z() == 2
    viewer.layers.selection.active = c.points_layer
    _click_data(viewer, image, (2, 40, 96))
    assert np.allclose(c.points_layer.data, [[2, 40, 96]], atol=0.5)
    assert [p.z for p in c.previews] == [2]
    mask = c.previews[0].mask.copy()
    assert widget._on_commit() is not None
    assert np.array_equal(c.target_layer.data[2] == 1, mask)  # the previewed pixels
    assert not c.target_layer.data[[0, 1, 3]].any()
    assert np.allclose(_matrix(c.target_layer), _matrix(image))
    c.go_to_slice(1)
    assert c.current_z() == 1


def test_a_transform_that_tilts_the_slices_is_refused_with_what_to_do(make_widget,
                                                                        tiny_predictor):
    """A rotation about the column axis mixes z with rows: a click would not fall on one
    slice; the image is refused in the status instead of prompting wrong pixels."""
    a = np.deg2rad(30)
    tilt = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    viewer, widget = make_widget(_image(4, 64, (20, 20)), name="tilted", rotate=tilt)
    status = widget._status.text()
    assert status.startswith("Cannot use 'tilted':"), status
    assert "tilts its (Y, X) slices" in status and "layer.rotate" in status
    assert widget.controller.source is None


def test_working_layers_follow_a_transform_changed_after_the_dock_opened(
        make_widget, tiny_predictor):
    viewer, widget = make_widget(_image(4, 128, (40, 96)), name="img")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    image = viewer.layers["img"]
    canvas_click(viewer, 40, 96)
    widget._on_commit()  # a 'segmentation' layer made by the dock, with the old transform
    image.scale = (2, 0.5, 0.5)
    image.translate = (0, 10, -5)
    for layer in (c.points_layer, c.boxes_layer, c.preview_layer, c.target_layer):
        assert np.allclose(_matrix(layer), _matrix(image))
    viewer.dims.set_point(0, image.data_to_world((2, 0, 0))[0])
    viewer.layers.selection.active = c.points_layer
    _click_data(viewer, image, (2, 40, 96))
    assert np.allclose(c.points_layer.data, [[2, 40, 96]], atol=0.5)
    assert [p.z for p in c.previews] == [2]


def _click_3d(viewer, zyx):
    """A real click on the canvas of the 3D view where world point ``zyx`` is drawn."""
    view = viewer.window._qt_viewer.canvas.view
    x, y = (view.transform * view.scene.transform).map([zyx[2], zyx[1], zyx[0]])[:2]
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    scene.events.mouse_press(pos=(float(x), float(y)), modifiers=(), button=1)
    scene.events.mouse_release(pos=(float(x), float(y)), modifiers=(), button=1)


def test_a_click_in_the_3d_view_prompts_no_hidden_slice(make_widget, tiny_predictor, qtbot,
                                                        notifications):
    viewer, widget = make_widget(blob_stack(z=12), sync=False, name="stack")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_point(0, 2)
    # the preload of the visible slice (started from the event loop) is over
    qtbot.waitUntil(lambda: c.job is None and c.ready([2]), timeout=60_000)
    viewer.dims.ndisplay = 3
    assert widget._status.text().startswith("The view is 3D: clicks and boxes do not prompt")
    qtbot.wait(300)  # the 3D camera is set up
    viewer.layers.selection.active = c.points_layer
    added = []
    c.points_layer.events.data.connect(lambda e: added.append(str(e.action)))
    _click_3d(viewer, (9.5, 20, 20))
    assert any(a.endswith("added") for a in added)  # napari added the click's point ...
    qtbot.wait(50)
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert len(c.points_layer.data) == 0 and not c.previews
    status = widget._status.text()
    assert "Switch to the 2D view" in status and status.endswith("The point was not kept.")
    assert widget._on_commit() is None and c.target_layer is None
    widget._scope.setCurrentIndex(0)  # objects on this slice: the slice is hidden
    assert widget._on_propagate() is None
    assert "'all objects with prompts'" in widget._status.text()
    viewer.dims.ndisplay = 2  # back in 2D the status says what to do, and clicks prompt
    assert widget._status.text().startswith("Click on an object in 'stack'")
    viewer.dims.set_point(0, 9)
    canvas_click(viewer, 20, 20)
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=60_000)
    assert np.allclose(c.points_layer.data, [[9, 20, 20]], atol=0.5)
    assert [p.z for p in c.previews] == [9]


def test_a_view_of_another_plane_refuses_prompts_and_says_how_to_get_back(
        make_widget, tiny_predictor, qtbot):
    viewer, widget = make_widget(blob_stack(z=8), name="img")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_point(0, 3)
    viewer.dims.transpose()  # the (Y, X) plane shown as (X, Y): still prompts
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 44, 20)  # screen rows are columns now
    assert np.allclose(c.points_layer.data, [[3, 20, 44]], atol=0.5)
    assert [p.z for p in c.previews] == [3]
    widget._on_clear()
    viewer.dims.order = (1, 0, 2)  # a (Z, X) view
    viewer.dims.set_point(1, 20)
    how = "viewer.dims.order = (0, 1, 2)"
    assert "prompts work in the (Y, X) plane only" in widget._status.text()
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 5, 20)
    assert len(c.points_layer.data) == 0 and not c.previews
    assert how in widget._status.text() and "point was not kept" in widget._status.text()
    # a box drawn by code across slices (what a (Z, X) view draws) is not kept silently
    c.boxes_layer.add([np.array([[1, 20, 10], [1, 20, 30], [5, 20, 30], [5, 20, 10]], float)],
                      shape_type="rectangle")
    assert len(c.boxes_layer.data) == 0
    assert "A box must lie in one (Y, X) slice" in widget._status.text()
    widget._auto_scope.setCurrentIndex(0)
    layers = len(viewer.layers)
    assert widget._on_automatic() is None and len(viewer.layers) == layers
    assert how in widget._status.text() and "'whole stack'" in widget._status.text()


def test_a_labels_layer_that_does_not_fit_the_image_is_refused_when_picked(
        make_widget, tiny_predictor):
    viewer, widget = make_widget(blob_stack(z=4), name="img")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.add_labels(np.zeros((4, 32, 32), np.uint32), name="small")
    viewer.add_labels(np.zeros((4, 64, 64), np.uint32), name="scaled", scale=(1, 2, 2))
    viewer.add_labels(np.zeros((4, 64, 64), np.uint32), name="moved", translate=(0, 5, 0))
    for name, why in (("small", "has shape (4, 32, 32) but the image 'img' needs (4, 64, 64)"),
                      ("scaled", "(its scale differs)"), ("moved", "(its translate differs)")):
        widget._target.setCurrentIndex(widget._target.findText(name))
        widget._on_target_changed()
        status = widget._status.text()
        assert status.startswith(f"Not picked: '{name}' ") and why in status, status
        assert c.target_layer is None
        assert widget._target.currentText() == "new 'segmentation' layer"
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)  # previews do not depend on the refused layers
    assert c.previews and widget._status.text().startswith("point object")
    commit = widget._on_commit()
    assert commit is not None and c.target_layer.name == "segmentation"
    assert np.array_equal(c.target_layer.data > 0, c.target_layer.data == 1)
    assert (c.target_layer.data[c.current_z()] == 1).sum() == commit.n_pixels
    for name in ("small", "scaled", "moved"):
        assert not viewer.layers[name].data.any()
    fits = viewer.add_labels(np.zeros((4, 64, 64), np.uint32), name="fits")
    widget._target.setCurrentIndex(widget._target.findText("fits"))
    widget._on_target_changed()
    assert c.target_layer is fits and widget._status.text().startswith("Commits go into 'fits'")


def test_a_4d_image_message_does_not_send_a_time_axis_to_channel_axis(make_widget):
    """A (T, Z, Y, X) movie with more time points than an axis of channels has is segmented
    at the time point shown (tests/_qt/test_time_lapse_dock.py); a 4D image whose first axis
    is short enough to be channels, with no channel axis picked and nothing naming it, is
    not taken as channels: the dock asks which it is (session 42: it was refused, naming a
    console line; tests/_qt/test_movie_dock_s42.py presses the buttons)."""
    viewer, widget = make_widget(np.zeros((5, 6, 32, 32), np.float32), name="tzyx")
    c = widget.controller
    assert c.source is not None and c.source.time_axis == 0, widget._status.text()
    viewer.add_image(np.zeros((3, 6, 32, 32), np.float32), name="czyx")
    widget._image.setCurrentIndex(widget._image.findData("czyx"))  # picked in 'Image'
    status = widget._status.text()
    assert status.startswith("Is axis 0 of 'czyx' (size 3) time or channels?"), status
    assert "Press 'Time points' under 'Channel axis' if it holds 3 time points" in status, status
    assert widget._channels.choice() == (None, None)  # (not picked as channels)


def test_a_box_dragged_in_a_view_of_another_plane_is_not_kept(make_widget, tiny_predictor,
                                                               qtbot):
    """A real drag with the boxes layer in a (Z, X) view: napari draws the rectangle, the
    dock removes it once drawn and says why."""
    from sam_qt_helpers import canvas_position

    viewer, widget = make_widget(blob_stack(z=8), preload=False, name="img")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.order = (1, 0, 2)
    viewer.dims.set_point(1, 20)
    viewer.layers.selection.active = c.boxes_layer
    c.boxes_layer.mode = "add_rectangle"
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    p0, p1 = canvas_position(viewer, 1, 10), canvas_position(viewer, 6, 30)
    press = scene.events.mouse_press(pos=p0, modifiers=(), button=1, buttons=[1])
    for t in np.linspace(0, 1, 6)[1:]:
        pos = (p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1]))
        scene.events.mouse_move(pos=pos, modifiers=(), button=1, press_event=press,
                                buttons=[1])
    scene.events.mouse_release(pos=p1, modifiers=(), button=1, press_event=press)
    assert len(c.boxes_layer.data) == 1  # napari drew it
    qtbot.waitUntil(lambda: len(c.boxes_layer.data) == 0, timeout=5000)
    status = widget._status.text()
    assert "viewer.dims.order = (0, 1, 2)" in status and status.endswith("box was not kept.")
    assert not c.previews


def test_a_picked_labels_layer_that_stops_lining_up_is_let_go(make_widget, tiny_predictor):
    """The image's scale changes after the user picked their own labels layer: that layer
    (the user's, not changed by the dock) no longer lines up, so commits go into a new
    layer with the image's transform, and the status says so."""
    viewer, widget = make_widget(blob_stack(z=4), name="img")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    mine = viewer.add_labels(np.zeros((4, 64, 64), np.uint32), name="mine")
    widget._target.setCurrentIndex(widget._target.findText("mine"))
    widget._on_target_changed()
    assert c.target_layer is mine
    viewer.layers["img"].scale = (1, 0.5, 0.5)
    assert c.target_layer is None and widget._target.currentText() == "new 'segmentation' layer"
    assert "'mine' no longer lines up with 'img'" in widget._status.text()
    assert np.allclose(mine.scale, 1)  # the user's layer is left as it was
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 10, 10)  # world (10, 10): data pixel (20, 20)
    assert np.allclose(c.points_layer.data[0, 1:], [20, 20], atol=0.5)
    assert widget._on_commit() is not None
    assert np.allclose(c.target_layer.scale, (1, 0.5, 0.5)) and not mine.data.any()


def test_the_dock_s_layers_carry_the_image_s_units(make_widget, tiny_predictor):
    """An image in micrometres: the committed labels layer (and the working layers) carry
    the units, so napari does not warn of mixed units and saved labels keep um."""
    viewer, widget = make_widget(_image(3, 96, (40, 50)), name="img", scale=(2.5, 0.5, 0.5),
                                 units=("um", "um", "um"))
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    image = viewer.layers["img"]
    viewer.dims.set_point(0, image.data_to_world((1, 40, 50))[0])
    viewer.layers.selection.active = c.points_layer
    _click_data(viewer, image, (1, 40, 50))
    widget._on_commit()
    assert c.target_layer is not None and c.target_layer.data[1, 40, 50] == 1
    for layer in (c.target_layer, c.points_layer, c.boxes_layer, c.preview_layer):
        assert [str(u) for u in layer.units] == ["micrometer"] * 3, layer.name
