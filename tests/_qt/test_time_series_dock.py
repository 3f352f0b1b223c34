"""A (T, Y, X) movie opened with napari's own reader (which drops the file's axes): the dock
picks *Stack axis is* t from the file, as the command line does (helper walk-through, session
31: it stayed z, and a bleaching cell was cut after 4 frames by the fade rule for volumes)."""

from __future__ import annotations

import numpy as np
import pytest


def _bleaching_movie() -> np.ndarray:
    """(12, 64, 64) float32: a disc at (32, 32) whose brightness halves every 3 frames."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 100
    return np.stack([100 + disc * 900 * 0.8 ** t + rng.normal(0, 10, disc.shape)
                     for t in range(12)]).astype(np.float32)

def _click_frame_0_and_propagate(widget) -> None:
    """A click on the cell in frame 0, then Propagate, each waited for."""
    c = widget.controller
    c.go_to_slice(0)
    widget.wait()
    c.add_point(0, 32, 32)
    widget.wait()
    c.propagate()
    widget.wait()



@pytest.mark.parametrize("axes", ["TYX", "ZYX"])
def test_the_files_stack_axis_is_picked_and_a_bleaching_cell_is_followed(
        make_widget, demo_available, tmp_path, axes):
    import tifffile

    path = tmp_path / f"movie_{axes}.tif"
    tifffile.imwrite(path, _bleaching_movie(), imagej=True, metadata={"axes": axes})
    viewer, widget = make_widget(sync=False)
    viewer.open(str(path), plugin="napari")
    widget.wait()
    c = widget.controller
    kind = axes[0].lower()
    assert c.axis_kind == kind and widget._axis_kind.currentIndex() == int(kind == "t")
    if kind == "t":
        assert "Stack axis is t: the file of 'movie_TYX' names its axes TYX" in c.status
    _click_frame_0_and_propagate(widget)
    # t: every frame (the API's axis_kind="t"); z: the fade rule stops it (measured 0-3)
    expected = (0, 11) if kind == "t" else (0, 3)
    assert c.volume.slice_range[1] == expected, c.status
    # a time series is told in frames, later and earlier (it said slices, up and down)
    said = ("over frames 0-11 (stopped: later: end of the series, earlier: end of the "
            "series). Check the preview, then Shift+C commits; a prompt on a frame further"
            if kind == "t" else "over slices 0-3 (stopped: up: faded out, down: stack edge)")
    assert said in c.status, c.status
    # saved from napari, the labels keep the movie's axes (a movie's were written ZYX)
    c.commit()
    widget.wait()
    out = tmp_path / "labels.tif"
    viewer.layers["segmentation"].save(str(out), plugin="napari-sam-stacks")
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == axes and tif.series[0].shape == (12, 64, 64)


def test_a_stack_axis_the_user_chose_stays_when_the_image_is_picked_again(
        make_widget, demo_available, tmp_path):
    import tifffile

    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, _bleaching_movie(), imagej=True, metadata={"axes": "TYX"})
    viewer, widget = make_widget(sync=False, preload=False)
    viewer.open(str(path), plugin="napari")
    assert widget.controller.axis_kind == "t"
    widget._axis_kind.setCurrentIndex(0)  # the user says z
    widget._on_image_changed()  # the same image again (e.g. the box re-emitted)
    assert widget.controller.axis_kind == "z"


@pytest.mark.parametrize("named", ["label", "unit"])
def test_a_stack_napari_names_time_is_a_time_series(make_widget, demo_available, named):
    """A (T, Y, X) array added with napari's ``axis_labels=("t", "y", "x")`` (or a unit of
    time on its first axis) stayed 'Stack axis is' z: the bleaching cell was cut after 4
    frames by the fade rule for volumes (walk-through on a time-lapse, session 43)."""
    kwargs = ({"axis_labels": ("t", "y", "x")} if named == "label"
              else {"units": ("second", "um", "um")})
    viewer, widget = make_widget(_bleaching_movie(), sync=False, name="bleach", **kwargs)
    widget.wait()
    c = widget.controller
    assert c.axis_kind == "t" and widget._axis_kind.currentIndex() == 1
    why = ("napari names axis 0 of 'bleach' 't'" if named == "label"
           else "napari gives axis 0 of 'bleach' the unit 'second'")
    assert (f"Stack axis is t: {why}, a time series: objects are followed through its "
            "frames (change it in 'Stack axis is').") in c.status, c.status
    _click_frame_0_and_propagate(widget)
    assert c.volume.slice_range[1] == (0, 11), c.status  # (as z: 0-3)


@pytest.mark.parametrize("named", ["label", "unit"])
def test_an_rgb_stack_napari_names_time_is_a_time_series(make_widget, demo_available, named):
    """An RGB (T, Y, X, 3) time-lapse added with ``axis_labels=("t", "y", "x")`` (or a unit
    of time on its first axis) stayed 'Stack axis is' z, as a grey one did before: the RGB
    layer was passed over (its colour axis counted as a fourth axis)."""
    kwargs = ({"axis_labels": ("t", "y", "x")} if named == "label"
              else {"units": ("second", "um", "um")})
    grey = _bleaching_movie()
    rgb = np.repeat((grey / grey.max() * 255).astype(np.uint8)[..., None], 3, axis=-1)
    viewer, widget = make_widget(rgb, rgb=True, name="bleach", **kwargs)
    c = widget.controller
    assert viewer.layers["bleach"].rgb and c.source.rgb
    assert c.axis_kind == "t" and widget._axis_kind.currentIndex() == 1, c.status
    why = ("napari names axis 0 of 'bleach' 't'" if named == "label"
           else "napari gives axis 0 of 'bleach' the unit 'second'")
    assert f"Stack axis is t: {why}, a time series" in c.status, c.status


def test_a_movie_of_volumes_picked_after_a_time_series_is_segmented_as_volumes(make_widget):
    """A (T, Y, X) layer labelled ("t", "y", "x") sets 'Stack axis is' t; a (T, Z, Y, X)
    movie picked next kept it: each time point's volume was propagated with the rules for
    frames (the fade rule for volumes off, the status saying "frames" of its slices)."""
    viewer, widget = make_widget(_bleaching_movie(), name="frames", preload=False,
                                 axis_labels=("t", "y", "x"))
    c = widget.controller
    assert c.axis_kind == "t"
    movie = np.stack([_bleaching_movie()[:6]] * 3)  # (3 time points, 6 slices, 64, 64)
    viewer.add_image(movie, name="volumes", axis_labels=("t", "z", "y", "x"))
    widget._image.setCurrentIndex(widget._image.findData("volumes"))
    widget.wait()
    assert c.source.time_axis == 0 and c.source.n_times == 3, c.status
    assert c.axis_kind == "z" and widget._axis_kind.currentIndex() == 0, c.status
    assert ("Stack axis is z: each time point of 'volumes' holds a volume (a movie of "
            "volumes), a volume: objects are followed through its slices (change it in "
            "'Stack axis is').") in c.status, c.status
