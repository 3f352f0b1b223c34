"""Axis labels the user gives napari's viewer (``viewer.dims.axis_labels``, or the labels
typed in napari's dims slider names) rather than the image layer: napari does not copy them
to the layer, and the dock read only the layer's, so a (3, Z, Y, X) movie whose first axis
the user named 't' was still asked about ('time or channels?') and a (T, Y, X) time-lapse
named ("t", "y", "x") was still propagated as a volume (session 45)."""

from __future__ import annotations

from sam_qt_helpers import blob_stack, press_key, propagating_held, use_predictor
from test_movie_dock_s42 import T, short_movie


def test_a_movie_the_user_names_in_the_viewer_is_a_movie(make_widget, tiny_predictor):
    """A (3, 6, 64, 64) array added from Python is asked about; once the user names the
    viewer's axes ("t", "z", "y", "x"), the dock takes it as a movie of 3 time points."""
    viewer, widget = make_widget(short_movie(), name="py", sync=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    assert c.source is None and widget._movie_axis.isVisibleTo(widget), c.status
    viewer.dims.axis_labels = ("t", "z", "y", "x")
    widget.wait()
    assert c.source is not None and c.source.time_axis == 0 and c.source.n_times == T, c.status
    assert not widget._movie_axis.isVisibleTo(widget)
    assert ("'py' is a movie of 3 time points (napari names axis 0 't'): SAM segments the "
            "volume at the time point the time slider shows (1 now).") in c.status, c.status


def test_a_time_lapse_the_user_names_in_the_viewer_is_a_time_series(make_widget):
    """A (12, 64, 64) array is a volume (z) until the user names the viewer's axes
    ("t", "y", "x"): then 'Stack axis is' t, which propagation follows."""
    viewer, widget = make_widget(blob_stack(z=12), sync=False, name="bleach", preload=False)
    c = widget.controller
    assert c.axis_kind == "z"
    viewer.dims.axis_labels = ("t", "y", "x")
    widget.wait()
    assert c.axis_kind == "t" and widget._axis_kind.currentIndex() == 1, c.status
    assert ("Stack axis is t: napari names axis 0 of 'bleach' 't', a time series: objects are "
            "followed through its frames (change it in 'Stack axis is').") in c.status, c.status
    widget._axis_kind.setCurrentIndex(0)  # the user says z after all
    viewer.dims.axis_labels = ("t", "row", "col")  # and names the other axes
    widget.wait()
    assert c.axis_kind == "z", c.status


def test_the_axis_labels_of_another_layer_do_not_name_this_one(make_widget):
    """napari copies a layer's own axis labels to the viewer's sliders: a (Z, Y, X) volume
    the dock works on became a time series once a time-lapse labelled ("t", "y", "x") was
    opened beside it ('Stack axis is t: napari names axis 0 of 'volume' 't''), the labels
    being the time-lapse's."""
    viewer, widget = make_widget(blob_stack(z=8), name="volume", sync=False, preload=False)
    c = widget.controller
    assert c.image_layer.name == "volume" and c.axis_kind == "z", c.status
    viewer.add_image(blob_stack(z=8, seed=1), name="lapse", axis_labels=("t", "y", "x"))
    assert viewer.dims.axis_labels == ("t", "y", "x")  # (napari's sliders: the lapse's)
    widget.wait()
    assert c.image_layer.name == "volume" and c.axis_kind == "z", c.status
    assert widget._axis_kind.currentIndex() == 0 and "Stack axis is t" not in c.status, c.status
    widget._image.setCurrentIndex(widget._image.findData("lapse"))  # its own labels count
    widget.wait()
    assert c.axis_kind == "t", c.status


def test_a_labelled_movie_beside_does_not_make_a_short_4d_image_a_movie(make_widget):
    """A (3, Z, Y, X) array added from Python beside a movie labelled ("t", "z", "y", "x")
    is asked about (time or channels?), not taken as a movie for the movie's labels."""
    viewer, widget = make_widget(short_movie(), name="run", sync=False, preload=False,
                                 axis_labels=("t", "z", "y", "x"))
    viewer.add_image(short_movie(), name="stains")
    widget._image.setCurrentIndex(widget._image.findData("stains"))
    widget.wait()
    c = widget.controller  # (refused: the dock stays on 'run' until the user answers)
    assert c.image_layer.name == "run" and widget._movie_axis.isVisibleTo(widget), c.status
    assert c.status.startswith("Is axis 0 of 'stains' (size 3) time or channels?"), c.status


def test_axes_named_while_a_propagation_runs_drop_its_volume_preview(make_widget, tiny_predictor,
                                                                      qtbot, monkeypatch):
    """The user names the viewer's axes ("t", "y", "x") while a propagation of the stack as
    a volume runs: 'Stack axis is' becomes t, and the propagation's end was told in frames
    ('Propagated 1 object over frame 2 (stopped: later: ...)'), its preview made with the
    fade rules of a volume. Its preview is dropped, saying so; Shift+D propagates again,
    as a time series."""
    viewer, widget, go = propagating_held(make_widget, tiny_predictor, qtbot, monkeypatch)
    c = widget.controller
    viewer.dims.axis_labels = ("t", "y", "x")
    assert c.axis_kind == "t", c.status
    go.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    qtbot.wait(200)
    assert c.volume is None
    assert c.status.startswith(
        "The propagation ended, but 'Stack axis is' changed to t while it ran, so its preview, "
        "which followed the objects as a volume, was dropped; the prompts are kept: press "
        "Shift+D to propagate them as a time series."), c.status
    press_key(viewer, "Shift-D")
    qtbot.waitUntil(lambda: c.job is None and c.volume is not None, timeout=60_000)
    assert c.status.startswith("Propagated 1 object over frame"), c.status
