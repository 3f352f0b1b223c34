"""Whether a click in the napari view prompts the image, said in the status line: a 3D view,
a view whose plane is not the image's (Y, X) plane, a tilting transform or grid mode (the
view's problem), and another layer than 'SAM points' or 'SAM boxes' selected (a click goes to
that layer, so nothing happens: the status says which layer to select), or ours hidden (napari
edits no hidden layer: the status says to show it). A mixin of
:class:`~napari_sam._qt.controller.AnnotationController`.
"""

from __future__ import annotations

from napari_sam.annotate.annotation_session import AnnotationSession
from napari_sam.annotate.errors import UserError

from . import layers as L
from .grid_view import grid_of, grid_problem
from .time_point import TimePoints
from .view_events import ViewEvents

__all__ = ["ViewProblems"]


class ViewProblems(TimePoints, AnnotationSession):
    """The view's problems for prompting, in the status line (a mixin of the controller:
    ``viewer``, ``image_layer``, ``source``, ``points_layer``, ``boxes_layer``)."""

    def watch_view(self, viewer) -> None:
        """Follow the view's axes and the layer selected in ``viewer``."""
        self._view_said = False  # the status says the view cannot prompt
        self._view_events = ViewEvents(viewer.dims, self._on_view_changed, self.slice_shown,
                                       grid=grid_of(L.unwrap(viewer)))
        viewer.dims.events.current_step.connect(self.time_step_shown)  # (a movie's slider)
        viewer.layers.selection.events.active.connect(self._on_active_layer)
        viewer.layers.events.connect(self._on_layer_event)  # (its layers' events too)

    def unwatch_view(self) -> None:
        self._view_events.close()
        self.viewer.dims.events.current_step.disconnect(self.time_step_shown)
        self.viewer.layers.selection.events.active.disconnect(self._on_active_layer)
        self.viewer.layers.events.disconnect(self._on_layer_event)

    def _on_layer_event(self, event) -> None:
        """A layer shown or hidden: say at once whether clicks prompt (a hidden 'SAM points'
        takes no clicks; shown again in grid mode, its tile is apart from the image's)."""
        index, layers = getattr(event, "index", None), self.viewer.layers
        if event.type != "visible" or not isinstance(index, int) or not (
                0 <= index < len(layers) and any(
                    L.same(layers[index], ly) for ly in (self.points_layer, self.boxes_layer))):
            return
        self._on_view_changed()
        self._on_active_layer()  # (hidden or shown: where clicks go)

    def selection_problem(self) -> str | None:
        """Why a click on the canvas goes to another layer than ours (None: it prompts)."""
        ours = [ly for ly in (self.points_layer, self.boxes_layer)
                if ly is not None and ly in self.viewer.layers]
        if not ours or self.source is None or self.model_choice is None:
            return None
        active = self.viewer.layers.selection.active
        if active is not None and any(L.same(active, ly) for ly in ours):
            return None if active.visible else (
                f"'{active.name}' is hidden, so clicks on the canvas add nothing to it (napari "
                "edits no hidden layer): show it (its eye in the layer list) to segment.")
        now = (f"'{active.name}' is the selected layer, so clicks on the canvas go to it"
               if active is not None else "No layer is selected, so clicks prompt nothing")
        return (f"{now}: to segment, select '{L.POINTS_NAME}' in the layer list (or "
                f"'{L.BOXES_NAME}' to draw boxes).")

    def waiting_for_clicks(self) -> bool:
        """No prompts, no propagation and no job but a preload: the status line is the next
        step."""
        if self.source is None or self.volume is not None or self.job_blocks_commit():
            return False
        points, _, boxes = self.prompt_arrays()
        return not len(points) + len(boxes)

    def _on_active_layer(self, event=None) -> None:
        """Another layer selected (or ours again) while the dock waits for clicks and the
        status line is the next step alone: it says where clicks go (a click on the canvas
        did nothing without a word). Other news (a commit's line with its notes, a note on the
        file's voxel size before the step) stays: the user selects the labels layer to paint
        after a commit."""
        try:
            if self.waiting_for_clicks() and self.status.startswith(super().next_step()):
                self._say(self.next_step())
        except Exception:  # noqa: BLE001 - a selection change must never fail in napari
            return

    def view_problem(self) -> str | None:
        """Why a click in the view cannot prompt the image (None: it can): a 3D view, a view
        whose plane is not the image's (Y, X) plane, an image transform tilting slices, or
        napari's grid mode drawing the image and 'SAM points' in separate tiles."""
        layer, src = self.image_layer, self.source
        if layer is None or src is None or layer not in self.viewer.layers:
            return None
        tilted = L.transform_problem(src, layer)
        if tilted:
            return tilted
        grid = grid_problem(self.viewer, layer, (self.points_layer, self.boxes_layer))
        if grid:
            return grid
        dims = self.viewer.dims
        if dims.ndisplay == 3:
            return ("The view is 3D: clicks and boxes do not prompt there (the slice they "
                    "would fall on is hidden). Switch to the 2D view (the 2D/3D button at the "
                    "bottom left of the layer list) to prompt; Propagate with 'all objects "
                    "with prompts' and Segment everything on the whole stack work in 3D.")
        offset = dims.ndim - layer.ndim
        yx = [offset + a for a in src.spatial_axes[-2:]]
        if set(dims.displayed) != set(yx):
            order = tuple(a for a in dims.order if a not in yx) + tuple(yx)
            return (f"The view shows axes {tuple(dims.displayed)} of the viewer, not the "
                    f"rows and columns (Y, X) of '{layer.name}': prompts work in the (Y, X) "
                    "plane only. Press napari's 'Roll dimensions' button until the plane "
                    f"shows Y and X, or set viewer.dims.order = {order}.")
        return None

    def next_step(self) -> str:
        """What to do next; where the view cannot prompt, what to change in it first."""
        problem = self.view_problem()
        if problem:
            return problem
        step = super().next_step()
        selection = self.selection_problem() if step.startswith("Click on") else None
        return f"{step} {selection}" if selection else step

    def _require_view(self, extra: str = "") -> None:
        problem = self.view_problem()
        if problem:
            self._view_said = True
            self._say(problem + extra)  # the status says it (a live preview is not a handler)
            raise UserError(problem + extra)

    def _on_view_changed(self, event=None) -> None:
        """The view changed (2D/3D, axis order): say at once whether clicks prompt."""
        problem = self.view_problem()
        if problem:
            self._view_said = True
            self._say(problem)
        elif self._view_said:
            self._view_said = False
            points, _, boxes = self.prompt_arrays() if self.source is not None else ((), (), ())
            if self.volume is not None and self.volume_status:  # the propagation stays
                self._say(self.volume_status)
            elif self.live and len(points) + len(boxes):
                self.refresh_preview()
            else:
                self._say(self.next_step())
