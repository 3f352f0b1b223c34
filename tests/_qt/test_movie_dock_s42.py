"""Session 42's walk through the dock on a short movie of volumes (a 3- or 4-time-point
light-sheet run, (T, Z, Y, X) with T <= 4): what napari or the file says about the first
axis is followed, the dock asks where nothing says, and what the dock says and keeps on a
movie (prompts of every time point, the embedded line, contrast)."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, canvas_click, click_commit, press_key, use_predictor

T = 3  # a short run: short enough to be channels


def short_movie(t: int = T) -> np.ndarray:
    """(t, 6, 64, 64) uint16: each time point the blob stack (another noise seed)."""
    return np.stack([blob_stack(seed=k) for k in range(t)]).astype(np.uint16)


def click_commit_at(viewer, widget, t: int, z: int, row: float, col: float) -> str:
    """Show time point ``t``, slice ``z``; click (row, col) and press Shift+C. Returns the
    status line after the commit."""
    viewer.dims.set_current_step(0, t)
    viewer.dims.set_current_step(1, z)
    widget.wait()
    return click_commit(viewer, widget, row, col)


def test_a_short_imagej_movie_opened_with_napari_is_a_movie(make_widget, tiny_predictor,
                                                            tmp_path):
    """A 3-time-point ImageJ TZYX TIFF opened with napari's own reader (axis labels -4..-1)
    is a movie: its file names the first axis T. It was refused as 'short enough to be
    channels'; a commit at time point 2 lands there alone."""
    import tifffile

    path = tmp_path / "run.tif"
    movie = short_movie()
    tifffile.imwrite(path, movie, imagej=True, metadata={"axes": "TZYX"})
    viewer, widget = make_widget(sync=False)
    use_predictor(widget, tiny_predictor)
    viewer.open(str(path), plugin="napari")
    widget.wait()
    c = widget.controller
    assert c.source is not None and c.source.time_axis == 0 and c.source.n_times == T, c.status
    assert ("'run' is a movie of 3 time points (its file names its axes TZYX): SAM segments "
            "the volume at the time point the time slider shows") in c.status, c.status
    assert not widget._movie_axis.isVisibleTo(widget)
    click_commit_at(viewer, widget, 2, 3, 20, 20)
    labels = np.asarray(c.target_layer.data)
    assert labels.shape == movie.shape
    assert labels[2].any() and not labels[:2].any()
    assert set(np.unique(labels[2])) == {0, 1}


def test_napari_axis_labels_name_time(make_widget, tiny_predictor):
    """A (3, 6, 64, 64) layer whose napari axis labels name axis 0 't' is a movie."""
    viewer, widget = make_widget(short_movie(), name="labelled",
                                 axis_labels=("t", "z", "y", "x"))
    c = widget.controller
    assert "'labelled' is a movie of 3 time points (napari names axis 0 't')" in c.status
    use_predictor(widget, tiny_predictor)
    assert c.source is not None and c.source.n_times == T, c.status


