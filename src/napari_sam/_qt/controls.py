"""The dock's small controls, made one way: push buttons with their key, word-wrapped labels,
combo boxes that elide long items, check boxes, the '?' button of the keys."""

from __future__ import annotations

from qtpy.QtCore import QPoint
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QToolTip,
)

from . import keys
from .tips import AXIS_TIP

__all__ = ["button", "check", "combo", "help_button", "key_of", "label", "row_of"]


def button(text: str, key: str | None, slot) -> QPushButton:
    """A push button; its key (if any) on a second line, so that a row of three fits a
    narrow dock (one line, "Next mask  (Shift+M)", made the dock 460-550 px wide)."""
    btn = QPushButton(text + (f"\n{key.replace('-', '+')}" if key else ""))
    btn.clicked.connect(lambda *_: slot())
    return btn


def key_of(action: str) -> str | None:
    """The key bound to ``action`` (e.g. "Shift-C"), or None."""
    return next((k.key for k in keys.KEYS if k.action == action), None)


def label(text: str = "", tip: str | None = None) -> QLabel:
    """A word-wrapped label (with a tooltip)."""
    widget = QLabel(text)
    widget.setWordWrap(True)
    if tip:
        widget.setToolTip(tip)
    return widget


def row_of(*widgets) -> QHBoxLayout:
    """A row of ``widgets`` (a form's row spanning both columns: a button there would widen
    the labels' column to its text)."""
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    return row


def combo(items=(), tip: str | None = None, changed=None) -> QComboBox:
    """A combo box of ``items``; ``changed()`` runs when the user or code picks another."""
    box = QComboBox()
    box.addItems(list(items))
    # as wide as the dock allows, not as the longest item (a model's description, a layer's
    # name): the closed box elides, the open list shows the whole text
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(12)
    if tip:
        box.setToolTip(tip)
    if changed is not None:
        box.currentIndexChanged.connect(lambda *_: changed())
    return box


def check(text: str, checked: bool = False, tip: str | None = None, toggled=None) -> QCheckBox:
    """A check box; ``toggled(on)`` runs when it changes."""
    box = QCheckBox(text)
    box.setChecked(checked)
    if tip:
        box.setToolTip(tip)
    if toggled is not None:
        box.toggled.connect(toggled)
    return box


def help_button() -> QToolButton:
    """The '?' button: the keys and mouse gestures (:func:`keys.help_html`) as its tooltip,
    and shown on a click (or Space, for keyboard users, who have no hover)."""
    btn = QToolButton()
    btn.setText("?")
    btn.setToolTip(keys.help_html())
    btn.setProperty(AXIS_TIP, keys.help_html())  # (frames in a time series: tell_stack_axis)
    btn.clicked.connect(lambda *_: QToolTip.showText(
        btn.mapToGlobal(QPoint(0, btn.height())), btn.toolTip(), btn))
    return btn
