"""A 2D image has no stack axis of its own (session 46): picked, it took the 'Stack axis is
t' the user picked before any image was open (the time-lapse picked after it was set back
to z), and it set the box back to z after a time series without a word, so that it was
remembered as its own when its data became a stack."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import blob_stack


def pick(widget, name: str) -> None:
    """Pick image layer ``name`` in the dock's image box, as the user does."""
    widget._image.setCurrentIndex(widget._image.findData(name))
    widget.wait()


def test_a_pick_before_any_image_is_kept_for_the_first_stack(make_widget):
    """'Stack axis is' t picked with no image open, a 2D snapshot opened, then a stack
    nothing names: the stack is t (the snapshot did not take the pick)."""
    viewer, widget = make_widget(sync=False, preload=False)
    c = widget.controller
    widget._axis_kind.setCurrentIndex(1)
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="snap")
    widget.wait()
    assert c.image_layer.name == "snap", c.status
    viewer.add_image(blob_stack(z=8), name="bleach")
    pick(widget, "bleach")
    assert c.image_layer.name == "bleach" and c.axis_kind == "t", c.status
    assert widget._axis_kind.currentIndex() == 1


def test_a_2d_image_that_becomes_a_stack_is_told_its_stack_axis(make_widget):
    """A 2D image picked after a time series, its data then replaced by a stack nothing
    names and picked again after the time series: z, said on the status line as for an
    image nothing names (not 'as set for it before')."""
    viewer, widget = make_widget(blob_stack(z=8), name="lapse", sync=False, preload=False,
                                 axis_labels=("t", "y", "x"))
    c = widget.controller
    viewer.add_image(np.random.default_rng(0).random((64, 64)), name="snap")
    pick(widget, "snap")
    assert "Stack axis is" not in c.status, c.status
    viewer.layers["snap"].data = blob_stack(z=8, seed=3)
    pick(widget, "lapse")
    assert c.axis_kind == "t", c.status
    pick(widget, "snap")
    assert c.source.is_3d and c.axis_kind == "z", c.status
    assert ("Stack axis is z: nothing names the axes of 'snap', a volume" in c.status), c.status
