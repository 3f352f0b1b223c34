"""'Stack axis is' changed after the dock has spoken: the propagation trace kept the words of
the axis it was propagated with ('Object 1: frames 1-7' in a volume), the tooltips and the
keys' help said 'slice' in a time series (set once, when the dock was made), and an image
refused was notified again at each renamed viewer axis, for the same reason (session 46)."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QPushButton
from sam_qt_helpers import blob_stack
from test_movie_dock_s42 import short_movie
from test_time_series_words_s45 import click_and_propagate, time_series_dock

from napari_sam._qt.tips import BUTTON_TIPS, FIELD_TIPS

SCOPE_TIP = ("Which objects Propagate carries through the stack: those prompted on this "
             "slice, or every object with prompts (prompts of one object on two slices fill "
             "the gap between them).")


def _trace_words(widget) -> list[str]:
    """What the trace panel says: its titles, legend, plots' tooltips, buttons and theirs."""
    trace = widget._trace
    titles = [w.text() for w in trace.findChildren(QLabel) if w.text().startswith("Object")]
    plots = [p.toolTip() for p in trace.plots]
    buttons = [t for b in trace.findChildren(QPushButton) for t in (b.text(), b.toolTip())]
    return [*titles, trace.legend.text(), *plots, *buttons]


def test_the_trace_shown_is_told_in_the_words_of_the_stack_axis_picked_after(
        make_widget, tiny_predictor):
    """A time series propagated, then 'Stack axis is' z: the trace says slices (it said
    frames), its numbers the same; t again: frames."""
    viewer, widget, c, _ = time_series_dock(make_widget, tiny_predictor)
    click_and_propagate(viewer, widget)
    trace = widget._trace.trace
    assert trace is not None and trace["objects"], c.status
    frames = _trace_words(widget)
    assert frames[0].startswith("Object 1: frames "), frames
    assert "(stopped earlier at " in frames[0] or "(stopped later at " in frames[0], frames
    assert "flagged frame</span>" in frames[1], frames
    widget._axis_kind.setCurrentIndex(0)  # z: a volume
    assert c.axis_kind == "z"
    slices = _trace_words(widget)
    assert widget._trace.trace is trace and len(slices) == len(frames), slices
    assert slices == [t.replace("frame", "slice").replace("earlier at", "down at").replace(
        "later at", "up at") for t in frames], (slices, frames)
    assert slices[0].startswith("Object 1: slices "), slices
    assert "earlier" not in slices[0] and "later" not in slices[0], slices
    assert "flagged slice</span>" in slices[1] and "annotated slice</span>" in slices[1]
    assert slices[2].endswith("Click to go to a slice."), slices
    assert not [t for t in slices if "frame" in t], slices
    widget._axis_kind.setCurrentIndex(1)  # t again
    assert _trace_words(widget) == frames


def test_tooltips_and_the_keys_help_say_frames_in_a_time_series(make_widget):
    """'Stack axis is' t: the tooltips of the stack (Compute embeddings, Propagate and its
    boxes, Segment everything's, the keys' help) say frames; z again: slices. Tooltips
    without slices are left as they are."""
    viewer, widget = make_widget(blob_stack(z=8), name="volume", sync=False, preload=False)
    c = widget.controller
    assert c.axis_kind == "z"
    compute = next(b for b in widget.findChildren(QPushButton)
                   if b.text() == "Compute embeddings")
    propagate = next(b for b in widget.findChildren(QPushButton)
                     if b.text().startswith("Propagate\n"))
    image_tip = widget._image.toolTip()
    volume = {"compute": compute.toolTip(), "propagate": propagate.toolTip(),
              "scope": widget._scope.toolTip(), "method": widget._method.toolTip(),
              "auto_propagate": widget._auto_propagate.toolTip(),
              "where": widget._auto_scope.toolTip(), "help": widget._help.toolTip()}
    assert volume["compute"] == BUTTON_TIPS["Compute embeddings"]
    assert volume["propagate"] == ("Carry the objects through the stack, slice by slice; the "
                                   "result is previewed, for Commit or Clear. Key: Shift+D.")
    assert volume["scope"] == f"objects on this slice — {SCOPE_TIP}"
    assert volume["method"].endswith(FIELD_TIPS["Propagate with"])
    assert volume["auto_propagate"] == BUTTON_TIPS["Propagate objects through the stack"]
    assert "Segment: preview the object on the current slice" in volume["help"]
    widget._axis_kind.setCurrentIndex(1)  # t: a time series
    assert c.axis_kind == "t"
    assert compute.toolTip() == ("Encode every frame now, in the background (Cancel stops it). "
                                 "Without it the visible frame is encoded once an image and a "
                                 "model are chosen, other frames when first clicked. With a "
                                 "SAM 2 model this speeds up clicks only: Propagate encodes "
                                 "the frames itself.")
    assert propagate.toolTip() == ("Carry the objects through the stack, frame by frame; the "
                                   "result is previewed, for Commit or Clear. Key: Shift+D.")
    assert widget._scope.toolTip() == ("objects on this frame — " + SCOPE_TIP.replace(
        "slice", "frame"))
    assert widget._method.toolTip().endswith(
        "the model carries the object from frame to frame with the masks and features of "
        "earlier frames, and stops where it finds the object absent. SAM 1 re-prompting (SAM "
        "1 models): each frame is prompted from the last mask, with stop rules against drift.")
    assert widget._auto_propagate.toolTip().startswith(
        "Whole stack: after linking the frames' objects, propagate each one from the frame")
    assert widget._auto_scope.toolTip().startswith(
        "current frame — Segment everything on the current frame, or on the whole stack")
    assert "Segment: preview the object on the current frame" in widget._help.toolTip()
    now = [compute.toolTip(), propagate.toolTip(), widget._scope.toolTip(),
           widget._method.toolTip(), widget._auto_propagate.toolTip(),
           widget._auto_scope.toolTip(), widget._help.toolTip()]
    assert not [t for t in now if "slice" in t], now
    assert widget._image.toolTip() == image_tip  # (no slices in it: as it was)
    widget._axis_kind.setCurrentIndex(0)  # z again
    assert {"compute": compute.toolTip(), "propagate": propagate.toolTip(),
            "scope": widget._scope.toolTip(), "method": widget._method.toolTip(),
            "auto_propagate": widget._auto_propagate.toolTip(),
            "where": widget._auto_scope.toolTip(), "help": widget._help.toolTip()} == volume


