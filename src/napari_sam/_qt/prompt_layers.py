"""The prompts in the 'SAM points' and 'SAM boxes' layers (``PromptLayers``, a mixin of
:class:`~napari_sam._qt.controller.AnnotationController`): the session's prompt hooks read
and write them, and their mouse and data events preview a click or a drawn box, make a
Shift-click negative, and remove what the view cannot prompt (a click where the view shows no
(Y, X) slice, a plain click on the boxes layer, a box across slices), the status saying why.
"""

from __future__ import annotations

import numpy as np

from napari_sam.annotate.errors import UserError

from . import layers as L
from .notify import guarded

__all__ = ["PromptLayers"]


class PromptLayers:
    """The prompt layers' hooks and events (a mixin of the controller: ``viewer``,
    ``source``, ``points_layer``, ``boxes_layer``, ``live``, ``status``; the flags
    ``_muted``, ``_negative_click``, ``_negative_mode``, ``_click_problem``,
    ``_press_boxes`` and ``_view_said`` are set by the controller's ``__init__``)."""

    def prompt_arrays(self):
        src = self.source
        pts, lab = L.read_points(self.points_layer, src)
        return pts, lab, L.boxes_from_layer(self.boxes_layer, src)

    def set_prompts(self, points, labels, boxes, times=None, box_times=None) -> None:
        """Show these prompts in the points and boxes layers (nothing is previewed); a
        movie's at the time point shown, or at ``times`` (P,) and ``box_times`` (N,)."""
        import pandas as pd

        src = self.source
        self._muted = True
        try:
            kinds = ["positive" if v else "negative" for v in labels]
            layer = self.points_layer
            layer.data = L.layer_coords(src, points, times)
            layer.features = pd.DataFrame(
                {"prompt": pd.Categorical(kinds, categories=L.PROMPT_KINDS)})
            layer.refresh_colors()
            if len(self.boxes_layer.data):
                self.boxes_layer.data = []
            rects = L.box_rectangles(src, boxes, box_times)
            if rects:
                self.boxes_layer.add(rects, shape_type="rectangle")
        finally:
            self._muted = False
        self._restore_default_kind()

    def add_point(self, z: int, row: float, col: float, positive: bool = True) -> None:
        """Add a point to the points layer (its events preview it when live)."""
        if self.points_layer is None:  # no image it can use: the status line says why
            raise UserError(self.status if "Cannot use" in self.status else self.next_step())
        z = self.prompt_slice(z)  # (shown: the preview is of the slice shown)
        self.set_negative(not positive)
        self.points_layer.add(L.layer_coords(self.source, [[z, row, col]]))

    def add_box(self, z: int, row0: float, col0: float, row1: float, col1: float) -> None:
        """Add a box to the boxes layer (its events preview it when live)."""
        if self.boxes_layer is None:  # no image it can use: the status line says why
            raise UserError(self.status if "Cannot use" in self.status else self.next_step())
        box = [self.prompt_slice(z), min(row0, row1), min(col0, col1), max(row0, row1), max(col0, col1)]
        self.boxes_layer.add(L.box_rectangles(self.source, [box]), shape_type="rectangle")

    def clear_prompts(self) -> None:
        self._muted = True
        try:  # (a movie's other time points keep theirs)
            L.drop_shown_prompts(self.points_layer, self.boxes_layer, self.source)
        finally:
            self._muted = False

    # ------------------------------------------------------------------ events
    def _on_points_press(self, layer, event):
        self._negative_click = "Shift" in event.modifiers
        self._click_problem = self.view_problem()  # the point this click adds is refused
        # napari makes a selected point's features the defaults for new points (a negative
        # Shift-click would make every later click negative): the mode decides, not history
        self._restore_default_kind()
        yield
        while event.type == "mouse_move":
            yield
        from qtpy.QtCore import QTimer

        # after napari's own release callbacks (the point is added on release)
        QTimer.singleShot(0, self._end_click)

    def _end_click(self) -> None:
        self._click_problem = None

    def _on_boxes_press(self, layer, event):
        """A drag on the boxes layer: where the view cannot prompt, the rectangles it draws
        are removed once napari has finished drawing them, and the status says why."""
        problem = self.view_problem()
        self._press_boxes = [] if problem else None  # napari adds the box on press
        yield
        while event.type == "mouse_move":
            yield
        from qtpy.QtCore import QTimer

        if problem:
            QTimer.singleShot(0, lambda: self._drop_boxes(problem))
        else:  # a plain click draws a rectangle of about 1.5 px, never a prompt
            QTimer.singleShot(0, self._drop_tiny_boxes)

    @guarded
    def _drop_tiny_boxes(self) -> None:
        """Remove the rectangles a plain click on the boxes layer made (a side under
        ``MIN_BOX_SIDE`` pixels: not prompts) and say how to draw a box or click points."""
        layer, src = self.boxes_layer, self.source
        if layer is None or src is None:
            return
        tiny = [i for i, (verts, kind) in enumerate(zip(layer.data, layer.shape_type))
                if kind == "rectangle"
                and np.ptp(src.to_zyx(verts)[:, 1:], axis=0).min() < L.MIN_BOX_SIDE]
        if tiny:
            self._drop_prompts(layer, tiny)
            self._say(f"A click on '{L.BOXES_NAME}' draws no box: drag to draw one, or select "
                      f"'{L.POINTS_NAME}' in the layer list to click points.")

    @guarded
    def _drop_boxes(self, problem: str) -> None:
        drawn, self._press_boxes = self._press_boxes, None
        layer = self.boxes_layer
        drawn = [i for i in drawn or () if layer is not None and 0 <= i < len(layer.data)]
        if not drawn:
            return
        self._drop_prompts(layer, drawn)
        self._view_said = True
        self._say(f"{problem} The box was not kept.")

    def _drop_prompts(self, layer, indices) -> None:
        """Remove the points (or shapes) ``indices`` of ``layer`` without previewing."""
        self._muted = True
        try:
            layer.selected_data = set(int(i) for i in indices)
            layer.remove_selected()
        finally:
            self._muted = False

    def _refuse_added(self, event) -> bool:
        """A click added a point (or a drag a box) where the view cannot prompt: the point is
        removed at once (a box when its drawing ends), and the status says why."""
        source = getattr(event, "source", None)
        if L.same(source, self.points_layer) and self._click_problem:
            problem, self._click_problem = self._click_problem, None
            n = len(self.points_layer.data)
            idx = list(getattr(event, "data_indices", ())) or [n - 1]
            self._drop_prompts(self.points_layer, [i if i >= 0 else n + i for i in idx])
            self._negative_click = False
            self._view_said = True
            self._say(f"{problem} The point was not kept.")
            return True
        if L.same(source, self.boxes_layer) and self._press_boxes is not None:
            n = len(self.boxes_layer.data)
            idx = list(getattr(event, "data_indices", ())) or [n - 1]
            self._press_boxes.extend(i if i >= 0 else n + i for i in idx)
            self._view_said = True
            self._say(self.view_problem() or "")
            return True
        if L.same(source, self.boxes_layer):
            return self._refuse_slanted_boxes(event)
        return False

    def _refuse_slanted_boxes(self, event) -> bool:
        """Rectangles added (by code) across slices, e.g. in a (Z, X) view, are no prompt:
        removed, and the status says so (else they would be left out without a word)."""
        layer, src = self.boxes_layer, self.source
        n = len(layer.data)
        idx = [i if i >= 0 else n + i for i in getattr(event, "data_indices", ())] or [n - 1]
        slanted = [i for i in idx if 0 <= i < n and src is not None
                   and np.ptp(src.to_zyx(layer.data[i])[:, 0]) > 0.5]
        if not slanted:
            return False
        self._drop_prompts(layer, slanted)
        self._say("A box must lie in one (Y, X) slice of the image; this one spans several "
                  "slices (drawn in a view of another plane?), so it was not kept. Draw boxes "
                  "in the (Y, X) view.")
        return True

    def _on_prompts_changed(self, event=None) -> None:
        action = str(getattr(event, "action", "")) if event is not None else ""
        if action and not action.endswith(("added", "removed", "changed")):
            return
        if action.endswith("added") and not self._muted and self._refuse_added(event):
            return
        if (action.endswith("changed") and self._press_boxes is not None
                and L.same(getattr(event, "source", None), self.boxes_layer)):
            return  # a box drawn where the view cannot prompt (removed when drawn)
        source = getattr(event, "source", None)
        if action.endswith("added") and L.same(source, self.points_layer):
            if self._negative_click:
                idx = list(getattr(event, "data_indices", ())) or [len(self.points_layer.data) - 1]
                self.points_layer.features.loc[
                    self.points_layer.features.index[idx], "prompt"
                ] = "negative"
                self.points_layer.refresh_colors()
                self._negative_click = False
                self._restore_default_kind()
        if not self._muted and self.live:
            self.refresh_preview()
        elif not self._muted:  # kept, not decoded (or the last removed): the status says so
            self.prompts_changed_live_off(action)

    def set_negative(self, negative: bool) -> None:
        self._negative_mode = bool(negative)
        self._restore_default_kind()

    def _restore_default_kind(self) -> None:
        layer = self.points_layer
        kind = "negative" if self._negative_mode else "positive"
        if layer is not None and str(layer.feature_defaults["prompt"].iloc[0]) != kind:
            layer.feature_defaults = {"prompt": kind}

    @property
    def negative(self) -> bool:
        """Whether new points are negative (Shift-click makes one negative point anyway)."""
        return self._negative_mode
