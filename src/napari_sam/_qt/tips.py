"""The dock's tooltips: what each control does (with its key, where it has one), and the
full entry of a combo box, which the dock's narrow column elides ("demo (bundled, synth").

Controls are found by what the user reads: a form row's label ("Model"), a button's or a
check box's text ("Commit"). A tooltip set where a control is made is kept.

The tooltips here (and the keys' help) speak of the stack in slices: in a time series
('Stack axis is' t) they are told in frames (:func:`tell_stack_axis`), as the status lines
are. Every "slice" in these tables is one of the stack. A control whose tooltip, set where it
is made, speaks of the stack's slices keeps it as its :data:`AXIS_TIP` too (the keys' help,
'Model sees the layer's contrast'), or it said slices in a time series.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from napari_sam.words import in_frames

__all__ = ["AXIS_TIP", "BUTTON_TIPS", "FIELD_TIPS", "ComboTips", "add_tips", "tell_stack_axis"]

#: The Qt property of a control that holds its tooltip in a volume's words (slices), told in
#: frames in a time series by :func:`tell_stack_axis`
AXIS_TIP = "stack_axis_tip"

#: Tooltips of the fields of a form row, by the row's label
FIELD_TIPS = {
    "Image": "The image layer to segment: 2D (grey or RGB), a 3D stack or a time series, or "
             "a movie of volumes (T, Z, Y, X): the time point the time slider shows.",
    "Model": "The SAM model: 'demo' (bundled, trained on synthetic images only: for trying), "
             "a registry model (downloaded once, verified) or 'Checkpoint file...' (Meta's, "
             "micro-sam's or your own napari-sam train output).",
    "Device": "Where the model runs: 'auto' (CUDA, then Apple MPS, then CPU) or a device of "
              "this machine; the line below says what runs where.",
    "Embedding store": "Optional folder.zarr: embeddings are written there and reused next "
                       "time (also those precomputed by 'napari-sam embed').",
    "Labels layer": "The labels layer the next commit goes into: a new 'segmentation' layer "
                    "(made at the first commit), or a labels layer that fits the image.",
    "Propagate": "Which objects Propagate carries through the stack: those prompted on this "
                 "slice, or every object with prompts (prompts of one object on two slices "
                 "fill the gap between them).",
    "Propagate with": "SAM 2 memory (SAM 2 models): the model carries the object from slice "
                      "to slice with the masks and features of earlier slices, and stops where "
                      "it finds the object absent. SAM 1 re-prompting (SAM 1 models): each "
                      "slice is prompted from the last mask, with stop rules against drift.",
    "Stack axis is": "z: a volume (an object ends where it fades or changes shape); t: a time "
                     "series (objects fade, move and change size over frames). An image file "
                     "that names its axes sets it.",
    "Predicted IoU threshold": "Segment everything keeps masks whose predicted IoU (the "
                               "model's own quality score) is at least this: higher keeps "
                               "fewer, better masks. Picking a model sets its recommendation.",
    "Stability threshold": "Segment everything keeps masks that change little when the mask "
                           "threshold moves (stability score at least this): higher keeps "
                           "fewer, crisper masks. Picking a model sets its recommendation.",
    "Minimum size (pixels)": "Segment everything fills holes and drops islands smaller than "
                             "this many pixels in each mask; 0: off.",
    "Precision": "Compute precision of the model: 'auto' (shown above), 'fp32' (exact "
                 "float32, slower on CPUs with native bf16), 'bf16' (faster where the hardware "
                 "has it; masks agree with fp32 ones at IoU >= 0.98).",
    "Where": "Segment everything on the current slice, or on the whole stack (the slices' "
             "objects linked into 3D objects).",
}

#: Tooltips of buttons and check boxes, by their text (its first line; a button's second
#: line is its key, added to the tooltip)
BUTTON_TIPS = {
    "...": "Pick the embedding store: a .zarr folder.",
    "Tile large images": "Embed images over 1.5 model inputs wide (SAM: 1536 px, the demo: "
                         "384 px) at full resolution in overlapping tiles of the model input's "
                         "size, so small objects keep their detail; off: shrink each slice to "
                         "the model input.",
    "Compute embeddings": "Encode every slice now, in the background (Cancel stops it). "
                          "Without it the visible slice is encoded once an image and a model "
                          "are chosen, other slices when first clicked. With a SAM 2 model "
                          "this speeds up clicks only: Propagate encodes the slices itself.",
    "Negative points  (N)": "New points cut from the object (negative, magenta) instead of "
                            "adding to it; Shift-click adds one negative point. Key: N.",
    "Live preview": "Preview the object at every prompt change; off: press Segment (Shift+S) "
                    "to compute the preview.",
    "Segment": "Preview the objects of the prompts on this slice now (needed with Live "
               "preview off).",
    "Next mask": "Show the next of the three candidate masks of a single click (a nucleus, "
                 "its nucleolus, a clump); commit and Propagate use the one shown.",
    "Clear": "Remove the prompts and the preview; labels stay as they are.",
    "Commit": "Write the preview into the labels layer (a new id per object) and clear the "
              "prompts.",
    "Propagate": "Carry the objects through the stack, slice by slice; the result is "
                 "previewed, for Commit or Clear.",
    "Segment everything": "Find every object (settings above) on the current slice or the "
                          "whole stack, into a new 'automatic segmentation' labels layer.",
    "Propagate objects through the stack": "Whole stack: after linking the slices' objects, "
                                           "propagate each one from the slice where it is "
                                           "largest, so objects missed on some slices get "
                                           "their full extent (slower by about a fifth).",
    "Save session...": "Save the session (image, model, commits with their prompts, prompts "
                       "not committed) as a .json file with its labels TIFF beside it.",
    "Load session...": "Load a saved session: its labels into a new 'segmentation' layer, "
                       "its uncommitted prompts back into the SAM layers.",
    "Resume": "Load the session saved for this image: its labels and uncommitted prompts.",
    "Ignore": "Go on without the saved session (it is kept beside the image, not "
              "overwritten).",
    "Cancel": "Stop the running job; the layers stay as they were.",
}


def _form_labels(root) -> dict:
    """Each field widget of the forms under ``root`` -> its row's label text (or the text
    of the label whose buddy it is)."""
    named = {}
    for form in root.findChildren(QFormLayout):
        for row in range(form.rowCount()):
            label = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            field = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
            if label is None or field is None or not isinstance(label.widget(), QLabel):
                continue
            layout = field.layout()
            widgets = ([layout.itemAt(i).widget() for i in range(layout.count())]
                       if layout is not None else [field.widget()])
            for widget in widgets:
                if widget is not None:
                    named[widget] = label.widget().text()
    for label in root.findChildren(QLabel):  # a label on a row of its own ('Model', above
        if label.buddy() is not None:  # its box, as wide as the dock): its buddy's
            named.setdefault(label.buddy(), label.text())
    return named


def _button_tip(button) -> str:
    """A button's tooltip from :data:`BUTTON_TIPS`, with its key (its second line)."""
    first, _, key = button.text().partition("\n")
    tip = BUTTON_TIPS.get(first, "")
    return f"{tip} Key: {key}." if tip and key else tip


