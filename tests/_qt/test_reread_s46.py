"""Read together, session 46's changes to the dock's 'Stack axis is' (each image its own, a
2D image none) and to a loaded session's settings met badly: a session loaded on a 2D image
picked after a time series (its box still t, saved with it) made that t the pick for the
next stack nothing names, so an unlabelled volume picked next was propagated as a time
series ('Stack axis is t: it was picked before 'vol' was'). And an image refused (asked
about) then closed was still taken as refused: its question stayed under 'Channel axis', and
renamed viewer axes (which session 46 no longer notifies again for it) picked the image left
again instead of telling its stack axis. And the trace of the image left, now told again in
the words of the next image's own stack axis, read as that image's."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import blob_stack
from test_movie_dock_s42 import short_movie
from test_time_series_words_s45 import click_and_propagate, time_series_dock


def pick(widget, name: str) -> None:
    """Pick image layer ``name`` in the dock's image box, as the user does."""
    widget._image.setCurrentIndex(widget._image.findData(name))
    widget.wait()


def test_a_session_loaded_on_a_2d_image_is_no_pick_for_the_next_stack(make_widget, tmp_path):
    """A time series labelled ("t", "y", "x"), a 2D snapshot picked (the box stays t), its
    session saved and loaded again, then an unlabelled volume: z, as without the session."""
    viewer, widget = make_widget(blob_stack(z=8), name="lapse", sync=False, preload=False,
                                 axis_labels=("t", "y", "x"))
    c = widget.controller
    assert c.axis_kind == "t", c.status
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="snap")
    pick(widget, "snap")
    assert c.image_layer.name == "snap", c.status
    path = widget.save_session(str(tmp_path / "snap.sam-session.json"))
    widget.wait()
    widget.load_session(str(path))
    widget.wait()
    viewer.add_image(blob_stack(z=8, seed=1), name="vol")
    pick(widget, "vol")
    assert c.image_layer.name == "vol" and c.axis_kind == "z", c.status
    assert widget._axis_kind.currentIndex() == 0
    assert "nothing names the axes of 'vol'" in c.status, c.status


def test_an_image_refused_then_closed_leaves_no_refusal_behind(make_widget):
    """A volume, a (3, Z, Y, X) array picked (asked: time or channels?) and closed: the dock
    is back on the volume, the question gone, and naming the viewer's axes ("t", "y", "x")
    makes the volume a time series (the closed image was taken as still refused: it was
    picked again, its renamed axes passed over, the question kept under 'Channel axis')."""
    viewer, widget = make_widget(blob_stack(z=8), name="vol", sync=False, preload=False)
    c = widget.controller
    viewer.add_image(short_movie(), name="stains")
    pick(widget, "stains")
    assert c.image_layer.name == "vol" and widget._movie_axis.isVisibleTo(widget), c.status
    viewer.layers.remove("stains")
    widget.wait()
    assert widget._image.currentData() == "vol" and c.image_layer.name == "vol"
    assert not widget._movie_axis.isVisibleTo(widget), c.status
    viewer.dims.axis_labels = ("t", "y", "x")
    widget.wait()
    assert c.axis_kind == "t" and widget._axis_kind.currentIndex() == 1, c.status
    assert "Stack axis is t: napari names axis 0 of 'vol' 't'" in c.status, c.status


def test_the_trace_of_the_image_left_is_not_shown_for_the_next(make_widget, tiny_predictor):
    """A time series propagated, then a volume picked (z, its own): the trace panel showed
    the time series' trace, told in the volume's slices, and the volume's session kept it;
    now the panel asks for a propagation and the session has no trace."""
    viewer, widget, c, _ = time_series_dock(make_widget, tiny_predictor)
    click_and_propagate(viewer, widget)
    assert widget._trace.trace is not None and c.trace is not None, c.status
    viewer.add_image(blob_stack(z=8, seed=1), name="vol")
    pick(widget, "vol")
    assert c.image_layer.name == "vol" and c.axis_kind == "z", c.status
    assert widget._trace.trace is None and c.trace is None
    assert not widget._trace.plots
