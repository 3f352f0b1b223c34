"""The propagation trace in the dock: per object a small plot along the stack and its flags.

Each object gets a row: its slices and why it stopped, a plot drawn with QPainter (predicted
IoU in blue, area in green, contrast in orange, each scaled to its own range; annotated
slices as grey lines; flagged slices as red ticks), and one button per flag that jumps to
its slice. A flag with a fix ("stopped early") also gets "Add a point on slice z". Clicking
the plot jumps to the slice under the mouse. The numbers come from
:func:`napari_sam.trace.propagation_trace`.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from napari_sam.annotate.stack_actions import STOP_WORDS, TIME_WAYS
from napari_sam.trace import describe_slices, slice_runs
from napari_sam.words import in_frames

__all__ = ["TracePlot", "TraceView"]

COLOURS = {"iou": "#4aa0ff", "area": "#5ac85a", "contrast": "#f0aa28"}
FLAG_COLOUR = "#eb3c3c"
KIND_WORDS = {"stopped_early": "stopped early?", "area_jump": "area jump",
              "overlap": "overlaps another object", "score_drop": "score drop"}


LEGEND_WORDS = {"iou": "predicted IoU", "area": "area", "contrast": "contrast"}
#: why an object stopped, in the words of the status line
STOP_TITLE_WORDS = {**STOP_WORDS, "absent": "found absent"}


def legend_html(unit: str = "slice") -> str:
    """The plots' legend as rich text: one coloured line per quantity, flags, annotations
    (``unit``: "slice", or "frame" in a time series)."""
    items = [f'<span style="color:{COLOURS[k]}">&#9473;&#9473; {w}</span>'
             for k, w in LEGEND_WORDS.items()]
    items.append(f'<span style="color:{FLAG_COLOUR}">| flagged {unit}</span>')
    items.append(f'<span style="color:#999999">&#166; annotated {unit}</span>')
    return "&nbsp;&nbsp;".join(items) + " (IoU on 0-1; area and contrast scaled per object)"


class TracePlot(QWidget):
    """One object's numbers along the stack; ``on_jump(z)`` on a click (``unit``: "slice",
    or "frame" in a time series, for its tooltip)."""

    def __init__(self, obj: dict, n_slices: int, on_jump: Callable[[int], None],
                 unit: str = "slice"):
        super().__init__()
        self.obj, self.n_slices, self._on_jump = obj, max(1, int(n_slices)), on_jump
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(f"blue: predicted IoU, green: area, orange: contrast; red: flagged "
                        f"{unit}s; grey: annotated {unit}s. Click to go to a {unit}.")

    def x_of(self, z: float) -> float:
        return 6 + (self.width() - 12) * (z / max(1, self.n_slices - 1))

    def slice_at(self, x: float) -> int:
        z = round((x - 6) / max(1, self.width() - 12) * max(1, self.n_slices - 1))
        return int(min(max(z, 0), self.n_slices - 1))

    def paintEvent(self, event):  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        h = self.height()
        p.fillRect(self.rect(), QColor("#1e1e22"))
        p.setPen(QPen(QColor("#777777"), 1, Qt.PenStyle.DashLine))
        for z in self.obj.get("annotated", []):
            p.drawLine(QPointF(self.x_of(z), 2), QPointF(self.x_of(z), h - 2))
        p.setPen(QPen(QColor(FLAG_COLOUR), 2))
        for f in self.obj.get("flags", []):
            x = self.x_of(f["slice"])
            p.drawLine(QPointF(x, h - 12), QPointF(x, h - 2))
        for key, colour in COLOURS.items():
            pts = [(z, v) for z, v in zip(self.obj["slices"], self.obj[key]) if v is not None]
            if not pts:
                continue
            vals = [v for _, v in pts]
            lo, hi = (0.0, 1.0) if key == "iou" else (min(vals), max(vals))
            p.setPen(QPen(QColor(colour), 2))
            for a, b in slice_runs(z for z, _ in pts):  # no line across slices without a mask
                line = [QPointF(self.x_of(z), h - 14 - (h - 20) * (
                    0.5 if hi == lo else (v - lo) / (hi - lo))) for z, v in pts if a <= z <= b]
                if len(line) == 1:  # one slice (an object kept on its prompted slice): a dot
                    p.setBrush(QColor(colour))
                    p.drawEllipse(line[0], 3.0, 3.0)
                    p.setBrush(Qt.BrushStyle.NoBrush)
                else:
                    p.drawPolyline(QPolygonF(line))
        p.end()

    def mousePressEvent(self, event):  # noqa: N802 - Qt's name
        pos = event.position() if hasattr(event, "position") else event.pos()
        self._on_jump(self.slice_at(pos.x()))


class TraceView(QWidget):
    """Rows of :class:`TracePlot` with flag buttons; ``set_trace(trace or None)``, told again
    in the words of another stack axis by :meth:`set_axis_kind`."""

    def __init__(self, on_jump: Callable[[int], None], on_fix: Callable[[dict], None]):
        super().__init__()
        self._on_jump, self._on_fix = on_jump, on_fix
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.plots: list[TracePlot] = []
        self.flag_buttons: list[tuple[QPushButton, dict]] = []
        self.fix_buttons: list[tuple[QPushButton, dict]] = []
        self.trace: dict | None = None  # the trace shown, and the stack axis it is told in
        self.axis_kind = "z"
        self.set_trace(None)

    def _clear(self) -> None:
        while self._layout.count():
            w = self._layout.takeAt(0).widget()
            if w is not None:
                w.hide()
                w.setParent(None)
                w.deleteLater()
        self.plots, self.flag_buttons, self.fix_buttons = [], [], []

    def set_trace(self, trace: dict | None, axis_kind: str = "z") -> None:
        """Show ``trace`` (None: a hint to propagate); ``axis_kind`` "t": the stack is a time
        series, told in frames, earlier and later (as the status line tells it), not slices,
        up and down."""
        self.trace, self.axis_kind = trace, axis_kind
        unit = in_frames("slice", axis_kind)
        ways = TIME_WAYS if axis_kind == "t" else {}
        self._clear()
        objects = (trace or {}).get("objects") or []
        if not objects:
            empty = QLabel("Propagate to see each object's trace here.")
            empty.setWordWrap(True)  # one line made the dock 397 px wide at least
            self._layout.addWidget(empty)
            return
        n = int(trace.get("n_slices") or 1)
        self.legend = QLabel(legend_html(unit))
        self.legend.setWordWrap(True)
        self._layout.addWidget(self.legend)
        for obj in objects:
            # the status line's words for each reason (e.g. "shape changed", not "iou")
            words = STOP_TITLE_WORDS
            stops = ", ".join(f"{ways.get(d, d)} at {s['slice']}: "
                              f"{words.get(s['reason'], s['reason'])}"
                              for d, s in sorted(obj.get("stops", {}).items()))
            title = QLabel(f"Object {obj['id']}: {unit}s {describe_slices(obj['slices'])}"
                           f" (stopped {stops or 'nowhere'})")
            title.setWordWrap(True)
            self._layout.addWidget(title)
            plot = TracePlot(obj, n, self._on_jump, unit)
            self.plots.append(plot)
            self._layout.addWidget(plot)
            for flag in obj.get("flags", []):
                btn = QPushButton(f"{unit} {flag['slice']}: "
                                  f"{KIND_WORDS.get(flag['kind'], flag['kind'])}")
                # (the trace's words are of slices: a time series is told in frames)
                btn.setToolTip(in_frames(flag["text"], axis_kind))
                btn.setStyleSheet(f"text-align: left; color: {FLAG_COLOUR};")
                btn.clicked.connect(lambda *_, z=flag["slice"]: self._on_jump(int(z)))
                self.flag_buttons.append((btn, flag))
                self._layout.addWidget(btn)
                if flag.get("fix"):
                    fix = QPushButton(f"Add a point on {unit} {flag['fix']['slice']}")
                    fix.clicked.connect(lambda *_, f=flag: self._on_fix(f))
                    self.fix_buttons.append((fix, flag))
                    self._layout.addWidget(fix)

    def set_axis_kind(self, axis_kind: str) -> None:
        """Tell the trace shown in the words of stack axis ``axis_kind`` ("t": frames), as
        'Stack axis is' now says (it kept the words of the axis it was propagated with)."""
        if axis_kind != self.axis_kind:
            self.set_trace(self.trace, axis_kind)
