"""Read together, session 46's changes to the dock's 'Stack axis is' (each image its own, a
2D image none) and to a loaded session's settings met badly: a session loaded on a 2D image
picked after a time series (its box still t, saved with it) made that t the pick for the
next stack nothing names, so an unlabelled volume picked next was propagated as a time
series ('Stack axis is t: it was picked before 'vol' was')."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import blob_stack


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