def _set_tip(widget, tip: str) -> None:
    """Give ``widget`` tooltip ``tip`` (in a volume's words: kept as its :data:`AXIS_TIP`)."""
    widget.setToolTip(tip)
    if "slice" in tip:
        widget.setProperty(AXIS_TIP, tip)


def add_tips(root, axis_kind: str = "z") -> ComboTips:
    """Give every button, check box, combo box, spin box and text field under ``root``
    without a tooltip the one of its text or row label, told in the words of stack axis
    ``axis_kind`` (:func:`tell_stack_axis`), and make each combo box's tooltip lead with its
    full current entry (:class:`ComboTips`, returned: a child of ``root``)."""
    labels = _form_labels(root)
    for widget in root.findChildren(QAbstractButton):
        if not widget.toolTip():
            _set_tip(widget, _button_tip(widget))
    for kind in (QComboBox, QAbstractSpinBox, QLineEdit):
        for widget in root.findChildren(kind):
            if not widget.toolTip() and widget in labels:
                _set_tip(widget, FIELD_TIPS.get(labels[widget], ""))
    combos = ComboTips(root)
    for box in root.findChildren(QComboBox):
        combos.follow(box)
    tell_stack_axis(root, axis_kind)
    return combos


def tell_stack_axis(root, axis_kind: str) -> None:
    """Tell the tooltips under ``root`` that speak of the stack (those with an
    :data:`AXIS_TIP`) in the words of stack axis ``axis_kind``: frames where it is "t" (a
    time series), slices where it is "z" (:func:`~napari_sam.words.in_frames`)."""
    for widget in root.findChildren(QWidget):
        tip = widget.property(AXIS_TIP)
        if not tip:
            continue
        tip = in_frames(tip, axis_kind)
        if isinstance(widget, QComboBox) and widget.property("fixed_tip") is not None:
            widget.setProperty("fixed_tip", tip)  # (after the entry: ComboTips)
            ComboTips.update(widget)
        else:
            widget.setToolTip(tip)


class ComboTips(QObject):
    """Combo boxes whose tooltip is "<current entry> — <what the box is>", kept up to date
    when the entry changes, also where the dock refills a box with its signals blocked (then
    when the tooltip is asked for)."""

    def follow(self, box: QComboBox) -> None:
        box.setProperty("fixed_tip", box.toolTip())
        box.currentTextChanged.connect(lambda *_: self.update(box))
        box.installEventFilter(self)
        self.update(box)

    @staticmethod
    def update(box: QComboBox) -> None:
        fixed, text = box.property("fixed_tip") or "", box.currentText()
        box.setToolTip(f"{text} — {fixed}" if text and fixed else text or fixed)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ToolTip and isinstance(obj, QComboBox):
            self.update(obj)
        return False