def test_the_dock_asks_time_or_channels_where_nothing_says(make_widget, tiny_predictor, qtbot):
    """A (3, 6, 64, 64) array added from Python: the dock asks (it refused, naming only
    workarounds); 'Time points' (a real click) makes it a movie, 'Channels' on another such
    layer picks its axis 0 in 'Channel axis'."""
    from qtpy.QtCore import Qt

    viewer, widget = make_widget(short_movie(), name="py", sync=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    row = widget._movie_axis
    assert c.source is None and row.isVisibleTo(widget)
    assert "Is axis 0 of 'py' (size 3) time or channels?" in c.status, c.status
    assert "Press 'Time points' under 'Channel axis'" in c.status
    qtbot.mouseClick(row.time, Qt.MouseButton.LeftButton)
    widget.wait()
    assert c.source is not None and c.source.time_axis == 0 and c.source.n_times == T, c.status
    assert "'py' is a movie of 3 time points (you said axis 0 holds time points)" in c.status
    assert not row.isVisibleTo(widget)
    click_commit_at(viewer, widget, 1, 3, 44, 44)
    labels = np.asarray(c.target_layer.data)
    assert labels[1].any() and not labels[[0, 2]].any()

    viewer.add_image(short_movie(), name="stains")
    widget._image.setCurrentIndex(widget._image.findData("stains"))
    widget.wait()
    assert row.isVisibleTo(widget) and c.image_refusal.startswith("Is axis 0 of 'stains'")
    qtbot.mouseClick(row.channels, Qt.MouseButton.LeftButton)
    widget.wait()
    assert widget._channels.choice()[0] == 0, c.status
    assert c.source is not None and c.source.time_axis is None and c.source.n_slices == 6
    assert not row.isVisibleTo(widget)


@pytest.mark.parametrize("t", [5])
def test_a_long_time_axis_is_a_movie_without_asking(make_widget, tiny_predictor, t):
    viewer, widget = make_widget(short_movie(t), name="long")
    use_predictor(widget, tiny_predictor)
    assert widget.controller.source.n_times == t
    assert not widget._movie_axis.isVisibleTo(widget)


def test_prompts_of_every_time_point_come_back_with_the_movie(make_widget, tiny_predictor,
                                                               qtbot):
    """Points clicked at time points 0 and 2 and a box dragged at time point 1, then
    another image picked and the movie again: all of them come back at their time points
    (only those of the time point shown came back; the others were lost without a word)."""
    from sam_qt_helpers import canvas_drag

    movie = short_movie(5)
    viewer, widget = make_widget(movie, name="movie", sync=False)
    viewer.add_image(blob_stack(seed=9), name="other")
    widget._image.setCurrentIndex(widget._image.findData("movie"))
    use_predictor(widget, tiny_predictor)
    widget.wait()
    c = widget.controller
    for t, (row, col) in ((0, (20, 20)), (2, (44, 44))):
        viewer.dims.set_current_step(0, t)
        viewer.dims.set_current_step(1, 3)
        widget.wait()
        viewer.layers.selection.active = c.points_layer
        canvas_click(viewer, row, col)
        widget.wait()
    viewer.dims.set_current_step(0, 1)
    widget.wait()
    viewer.layers.selection.active = c.boxes_layer
    qtbot.wait(10)
    canvas_drag(viewer, qtbot, (10, 10), (30, 30))
    widget.wait()
    assert len(c.points_layer.data) == 2 and len(c.boxes_layer.data) == 1, c.status
    before_points = np.array(c.points_layer.data)
    before_box = np.array(c.boxes_layer.data[0])

    widget._image.setCurrentIndex(widget._image.findData("other"))
    widget.wait()
    assert ("Set aside: 3 uncommitted prompts of 'movie' (2 points, 1 box) at time "
            "points 0, 1, 2") in c.status, c.status
    widget._image.setCurrentIndex(widget._image.findData("movie"))
    widget.wait()
    assert c.source.time_point == 1
    assert ("Restored 3 uncommitted prompts of 'movie' (2 points, 1 box) at time points "
            "0, 1, 2 on slice 3") in c.status, c.status
    np.testing.assert_allclose(np.array(c.points_layer.data), before_points)
    np.testing.assert_allclose(np.array(c.boxes_layer.data[0]), before_box)
    assert [p.z for p in c.previews] == [3]  # the box at the time point shown
    viewer.dims.set_current_step(0, 2)
    widget.wait()
    assert len(c.prompt_arrays()[0]) == 1 and [p.z for p in c.previews] == [3], c.status


def test_the_embedded_line_names_the_time_point(make_widget, tiny_predictor, qtbot):
    """On a movie the line beside 'Compute embeddings' says whose volume is embedded: after
    'Compute embeddings' (a real click) at time point 2, "time point 2: 6 of 6 slices
    embedded"; at time point 0, "time point 0: 1 of 6 ..." (the slice shown; it said "6 of 6 slices embedded"
    at time point 2 and "1 of 6" at 0, which read as one volume)."""
    from sam_qt_helpers import click_button

    viewer, widget = make_widget(short_movie(5), name="movie", sync=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_current_step(0, 2)
    widget.wait()
    click_button(qtbot, widget, "Compute embeddings")
    widget.wait()
    assert widget._emb_state.text() == "time point 2: 6 of 6 slices embedded", c.status
    viewer.dims.set_current_step(0, 0)
    widget.wait()
    widget.wait()
    assert widget._emb_state.text() == "time point 0: 1 of 6 slices embedded"


def test_the_embedded_line_of_a_volume_names_no_time_point(make_widget, tiny_predictor):
    viewer, widget = make_widget(blob_stack(), name="vol")
    use_predictor(widget, tiny_predictor)
    widget.wait()
    assert widget._emb_state.text() == "1 of 6 slices embedded"


def test_each_time_point_sees_its_own_percentiles_as_auto_does(make_widget, tiny_predictor):
    """SAM's contrast on a movie is per time point (docs/gui.md, *Movies of volumes*): a
    time point 8x brighter than the others does not change what the model sees at time
    point 0 (its volume's own 0.5-99.5 percentiles, the limits `napari-sam auto` embeds
    that time point with: each time point is its own volume there), before or after the
    bright one was shown."""
    from napari_sam.embeddings import embed, stack_intensity_limits

    movie = short_movie(5).astype(np.float32)
    movie[1] *= 8
    viewer, widget = make_widget(movie, name="movie", sync=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    seen = {}
    for t in (0, 1, 0):
        viewer.dims.set_current_step(0, t)
        viewer.dims.set_current_step(1, 3)
        widget.wait()
        viewer.layers.selection.active = c.points_layer
        canvas_click(viewer, 20, 20)
        widget.wait()
        seen.setdefault(t, []).append(tuple(c.emb.contrast_limits))
        press_key(viewer, "Shift-X")
    own = [stack_intensity_limits(movie[t]) for t in (0, 1)]
    assert seen[0] == [tuple(own[0])] * 2 and seen[1] == [tuple(own[1])]
    assert own[1][1] > 5 * own[0][1]  # (the bright time point's limits are its own)
    as_auto = embed(movie[0], tiny_predictor.model).contrast_limits  # what auto uses at t=0
    assert tuple(as_auto) == tuple(own[0])


def test_segment_everything_names_the_time_point(make_widget, tiny_predictor, qtbot):
    """'Segment everything' (a real click) at time point 3 of a movie: its new layer is
    named after the time point and the slice ('automatic segmentation t=3 z=2'; it said
    'z=2' alone, the same name at every time point), and holds nothing at the others."""
    from sam_qt_helpers import click_button

    viewer, widget = make_widget(short_movie(5), name="movie", sync=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_current_step(0, 3)
    viewer.dims.set_current_step(1, 2)
    widget.wait()
    click_button(qtbot, widget, "Segment everything")
    widget.wait()
    assert "in a new layer 'automatic segmentation t=3 z=2'" in c.status, c.status
    data = np.asarray(viewer.layers["automatic segmentation t=3 z=2"].data)
    assert data.shape == (5, 6, 64, 64) and not np.delete(data, 3, axis=0).any()


def test_the_slice_shown_at_another_time_point_is_embedded_before_a_click(
        make_widget, tiny_predictor, qtbot):
    """Moving the time slider embeds the slice shown at the new time point, as picking an
    image does, so that the first click there only decodes (it was embedded only once
    clicked: 'time point 2: 0 of 6 slices embedded' until then)."""
    viewer, widget = make_widget(short_movie(5), name="movie", sync=False)
    use_predictor(widget, tiny_predictor)
    widget.wait()
    c = widget.controller
    viewer.dims.set_current_step(1, 4)
    viewer.dims.set_current_step(0, 0)
    qtbot.waitUntil(lambda: widget._emb_state.text() == "time point 0: 1 of 6 slices embedded",
                    timeout=60_000)
    widget.wait()
    assert c.ready([4]) and c.status.startswith("SAM now segments time point 0 of 5. Click on "
                                                "an object in 'movie'"), c.status
    emb = c.emb
    calls = emb.encoder_calls
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    widget.wait()
    assert c.previews and emb.encoder_calls == calls, c.status  # (the click only decoded)


def test_a_short_movie_file_after_a_multichannel_image(make_widget, tiny_predictor, tmp_path):
    """The file's TZYX is read with the new image's channel axis (none), not the one picked
    for the image before (a (Z, C, Y, X) image with 'Channel axis' 1)."""
    import tifffile

    zcyx = np.stack([blob_stack(), blob_stack(seed=1)], axis=1)
    viewer, widget = make_widget(zcyx, name="zcyx")
    use_predictor(widget, tiny_predictor)
    widget._channels.axis.setCurrentIndex(widget._channels.axis.findData(1))
    c = widget.controller
    assert c.channel_axis == 1 and c.source is not None, c.status
    path = tmp_path / "run.tif"
    tifffile.imwrite(path, short_movie(), imagej=True, metadata={"axes": "TZYX"})
    viewer.open(str(path), plugin="napari")
    widget._image.setCurrentIndex(widget._image.findData("run"))  # picked in 'Image'
    widget.wait()
    assert c.image_name() == "run" and c.source.n_times == T, c.status


def test_a_commit_says_its_time_point(make_widget, tiny_predictor):
    """'Committed label 1 (N pixels) at time point 3.': where the commit landed (the undo
    line named it; the commit's did not)."""
    import re

    viewer, widget = make_widget(short_movie(5), name="movie", sync=False)
    use_predictor(widget, tiny_predictor)
    status = click_commit_at(viewer, widget, 3, 2, 20, 20)
    labels = np.asarray(widget.controller.target_layer.data)
    n = int((labels[3] == 1).sum())
    assert re.match(rf"Committed label 1 \({n} pixels\) at time point 3\. Shift\+U undoes it",
                    status), status
    assert not np.delete(labels, 3, axis=0).any()


def test_a_time_unit_names_time(make_widget, tiny_predictor):
    """A (3, 6, 64, 64) layer whose first axis has napari's unit 'second' is a movie."""
    viewer, widget = make_widget(short_movie(), name="timed", scale=(30.0, 1.0, 1.0, 1.0),
                                 units=("second", "um", "um", "um"))
    c = widget.controller
    assert "'timed' is a movie of 3 time points (napari gives axis 0 the unit 'second')" in (
        c.status), c.status
    use_predictor(widget, tiny_predictor)
    assert c.source is not None and c.source.n_times == T, c.status


def test_labels_saved_from_a_movie_keep_its_files_time_between_frames(
        make_widget, tiny_predictor, tmp_path):
    """A movie with a 2.5 min frame interval (ImageJ ``finterval``/``tunit``) opened with
    napari's reader, which drops it: the labels the dock makes, saved with our writer, keep
    it, as ``napari-sam auto``'s do (they had none: Fiji and TrackMate took 1 frame per
    second, and tracks' speeds came out wrong)."""
    import tifffile

    from napari_sam.io import read_image

    path = tmp_path / "run.tif"
    tifffile.imwrite(path, short_movie(), imagej=True,
                     metadata={"axes": "TZYX", "finterval": 2.5, "tunit": "min"})
    viewer, widget = make_widget(sync=False)
    use_predictor(widget, tiny_predictor)
    viewer.open(str(path), plugin="napari")
    widget.wait()
    click_commit_at(viewer, widget, 1, 3, 20, 20)
    out = tmp_path / "run_labels.tif"
    widget.controller.target_layer.save(str(out), plugin="napari-sam-stacks")
    back = read_image(out)
    assert back.axes == "TZYX" and back.data[1].any() and not back.data[[0, 2]].any()
    assert back.metadata["time_interval"] == {"value": 2.5, "unit": "min"}


@pytest.mark.parametrize("z", [3, 6])
def test_a_movie_napari_names_with_time_second_is_refused_not_cut_along_z(
        make_widget, tiny_predictor, z):
    """A (Z, T, Y, X) layer added with ``axis_labels=("z", "t", "y", "x")``: its axis 0 (z)
    was taken as time ("'zt' is a movie of 6 time points": each 'volume' SAM segmented
    was the frames of one slice), or, with 3 slices, the dock asked "time or channels?
    Neither napari nor a file names it". It is refused, saying how to put time first."""
    data = np.moveaxis(short_movie(4), 0, 1)[:z]  # (z, 4, 64, 64): time second
    viewer, widget = make_widget(data, name="zt", axis_labels=("z", "t", "y", "x"))
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    assert c.source is None and not widget._movie_axis.isVisibleTo(widget), c.status
    assert ("Cannot use 'zt': napari names axis 1 of 'zt' 't' (its axes are z, t, y, x), but "
            "the dock takes a movie of volumes with time first, (T, Z, Y, X): it would take "
            "axis 0 ('z') as time. Put time first, e.g. viewer.add_image(np.moveaxis(data, 1, "
            "0), axis_labels=('t', 'z', 'y', 'x')).") in c.status, c.status
