"""The dock in a narrow window: on a 1024 x 768 screen napari's canvas keeps most of the
width only if the dock can be about 330 px wide. Form labels wrap onto a second line (the
longest, "Predicted IoU threshold", set the labels' column), and no row is wider than it
must be; combo boxes elide their entry (:func:`~napari_sam._qt.controls.combo`)."""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QFormLayout, QLabel, QScrollArea

__all__ = ["fit_narrow"]


#: The side margins of the scrolled panels (Qt's default, 9 px, made the dock 10 px wider)
SIDE_MARGIN = 4


class _WrapHeight(QObject):
    """Keeps a wrapped form label as high as its lines at its width: a form gives its
    labels the field's height (one line), so the second line of "Propagate with" was cut."""

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Resize:
            need = obj.heightForWidth(obj.width())
            if need > 0 and need != obj.minimumHeight():
                obj.setMinimumHeight(need)
        return False


def fit_narrow(root) -> None:
    """Let the labels of the forms under ``root`` wrap (a word per line at the narrowest),
    and narrow the side margins of the panels that ``root``'s scroll area holds."""
    for area in root.findChildren(QScrollArea, options=Qt.FindChildOption.FindDirectChildrenOnly):
        layout = area.widget().layout() if area.widget() is not None else None
        if layout is not None:
            m = layout.contentsMargins()
            layout.setContentsMargins(SIDE_MARGIN, m.top(), SIDE_MARGIN, m.bottom())
    heights = _WrapHeight(root)
    for form in root.findChildren(QFormLayout):
        for row in range(form.rowCount()):
            item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            if item is not None and isinstance(item.widget(), QLabel):
                item.widget().setWordWrap(True)
                item.widget().installEventFilter(heights)