def test_a_dock_opened_on_a_time_series_says_frames_in_its_tooltips(make_widget):
    """The viewer's axes named ("t", "y", "x") before the dock opens: its tooltips say
    frames from the start."""
    viewer, widget = make_widget(blob_stack(z=8), name="lapse", sync=False, preload=False,
                                 axis_labels=("t", "y", "x"))
    assert widget.controller.axis_kind == "t"
    compute = next(b for b in widget.findChildren(QPushButton)
                   if b.text() == "Compute embeddings")
    assert compute.toolTip().startswith("Encode every frame now"), compute.toolTip()
    assert "on the current frame" in widget._help.toolTip()


def test_an_image_refused_is_not_notified_again_at_each_renamed_axis(notifications,
                                                                     make_widget):
    """A (3, Z, Y, X) array is asked about (time or channels?) once; the user renames the
    viewer's axes twice without naming time: the dock asks again (its status line) but
    napari's notification is not shown again; named 't': taken as a movie."""
    viewer, widget = make_widget(short_movie(), name="py", sync=False, preload=False)
    c = widget.controller
    widget.wait()

    def asked():
        return [m for _, m in notifications if m.startswith("Is axis 0 of 'py' (size 3)")]

    assert c.source is None and len(asked()) == 1, (c.status, notifications)
    question = asked()[0]
    viewer.dims.axis_labels = ("a", "z", "y", "x")
    widget.wait()
    viewer.dims.axis_labels = ("b", "z", "y", "x")
    widget.wait()
    assert c.source is None and widget._movie_axis.isVisibleTo(widget), c.status
    assert c.status.startswith(question), c.status  # (said in the status line)
    assert len(asked()) == 1, notifications
    viewer.dims.axis_labels = ("t", "z", "y", "x")  # the new names make it acceptable
    widget.wait()
    assert c.source is not None and c.source.time_axis == 0, c.status
    assert len(asked()) == 1, notifications


def test_the_contrast_box_tooltip_says_frames_in_a_time_series(make_widget):
    """'Model sees the layer's contrast' (its tooltip set where the box is made, in
    layer_contrast, not from tips' tables) says frames are embedded again in a time series:
    it said slices; z again: slices (review of session 46)."""
    from qtpy.QtWidgets import QCheckBox

    from napari_sam._qt.layer_contrast import BOX_TEXT, BOX_TIP

    viewer, widget = make_widget(blob_stack(z=8), name="lapse", sync=False, preload=False,
                                 axis_labels=("t", "y", "x"))
    assert widget.controller.axis_kind == "t"
    (box,) = [b for b in widget.findChildren(QCheckBox) if b.text() == BOX_TEXT]
    assert "frames are embedded again" in box.toolTip(), box.toolTip()
    assert box.toolTip() == BOX_TIP.replace("slice", "frame")
    widget._axis_kind.setCurrentIndex(0)  # z: a volume
    assert box.toolTip() == BOX_TIP
