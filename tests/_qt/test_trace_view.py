"""The trace panel explains its plots: a legend names every line and mark."""

from __future__ import annotations


def test_trace_panel_has_a_legend_naming_each_line(qtbot):
    from napari_sam._qt.trace_view import COLOURS, FLAG_COLOUR, TraceView

    jumps = []
    view = TraceView(jumps.append, lambda flag: None)
    qtbot.addWidget(view)
    assert not hasattr(view, "legend")  # nothing to explain before a propagation
    trace = {"n_slices": 5, "objects": [{
        "id": 1, "slices": [1, 2, 3], "iou": [0.9, 0.8, 0.7], "area": [10, 20, 15],
        "contrast": [5.0, 6.0, 2.0], "annotated": [2], "stops": {},
        "flags": [{"slice": 3, "kind": "score_drop", "text": "score drop"}]}]}
    view.set_trace(trace)
    text = view.legend.text()
    for word, colour in (("predicted IoU", COLOURS["iou"]), ("area", COLOURS["area"]),
                         ("contrast", COLOURS["contrast"]), ("flagged slice", FLAG_COLOUR)):
        assert word in text and colour in text
    assert "annotated slice" in text
    view.plots[0].mousePressEvent(type("E", (), {"pos": lambda self: _Pos()})())
    assert jumps == [view.plots[0].slice_at(_Pos().x())]


class _Pos:
    def x(self):
        return 3.0


def test_trace_titles_say_why_in_the_status_lines_words(qtbot):
    """Each object's title names why it stopped as the status line does ("shape changed",
    not the code "iou", which reads like the predicted-IoU curve beside it)."""
    from qtpy.QtWidgets import QLabel

    from napari_sam._qt.trace_view import TraceView
    from napari_sam.annotate.stack_actions import describe_stops

    view = TraceView(lambda z: None, lambda flag: None)
    qtbot.addWidget(view)
    stops = {"up": {"slice": 25, "reason": "rebounded"}, "down": {"slice": 20, "reason": "iou"}}
    view.set_trace({"n_slices": 30, "objects": [{
        "id": 7, "slices": list(range(20, 26)), "iou": [0.8] * 6, "area": [10] * 6,
        "contrast": [5.0] * 6, "annotated": [22], "stops": stops, "flags": []}]})
    titles = [w.text() for w in view.findChildren(QLabel) if w.text().startswith("Object 7")]
    assert titles == ["Object 7: slices 20-25 (stopped down at 20: shape changed, up at 25: "
                      "ran into the next object)"]
    status = describe_stops({7: {d: s["reason"] for d, s in stops.items()}})
    assert "shape changed" in status and "ran into the next object" in status


def test_a_trace_with_slices_without_a_mask_names_them(qtbot):
    """Slices without a mask between an object's prompts: the title names both runs (it said
    one range over the hole, session 26)."""
    from qtpy.QtWidgets import QLabel

    from napari_sam._qt.trace_view import TraceView

    view = TraceView(lambda z: None, lambda flag: None)
    qtbot.addWidget(view)
    zs = [*range(0, 7), *range(10, 16)]
    view.set_trace({"n_slices": 16, "objects": [{
        "id": 1, "slices": zs, "iou": [0.8] * len(zs), "area": [10] * len(zs),
        "contrast": [5.0] * len(zs), "annotated": [3, 10], "stops": {}, "flags": []}]})
    titles = [w.text() for w in view.findChildren(QLabel) if w.text().startswith("Object 1")]
    assert titles == ["Object 1: slices 0-6 and 10-15 (stopped nowhere)"]
    view.plots[0].grab()  # paints the two runs



def test_an_object_on_one_slice_is_drawn_as_dots(qtbot):
    """A propagation that kept the object on its prompted slice only (SAM 2 found it absent
    around it): the plot was an empty box with one dashed line (helper walk-through, session
    31); each value is now a dot of its colour."""
    from qtpy.QtGui import QColor

    from napari_sam._qt.trace_view import COLOURS, TraceView

    view = TraceView(lambda z: None, lambda flag: None)
    qtbot.addWidget(view)
    view.set_trace({"n_slices": 9, "objects": [{
        "id": 1, "slices": [4], "iou": [0.9], "area": [10], "contrast": [5.0],
        "annotated": [4], "stops": {}, "flags": []}]})
    plot = view.plots[0]
    plot.resize(300, 70)
    image = plot.grab().toImage()
    colours = {image.pixelColor(x, y).name() for x in range(image.width())
               for y in range(image.height())}
    wanted = {QColor(c).name() for c in COLOURS.values()}
    assert wanted & colours, colours
