"""*Stack axis is* belongs to the image (session 46): it carried over from the image picked
before, so an unlabelled (Z, Y, X) volume picked after a (T, Y, X) time series (t by its
file, its axis labels or by hand) stayed t: propagated with the rules for time, its boxes
speaking of frames. Each image keeps its own; an image nothing names gets z."""

from __future__ import annotations

import gc
import weakref

import tifffile
from sam_qt_helpers import blob_stack

from napari_sam._qt import layers as L

VOLUME_NOTE = ("Stack axis is z: nothing names the axes of 'vol', a volume: objects are "
               "followed through its slices (change it in 'Stack axis is').")


def pick(widget, name: str) -> None:
    """Pick image layer ``name`` in the dock's image box, as the user does."""
    widget._image.setCurrentIndex(widget._image.findData(name))
    widget.wait()


def test_a_volume_after_a_labelled_time_series_is_a_volume(make_widget):
    """A time series labelled ("t", "y", "x"), then an unlabelled volume: z, said on the
    status line; back to the time series: t again."""
    viewer, widget = make_widget(blob_stack(z=8), name="lapse", sync=False, preload=False,
                                 axis_labels=("t", "y", "x"))
    c = widget.controller
    assert c.axis_kind == "t", c.status
    viewer.add_image(blob_stack(z=8, seed=1), name="vol")
    pick(widget, "vol")
    assert c.image_layer.name == "vol" and c.axis_kind == "z", c.status
    assert widget._axis_kind.currentIndex() == 0
    assert VOLUME_NOTE in c.status, c.status
    assert widget._scope.itemText(0) == "objects on this slice"
    assert widget._auto_scope.itemText(0) == "current slice"
    pick(widget, "lapse")
    assert c.axis_kind == "t" and widget._axis_kind.currentIndex() == 1, c.status
    assert widget._scope.itemText(0) == "objects on this frame"


def test_a_volume_after_a_time_series_file_is_a_volume(make_widget, tmp_path):
    """A TYX file opened with napari's reader (its file says t), then a volume added from
    Python: z."""
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, blob_stack(z=8), imagej=True, metadata={"axes": "TYX"})
    viewer, widget = make_widget(sync=False, preload=False)
    viewer.open(str(path), plugin="napari")
    widget.wait()
    c = widget.controller
    assert c.image_layer.name == "movie" and c.axis_kind == "t", c.status
    viewer.add_image(blob_stack(z=8, seed=1), name="vol")
    pick(widget, "vol")
    assert c.axis_kind == "z" and VOLUME_NOTE in c.status, c.status
    pick(widget, "movie")
    assert c.axis_kind == "t", c.status


def test_a_pick_by_hand_stays_with_its_image(make_widget):
    """A volume set to t by hand, another image picked (z, its own), back: t, and the
    boxes speak of frames again."""
    viewer, widget = make_widget(blob_stack(z=8), name="bleach", sync=False, preload=False)
    c = widget.controller
    viewer.add_image(blob_stack(z=8, seed=1), name="vol")
    pick(widget, "bleach")
    widget._axis_kind.setCurrentIndex(1)  # the user: a time series
    assert c.axis_kind == "t"
    pick(widget, "vol")
    assert c.axis_kind == "z" and VOLUME_NOTE in c.status, c.status
    assert widget._scope.itemText(0) == "objects on this slice"
    pick(widget, "bleach")
    assert c.axis_kind == "t" and widget._axis_kind.currentIndex() == 1, c.status
    assert widget._scope.itemText(0) == "objects on this frame"
    assert widget._auto_scope.itemText(0) == "current frame"


def test_a_removed_image_is_not_kept_alive(make_widget):
    """The stack axis kept for an image does not keep the layer once it is removed."""
    viewer, widget = make_widget(blob_stack(z=8), name="lapse", sync=False, preload=False,
                                 axis_labels=("t", "y", "x"))
    viewer.add_image(blob_stack(z=8, seed=1), name="vol")
    pick(widget, "vol")
    gone = weakref.ref(L.unwrap(viewer.layers["lapse"]))
    assert widget._stack_axes.recall(gone()) == "t"
    viewer.layers.remove("lapse")
    widget.wait()
    gc.collect()
    assert widget._stack_axes.recall(gone()) is None


def test_a_pick_before_any_image_goes_to_the_first_image(make_widget):
    """'Stack axis is' t picked while no image is open: the first image picked that nothing
    names keeps it (not set back to z); a second one nothing names gets z."""
    viewer, widget = make_widget(sync=False, preload=False)
    c = widget.controller
    widget._axis_kind.setCurrentIndex(1)
    viewer.add_image(blob_stack(z=8), name="bleach")
    widget.wait()
    assert c.image_layer.name == "bleach" and c.axis_kind == "t", c.status
    viewer.add_image(blob_stack(z=8, seed=1), name="vol")
    pick(widget, "vol")
    assert c.axis_kind == "z" and VOLUME_NOTE in c.status, c.status
