"""The dock's group boxes, built (``DockPanels``, a mixin of
:class:`~napari_sam._qt.widget.SamWidget`): *Setup*, *Prompts*, *Commit*, *3D*,
*Propagation trace*, *Segment everything* and *Session*, each control connected to the
widget's ``_on_*`` handler or to the controller's option it sets; the widget lays them out.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_sam.annotate.model_choice import (
    DEMO_LABEL,
    DEMO_NOTICE,
    PRECISION_CHOICES,
    device_choices,
)
from napari_sam.annotate.stack_actions import PROPAGATION_METHODS

from .channel_boxes import ChannelBoxes
from .controls import button, check, combo, help_button, key_of, label, row_of
from .movie_axis import MovieAxisRow
from .trace_view import TraceView

__all__ = ["DockPanels"]


class DockPanels:
    """The builders of the dock's group boxes (a mixin of the widget: ``viewer``,
    ``controller`` and the ``_on_*`` handlers are the widget's); each keeps its controls as
    the widget's attributes (``self._image``, ``self._target``, ``self._pps``, ...)."""

    def _option(self, text: str, attr: str, checked: bool = False,
                tip: str | None = None) -> QCheckBox:
        """A check box that sets the controller's boolean ``attr``."""
        return check(text, checked, tip, toggled=lambda on: setattr(self.controller, attr, on))

    def _build_setup(self) -> QGroupBox:
        box = QGroupBox("Setup")
        form = QFormLayout(box)
        self._image = combo(changed=self._on_image_changed)
        form.addRow("Image", self._image)
        self._channels = ChannelBoxes(self.viewer, self._on_image_changed)
        self._channels.add_rows(form)
        self._movie_axis = MovieAxisRow(lambda: self._on_movie_axis(True),
                                        lambda: self._on_movie_axis(False))
        form.addRow(self._movie_axis)  # (shown while a 4D image's first axis is in doubt)
        self._model = combo()
        self._connect_model_box()
        # under its label, as wide as the dock: beside the label column a dock of napari's
        # default width cut the closed box to 'demo (bundled, s', 'sam2.1_hiera_'
        model_label = QLabel("Model")
        model_label.setBuddy(self._model)
        form.addRow(model_label)
        form.addRow(self._model)
        self._device = combo(device_choices(import_torch=False), changed=self._on_device_changed)
        form.addRow("Device", self._device)
        self._device_info = label(tip=(
            "Where the model runs and in which precision, and why ('auto' picks bf16 on GPUs "
            "that support it and on CPUs with native bf16, fp32 elsewhere; the environment "
            "variable NAPARI_SAM_PRECISION changes what 'auto' means)."
        ))
        form.addRow(self._device_info)
        self._precision = combo(PRECISION_CHOICES, changed=self._on_precision_changed)
        form.addRow("Precision", self._precision)
        self._tile = check("Tile large images", True,  # (its tooltip: tips.BUTTON_TIPS)
                           toggled=lambda on: self._on_tile_changed(on))
        form.addRow(self._tile)
        store_row = QHBoxLayout()
        self._store = QLineEdit()
        self._store.setPlaceholderText("optional: folder.zarr to keep embeddings")
        self._store.editingFinished.connect(lambda: self._on_store_changed())
        browse = QToolButton()
        browse.setText("...")
        browse.clicked.connect(lambda *_: self._browse_store())
        store_row.addWidget(self._store)
        store_row.addWidget(browse)
        form.addRow("Embedding store", store_row)
        self._emb_state = label()  # beside its button, not under a label column as wide
        form.addRow(row_of(button("Compute embeddings", None, self._on_compute), self._emb_state))
        self._demo = label(DEMO_LABEL, tip=DEMO_NOTICE)
        self._demo.setStyleSheet("color: #f0c000;")
        form.addRow(self._demo)
        return box

    def _build_prompting(self) -> QGroupBox:
        box = QGroupBox("Prompts")
        v = QVBoxLayout(box)
        top = QHBoxLayout()
        self._negative = check("Negative points  (N)",
                               toggled=lambda on: self._on_negative_changed(on))
        self._live = self._option("Live preview", "live", True)
        self._help = help_btn = help_button()
        top.addWidget(self._negative)
        top.addWidget(self._live)
        v.addLayout(top)
        row = QHBoxLayout()
        row.addWidget(button("Segment", key_of("segment"), self._on_segment))
        row.addWidget(button("Next mask", key_of("next_candidate"), self._on_next_candidate))
        row.addWidget(button("Clear", key_of("clear"), self._on_clear))
        row.addWidget(help_btn)
        v.addLayout(row)
        self._refine = check(
            "Refine selected label", False,
            "Select a label in the target labels layer (picker tool), then click: its mask "
            "is the starting point and the commit replaces it.",
            toggled=lambda on: self.controller.set_refine(on),
        )
        v.addWidget(self._refine)
        return box

    def _build_commit(self) -> QGroupBox:
        box = QGroupBox("Commit")
        v = QVBoxLayout(box)
        form = QFormLayout()
        self._target = combo()
        self._target.activated.connect(lambda *_: self._on_target_changed())
        form.addRow("Labels layer", self._target)
        v.addLayout(form)
        self._overwrite = self._option(
            "Overwrite other labels", "overwrite",
            tip="Off: pixels that belong to other objects are never changed.",
        )
        v.addWidget(self._overwrite)
        row = QHBoxLayout()
        row.addWidget(button("Commit", key_of("commit"), self._on_commit))
        self._history = [button(t, key_of(t.lower()), getattr(self, f"_on_{t.lower()}"))
                         for t in ("Undo", "Redo")]  # enabled by HistoryButtons
        for btn in self._history:
            row.addWidget(btn)
        v.addLayout(row)
        return box

    def _build_volume(self) -> QGroupBox:
        box = QGroupBox("3D")
        form = QFormLayout(box)
        self._scope = combo(["objects on this slice", "all objects with prompts"])
        form.addRow("Propagate", self._scope)
        self._method = combo(changed=self._on_method_changed)  # (tooltip: tips.FIELD_TIPS)
        for method, text in PROPAGATION_METHODS.items():
            self._method.addItem(text, method)
        form.addRow("Propagate with", self._method)
        self._axis_kind = combo(["z (volume)", "t (time series)"],
                                changed=lambda: self._on_axis_kind_changed())
        form.addRow("Stack axis is", self._axis_kind)
        form.addRow(button("Propagate", key_of("propagate"), self._on_propagate))
        return box

    def _build_trace(self) -> QGroupBox:
        box = QGroupBox("Propagation trace")
        v = QVBoxLayout(box)
        self._trace = TraceView(self._on_trace_jump, self._on_trace_fix)
        v.addWidget(self._trace)
        return box

    def _build_session(self) -> QGroupBox:
        box = QGroupBox("Session")
        v = QVBoxLayout(box)
        self._resume_label = label()
        self._resume_row = QWidget()
        rr = QHBoxLayout(self._resume_row)
        rr.setContentsMargins(0, 0, 0, 0)
        rr.addWidget(button("Resume", None, self._on_resume))
        rr.addWidget(button("Ignore", None, self._on_ignore_resume))
        v.addWidget(self._resume_label)
        v.addWidget(self._resume_row)
        self._resume_label.setVisible(False)
        self._resume_row.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(button("Save session...", None, self.save_session))
        row.addWidget(button("Load session...", None, self.load_session))
        v.addLayout(row)
        self._autosave = self._option(
            "Autosave next to the image", "autosave", True,
            tip="After each commit, writes <image>.sam-session.json (and its labels TIFF) "
                "beside an image opened "
                "from a file (under the cache folder when the image's folder is not writable, "
                "and for an image without a file, found again by its pixels: the status line "
                "says where); a crash loses nothing committed.",
        )
        v.addWidget(self._autosave)
        return box

    def _build_automatic(self) -> QGroupBox:
        box = QGroupBox("Segment everything")
        form = QFormLayout(box)
        self._pps = QSpinBox()
        self._pps.setRange(0, 128)
        self._pps.setSpecialValueText("auto")  # 0: napari_sam.automatic.auto_points_per_side
        self._pps.setValue(0)
        self._pps.setToolTip(
            "Prompt grid: 'auto' puts one point every 16 pixels of the image's short side "
            "(8 to 32 per side); a number sets the points per side (at least 4)."
        )
        form.addRow("Points per side", self._pps)
        self._fill_gaps = check(
            "Fill gaps", True,
            tip="Prompt again in large unlabelled regions after the grid pass, so objects "
                "between grid points are not missed.",
        )
        form.addRow(self._fill_gaps)
        self._iou = QDoubleSpinBox()
        self._iou.setRange(0.0, 1.0)
        self._iou.setSingleStep(0.02)
        self._iou.setValue(0.88)
        form.addRow("Predicted IoU threshold", self._iou)
        self._stability = QDoubleSpinBox()
        self._stability.setRange(0.0, 1.0)
        self._stability.setSingleStep(0.02)
        self._stability.setValue(0.95)  # the model's own, if it has any: _refresh_models
        form.addRow("Stability threshold", self._stability)
        self._min_size = QSpinBox()
        self._min_size.setRange(0, 1_000_000)
        self._min_size.setValue(0)
        form.addRow("Minimum size (pixels)", self._min_size)
        self._auto_scope = combo(["current slice", "whole stack"])
        form.addRow("Where", self._auto_scope)
        # (its tooltip, told in frames in a time series: tips.BUTTON_TIPS)
        self._auto_propagate = check("Propagate objects through the stack", True)
        self._auto_propagate.setEnabled(False)
        self._auto_scope.currentIndexChanged.connect(
            lambda i: self._auto_propagate.setEnabled(i == 1)
        )
        form.addRow(self._auto_propagate)
        form.addRow(button("Segment everything", None, self._on_automatic))
        return box
