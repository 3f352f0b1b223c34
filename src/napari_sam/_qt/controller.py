"""The annotation session on a napari viewer: prompts in napari layers, the preview and the
commits in labels layers, long work in worker threads, changes as psygnal signals.

:class:`AnnotationController` is the core's
:class:`~napari_sam.annotate.annotation_session.AnnotationSession` with its hooks bound to
the viewer (the prompt layers' hooks and events: :mod:`.prompt_layers`); the logic (what to
decode, commit, undo, log, say) is the core's. No Qt widgets here (the dock widget in
:mod:`.widget` drives this class).

Layers are held as themselves, never as the proxies napari hands a plugin (see
:func:`.layers.unwrap`), and compared with :func:`.layers.same`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from psygnal import Signal

from napari_sam.annotate.annotation_session import AnnotationSession
from napari_sam.annotate.errors import UserError
from napari_sam.annotate.stale_jobs import StaleJobs

from . import layers as L
from . import targets as T
from .hashed_autosave import HashedAutosave
from .layer_history import record_step
from .notify import guarded, info, job_error_text, report, status_text, warn
from .paint_autosave import PaintAutosave
from .prompt_layers import PromptLayers
from .resume_lookup import ResumeLookup
from .time_point import time_source
from .torch_import import torch_import
from .view_problems import ViewProblems
from .workers import Job, run_job

__all__ = ["AnnotationController"]


class AnnotationController(PromptLayers, ViewProblems, HashedAutosave, ResumeLookup,
                           AnnotationSession):
    """The annotation session of the dock widget (docs/gui.md has the user's view).

    Parameters
    ----------
    viewer : napari.Viewer
    sync : bool
        Run jobs on the calling thread (tests); the default runs them in a worker thread.
    """

    status_changed = Signal(str)
    job_changed = Signal(object)  # the Job, or None when it finished
    job_progress = Signal(int, int)  # done, total of the phase under way (never backwards)
    job_phase = Signal(str)  # the running job's next phase started (its name)
    model_changed = Signal(object)  # the Predictor in use
    target_changed = Signal(object)  # the target labels layer (created on first commit)
    session_loaded = Signal(object)  # the Session
    resume_available = Signal(str, str)  # session file path, summary
    trace_changed = Signal(object)  # the trace dict, or None
    time_point_shown = Signal(str)  # a movie's slider moved to another time point (its line)
    image_data_replaced = Signal(object)  # an image layer's data was set (re-picked)

    def __init__(self, viewer, *, sync: bool = False):
        super().__init__()
        self.viewer = viewer
        self.sync = sync
        self.image_layer = None
        self.points_layer = None
        self.boxes_layer = None
        self.preview_layer = None
        self._target_layer = None
        self._paint_autosave = PaintAutosave(self.autosave_now, self.take_autosave_note, self.say)
        self.job: Job | None = None
        self._muted = False
        self._negative_click = False
        self._negative_mode = False  # new points are negative (N, the checkbox)
        self._transforms = L.LayerWatch(self._on_image_transform)  # of the image layer
        self._new_pixels = L.LayerWatch(self._on_image_data, ("data",))  # (its data replaced)
        self._image_data = None  # the image layer's data SAM segments (its layer.data)
        self._pixels_shape: tuple | None = None  # (its source's layer_shape)
        self._pixels_replaced = False  # its data was set since it was picked (maybe in place)
        self._made: set = set()  # unique ids of the labels layers this session made
        self.time_chosen: set = set()  # unique ids of the layers the user said are movies
        self._queued = None  # an action waiting for a preload to make way (make_way_for)
        self._click_problem: str | None = None  # why the click under way cannot prompt
        self._press_boxes: list | None = None  # boxes drawn by a drag that cannot prompt
        self._view_said = False  # the status says the view cannot prompt
        self._closed = False  # the dock closed (or napari deleted it): nothing more starts
        viewer.layers.events.removing.connect(self._on_layer_removing)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        self.watch_view(viewer)  # the view's axes and the layer selected

    @property
    def target_layer(self):
        """The labels layer commits go into (None: a new one is made on the first commit)."""
        return self._target_layer

    @target_layer.setter
    def target_layer(self, layer) -> None:
        old, self._target_layer = self._target_layer, L.unwrap(layer)
        self._paint_autosave.follow(self._target_layer)  # hand edits are autosaved too
        if old is not None and not L.same(old, self._target_layer):
            old.events.selected_label.disconnect(self._on_refine_input)
        if self._target_layer is not None and not L.same(old, self._target_layer):
            self._target_layer.events.selected_label.connect(self._on_refine_input)

    def set_refine(self, on: bool) -> None:
        """Tick or untick 'Refine selected label' (the live preview decodes again)."""
        self.refine = bool(on)
        self._on_refine_input()

    def _on_refine_input(self, event=None) -> None:
        """'Refine selected label' or the target's selected label changed: a live slice
        preview decodes again, so that it shows what Shift+C commits."""
        if event is not None and not self.refine:
            return
        if self._muted or not self.live or self.volume is not None or self.source is None:
            return
        points, _, boxes = self.prompt_arrays()
        if len(points) + len(boxes):
            self.refresh_preview()

    # ------------------------------------------------------------------ hooks: the image
    def image_identity(self) -> tuple:
        layer, data = self.image_layer, self._image_data  # the pixels SAM segments (new
        # ones set and not picked yet, e.g. a waiting autosave written as they come: not them)
        return getattr(layer, "unique_id", id(layer)), layer.data if data is None else data

    def image_name(self) -> str:
        return self.image_layer.name

    def image_path(self) -> Path | None:
        """The file the image layer was opened from (None: made in memory)."""
        path = getattr(getattr(self.image_layer, "source", None), "path", None)
        return Path(path) if path else None

    def image_shown(self) -> bool:
        return self.image_layer is not None and self.image_layer in self.viewer.layers

    def contrast_limits(self) -> list[float]:
        return list(self.image_layer.contrast_limits)

    def current_z(self) -> int:
        """The slice of the stack at the viewer's position, through the image layer's whole
        transform (scale, translate, rotate, shear, affine)."""
        src = self._require_image()
        world = np.asarray(self.viewer.dims.point, dtype=float)
        return src.slice_of(self.image_layer.world_to_data(world))

    def go_to_slice(self, z: int) -> None:
        """Show slice ``z`` of the image's stack (UserError for a slice it does not have)."""
        src, layer, z = self._require_image(), self.image_layer, self.checked_slice(z)
        if not src.is_3d:
            return
        data = np.asarray(layer.world_to_data(np.asarray(self.viewer.dims.point, float)))
        data[src.z_axis] = z
        axis = self.viewer.dims.ndim - layer.ndim + src.z_axis
        self.viewer.dims.set_point(axis, float(layer.data_to_world(data)[src.z_axis]))

    # ------------------------------------------------------------------ the view
    def update_preview(self):
        """Decode the prompts on the visible slice (refused where the view cannot show one)."""
        self._require_view(" The prompts are kept.")
        return super().update_preview()

    def propagate(self, all_objects: bool = False, method: str | None = None, **options):
        """Propagate (the objects on the visible slice: refused where the view shows no
        slice, :meth:`view_problem`; all objects with prompts: in any view)."""
        if not all_objects:
            self._require_view(" Or pick 'all objects with prompts' in 'Propagate'.")
        if self.job is not None and self.job.running:  # its own refusals before any wait
            self.check_propagation(all_objects, method)
        if self.make_way_for(lambda: self.propagate(all_objects, method, **options),
                             "Propagation"):
            return None
        return super().propagate(all_objects=all_objects, method=method, **options)

    def segment_everything(self, whole_stack: bool = False, **params):
        """Segment everything (on the visible slice: refused where the view shows no slice,
        :meth:`view_problem`; on the whole stack: in any view)."""
        if not whole_stack:
            self._require_view(" Or pick 'whole stack' in 'Where' (Segment everything).")
        if self.job is not None and self.job.running:
            self.check_segment_everything()
        if self.make_way_for(lambda: self.segment_everything(whole_stack, **params),
                             "Segment everything"):
            return None
        return super().segment_everything(whole_stack=whole_stack, **params)

    def make_way_for(self, action, name: str) -> bool:
        """Queue ``action`` (Propagate, Segment everything) to run when the embedding job
        under way ends (:meth:`way_made_for` says which jobs, and asks a tiled one to stop
        after its window); True where it was queued, False where it runs now or is refused.
        It is not started where the image, model or a setting changed meanwhile (a model
        still loading is let finish, so the job ends as if nothing changed)."""
        words = self.way_made_for(name)
        if not words:
            return False
        key = self.job_key()

        def queued():
            if self.job_key() == key:
                return action()
            self._say(f"{name} was not started: the image, the model or a setting changed "
                      f"while it waited. {self.next_step()}")
            return None

        self._queued = queued
        self._say(words)
        return True

    def after_queued(self, queued, waiting):
        """What runs when a job that made way for ``queued`` (:meth:`make_way_for`) ends:
        ``queued()``; where it starts no job (refused: nothing to propagate, a 2D image)
        the preview ``waiting`` for the job (a click's) is decoded, and the embedding the job
        stopped goes on (:meth:`resume_preload`); a refusal stays the status line."""
        def run():
            try:
                queued()
            finally:
                if self.job is None or not self.job.running:
                    if waiting is self.update_preview:
                        waiting()
                    self.resume_preload()
        return run

    # ------------------------------------------------------------------ hooks: labels
    def selected_label(self) -> int | None:
        target = self.target_layer
        return None if target is None else int(target.selected_label)

    def target_labels(self):
        """The target's (Z, Y, X) labels; None where there is no target, or it does not fit
        the image (previews never depend on it; a commit says why: :meth:`commit_target`)."""
        target = self.target_layer
        if target is None or target not in self.viewer.layers:
            return None
        problem = self.target_problem(target)
        if problem:
            if self.refine:
                raise UserError(f"Cannot refine: {problem}")
            return None
        return self.source.zyx_view(target.data)

    def target_problem(self, layer) -> str | None:
        """Why labels ``layer`` cannot take this image's commits (None: it can): its shape or
        its transform differ from the image's (:func:`.layers.alignment_problem`)."""
        if layer is None or self.source is None or self.image_layer is None:
            return None
        return L.alignment_problem(layer, self.source, self.image_layer)

    def pick_target(self, layer) -> None:
        """Commit into labels ``layer`` (None: a new layer at the next commit). A layer
        whose shape or transform does not fit the image is refused, with the reason; the
        previous choice stays."""
        layer = L.unwrap(layer)
        problem = self.target_problem(layer)
        if problem:
            keep = self.target_layer
            where = f"'{keep.name}'" if keep is not None else "a new 'segmentation' layer"
            raise UserError(f"Not picked: {problem} Commits still go into {where}.")
        self.target_layer = layer
        if layer is not None:
            self._say(f"Commits go into '{layer.name}'.")
        if self.refine:  # the label refined is now this layer's: preview it again
            self._on_refine_input()

    def target_name(self) -> str:
        return self.target_layer.name

    def commit(self):
        commit = super().commit()
        if not commit.target.visible:  # (what was written cannot be seen)
            self._say(f"{self.status} '{commit.target.name}' is hidden: tick its eye to see it.")
        return commit

    def commit_target(self):
        src = self._require_image()
        problem = self.target_problem(self.target_layer)
        if problem and self.target_layer in self.viewer.layers:
            raise UserError(f"Not committed: {problem}")
        if self.target_layer is None or self.target_layer not in self.viewer.layers:
            self.target_layer = L.add_labels_layer(self.viewer, src, self.image_layer, L.TARGET_NAME)
            self._made.add(self.target_layer.unique_id)
            # keep the prompt layers on top and active
            layers = self.viewer.layers
            layers.move(layers.index(self.target_layer), layers.index(self.preview_layer))
            layers.selection.active = self.points_layer
            self.target_changed.emit(self.target_layer)
        T.remember_image(self.target_layer, self.image_layer)
        return self.target_layer, src.zyx_view(self.target_layer.data)

    def new_target(self, labels_zyx):
        """A new labels layer holding ``labels_zyx`` that commits go into (never an old one)."""
        data = np.array(self.source.to_layer(labels_zyx), copy=True)
        layer = L.unwrap(self.viewer.add_labels(
            data, name=L.TARGET_NAME, **L.geometry(self.source, self.image_layer)))
        self._made.add(layer.unique_id)
        T.remember_image(layer, self.image_layer)
        layers = self.viewer.layers
        if self.preview_layer in layers:
            layers.move(layers.index(layer), layers.index(self.preview_layer))
        layers.selection.active = self.points_layer
        self.target_layer = layer
        self.target_changed.emit(layer)
        return layer

    def forget_mismatched_target(self) -> None:
        """After an image change: commit into this image's labels layer
        (:func:`.targets.target_for_image`: never another image's, even of the same shape),
        else into a new one made at the first commit."""
        from napari.layers import Labels

        target = self.target_layer
        fitting = [L.unwrap(ly) for ly in self.viewer.layers
                   if isinstance(L.unwrap(ly), Labels) and self.target_problem(ly) is None]

        def holder(layers):  # only in-memory arrays are compared (dask/zarr: never read whole)
            arrays = [ly for ly in layers if isinstance(ly.data, np.ndarray)]
            if arrays and self.lookup_reads_pixels():  # (again once hashed: resume_lookup)
                return None
            held = (self.autosave_holder([self.labels_for_session(ly.data) for ly in arrays])
                    if arrays else None)
            return None if held is None else layers.index(arrays[held[0]])

        found = T.target_for_image(target, fitting, self.image_layer, holder,
                                   T.open_images(self.viewer))
        if found is not None:  # (a file opened again: its layer goes on with the new one)
            T.remember_image(found, self.image_layer)
        if not L.same(found, target):
            self.target_layer = found
            self.target_changed.emit(found)

    def history_problem(self, target) -> str | None:
        """Why an undo or redo of a commit into ``target`` is refused: it was another
        image's (:func:`.targets.other_image_problem`)."""
        return T.other_image_problem(target, self.image_layer, self.viewer)

    def labels_name(self, target) -> str:
        return target.name

    def is_current_target(self, target) -> bool:
        return L.same(target, self.target_layer)

    def target_alive(self, target) -> bool:
        return target in self.viewer.layers

    def target_zyx(self, target):
        return self.source.zyx_view(target.data)

    def target_data(self, target):
        return target.data

    def labels_changed(self, target, changes=(), undoing: bool = False) -> None:
        with self._paint_autosave.paused():  # (our writes autosave themselves)
            # napari's Ctrl+Z undoes the step, in order; napari redraws the box it wrote
            if not record_step(target, changes, undoing):
                target.refresh()  # (not recorded: the whole layer is redrawn)

    def render(self) -> None:
        layer = self.preview_layer
        if layer is None or self.source is None or layer not in self.viewer.layers:
            return
        self.draw_preview(self.source.zyx_view(layer.data))
        layer.refresh()

    def add_result(self, labels, name: str) -> str:
        src = self.source
        layer = self.viewer.add_labels(src.to_layer(labels), name=name,
                                       **L.geometry(src, self.image_layer))
        layers = self.viewer.layers
        if self.preview_layer in layers:  # below the prompts and the preview, not over them
            layers.move(layers.index(layer), layers.index(self.preview_layer))
        layers.selection.active = self.points_layer
        return layer.name  # napari's: "automatic segmentation [1]" for a second one

    # ------------------------------------------------------------------ hooks: news
    def notify_status(self, text: str) -> None:
        self.status_changed.emit(text)

    def notify_model(self, predictor) -> None:
        self.model_changed.emit(predictor)

    def notify_info(self, text: str) -> None:
        info(text)

    def notify_warning(self, text: str) -> None:
        warn(text)

    def notify_session_loaded(self, session) -> None:
        self.session_loaded.emit(session)

    def notify_resume(self, path: str, summary: str) -> None:
        self.resume_available.emit(path, summary)

    def notify_trace(self, trace) -> None:
        self.trace_changed.emit(trace)

    def refresh_preview(self) -> None:
        def preview():  # after torch; not once the dock closed (napari quit meanwhile: a
            if not self._closed:  # preview into its layers, or "No image layer" printed)
                # self as the handler's argument: a refusal is the status line too
                guarded(lambda c: c.update_preview())(self)

        torch_import().then(preview, eager=True)

    # ------------------------------------------------------------------ setup
    def set_image(self, layer, channel_axis: int | None = None,
                  channel: int | None = None) -> None:
        """Use an image layer (and a channel axis, and the ``channel`` of it segmented alone:
        None mixes channels 0-2 as R, G, B); makes or adapts the prompt layers."""
        self.image_refusal, self.refused_image = "", None
        if layer is None:
            raise UserError("No image layer: open an image (File > Open, or File > Open Sample "
                            "> Segment Anything Stacks) and pick it in 'Image'.")
        layer = L.unwrap(layer)
        new_pixels = L.same(layer, self._new_pixels.layer) and (  # (layer.data = ...)
            layer.data is not self._image_data or self._pixels_replaced)
        self._pixels_replaced = False
        try:
            source = time_source(self.viewer, layer, channel_axis, channel,  # (pyramid: level 0)
                                 self.time_first(layer, channel_axis))
        except (UserError, ValueError) as err:  # the status says why, not "open an image"
            ask = self.movie_refusal(layer, channel_axis)  # (time or channels: the dock asks)
            self.image_refusal = ask or f"Cannot use '{layer.name}': {err}"
            self.refused_image = layer
            self._let_go_of_pixels(new_pixels)
            self._say(self.image_refusal)
            if ask:
                raise UserError(ask) from err
            raise
        tilted = L.transform_problem(source, layer)
        if tilted:
            self.image_refusal, self.refused_image = f"Cannot use '{layer.name}': {tilted}", layer
            self._let_go_of_pixels(new_pixels)
            self._say(self.image_refusal)
            raise UserError(self.image_refusal)
        was = self._pixels_shape if new_pixels else None
        reshaped = new_pixels and tuple(source.layer_shape) != was
        changed = (not L.same(layer, self.image_layer) or channel_axis != self.channel_axis
                   or reshaped)
        aside = self.set_aside_prompts() if changed else ""  # read from the old layers
        switched = not changed and (channel != self.channel or new_pixels)  # the prompts
        self.write_waiting_autosave()  # (a commit's on the image left: its hash read here)
        if new_pixels:  # the old pixels' embeddings (an id(data) of theirs may come again)
            self.embeddings.drop_image(getattr(layer, "unique_id", id(layer)))
            self.drop_sam2_features()
        self.image_layer, self.channel_axis, self.source = layer, channel_axis, source
        self.channel, self._image_data = channel, layer.data
        self._pixels_shape = tuple(source.layer_shape)
        self._transforms.follow(layer)
        self._new_pixels.follow(layer)
        self._ensure_layers(recreate=changed)
        line = (f"'{layer.name}' has new pixels: SAM now segments them." if new_pixels
                else f"SAM now segments {source.segmented}." if switched else "")
        self.use_source(changed, aside, "" if changed else line)  # (stay: decoded anew)
        if new_pixels and changed:  # (set aside: back, or dropped with the reason)
            shape = f", of shape {self._pixels_shape} (was {was})" if reshaped else ""
            self._say(f"'{layer.name}' has new pixels{shape}: SAM now segments them. "
                      f"{self.status}")

    def segments_layer_data(self) -> bool:
        """Whether SAM segments the image layer's data as it is now (not new data set a
        moment ago, picked again once napari has updated its sliders for it)."""
        layer = self.image_layer
        return layer is not None and layer.data is self._image_data

    def _let_go_of_pixels(self, new_pixels: bool) -> None:
        """The image's new pixels (``new_pixels``) are refused: SAM no longer segments the
        old ones either. The dock lets go of the image as if it were removed (clicks get the
        refusal), having written the old pixels' autosave waiting for their hash and set
        their prompts aside; its data is still followed: usable pixels (the old array put
        back too) are picked again."""
        layer = self.image_layer
        if not new_pixels or self.source is None or layer is None:
            return
        self.write_waiting_autosave()
        self.set_aside_prompts()  # (back with usable pixels of that shape, else said dropped)
        self.previews, self.volume = [], None
        self.render()  # (the preview cleared, while there is a source to draw it in)
        self._drop_image(f"'{layer.name}' was given pixels SAM cannot segment")
        self._image_data = None  # (the old array put back is new pixels too)
        self.embeddings.drop_image(getattr(layer, "unique_id", id(layer)))
        self.cancel_stale_job()

    def _drop_image(self, why: str) -> None:
        """Let go of the image (its layer removed, or given pixels the dock refuses): no
        source, embedding, preview or SAM 2 features of it; a job it stops says ``why``."""
        self._transforms.follow(None)
        self.image_layer = self.source = self.emb = None
        self.previews, self.volume = [], None
        self.image_gone = why
        self.drop_sam2_features()

    def _on_image_data(self, event=None) -> None:
        """The image layer's data was set (a script's ``layer.data = ...``, also the same
        array edited in place): SAM kept segmenting the old pixels (and a grown stack's new
        slices were "beside the image"). The dock picks the image again (:meth:`set_image`:
        its new pixels are embedded, the prompts stay and are decoded anew; of another
        shape, they are set aside)."""
        layer = self._new_pixels.layer
        if layer is not None and not self._closed:
            self._pixels_replaced = True
            self.image_data_replaced.emit(layer)

    @guarded
    def _on_image_transform(self, event=None) -> None:
        """The image layer's scale, translate, rotate, shear or affine changed: our layers
        (and the labels layers this session made) follow it, so clicks keep landing on the
        pixels under them; a target of the user's that no longer lines up is let go."""
        src, img = self.source, self.image_layer
        if src is None or img is None:
            return
        geom = L.geometry(src, img)
        for layer in (self.points_layer, self.boxes_layer, self.preview_layer):
            if layer is not None:
                L.set_geometry(layer, geom)
        target = self.target_layer
        note = ""
        if target is not None and target.unique_id in self._made:
            L.set_geometry(target, geom)
        elif target is not None and self.target_problem(target):
            self.target_layer = None
            self.target_changed.emit(None)
            note = (f" '{target.name}' no longer lines up with '{img.name}': commits go into "
                    "a new 'segmentation' layer (pick it again in 'Labels layer' once it has "
                    "the image's transform).")
        problem = self.view_problem()
        if problem:
            self._view_said = True
            self._say(problem + note)
        elif note or self._view_said:
            self._view_said = False
            self._say(f"The SAM layers follow the new transform of '{img.name}'.{note} "
                      + self.next_step())

    def _ensure_layers(self, recreate: bool) -> None:
        src, img = self.source, self.image_layer
        layers = self.viewer.layers
        for attr in ("preview_layer", "boxes_layer", "points_layer"):
            layer = getattr(self, attr)
            if layer is not None and layer in layers and recreate:
                self._muted = True
                L.remove_layer(self.viewer, layer)
                self._muted = False
            if recreate or layer not in layers:
                setattr(self, attr, None)
        if self.preview_layer is None:
            self.preview_layer = L.add_preview_layer(self.viewer, src, img)
            self._rendered = set()
        if self.boxes_layer is None:
            self.boxes_layer = L.add_boxes_layer(self.viewer, src, img)
            self.boxes_layer.events.data.connect(self._on_prompts_changed)
            self.boxes_layer.mouse_drag_callbacks.append(self._on_boxes_press)
        if self.points_layer is None:
            self.points_layer = L.add_points_layer(self.viewer, src, img)
            self.points_layer.events.data.connect(self._on_prompts_changed)
            self.points_layer.mouse_drag_callbacks.append(self._on_points_press)
            self._restore_default_kind()
        self.viewer.layers.selection.active = self.points_layer

    @guarded
    def _on_layer_removing(self, event) -> None:
        """The image (or the labels layer commits go into) is about to go, still in the
        viewer's layers: the autosave of a commit waiting for the pixels' hash is written
        now, hashing here (else it was lost; napari's ``layers.clear()`` removes the labels
        layer before the image)."""
        index = getattr(event, "index", None)
        if self._muted or not isinstance(index, int) or self.image_layer is None:
            return
        going = L.unwrap(self.viewer.layers[index])
        if L.same(going, self.image_layer) or L.same(going, self.target_layer):
            self.write_waiting_autosave()  # (layers.clear() removes the labels first)

    def _on_layer_removed(self, event) -> None:
        layer = L.unwrap(event.value)
        if self._muted:
            return
        if L.same(layer, self.refused_image):  # the next action says "No image layer"
            self.image_refusal, self.refused_image = "", None  # (its data not kept)
        if L.same(layer, self._new_pixels.layer):  # (also one whose new pixels were refused)
            self._new_pixels.follow(None)
            self._image_data = None
        if L.same(layer, self.image_layer):
            self._drop_image(StaleJobs.image_gone)
            self._say(self.next_step())  # "Open an image ...", not a stale line about it
            self.cancel_stale_job()
        self.forget_movie_frames()  # (a removed movie's array: not kept for its hash)
        ours = [attr for attr in ("points_layer", "boxes_layer", "preview_layer")
                if L.same(getattr(self, attr), layer)]
        target = L.same(self.target_layer, layer)
        for attr in ("points_layer", "boxes_layer", "preview_layer", "target_layer"):
            if L.same(getattr(self, attr), layer):
                setattr(self, attr, None)
        steps = self.history.forget(layer)
        if (target or steps) and self.image_layer is not None:
            self._say(T.deleted_labels_text(layer.name, steps, target))
        self.embeddings.drop_image(getattr(layer, "unique_id", id(layer)))
        self.drop_shelved(getattr(layer, "unique_id", id(layer)))
        if ours and self.image_layer is not None:
            from qtpy.QtCore import QTimer

            # after napari has finished removing it (not inside its removal event)
            QTimer.singleShot(0, lambda name=layer.name: self._restore_layers(name))

    @guarded
    def _restore_layers(self, name: str) -> None:
        """Main thread: put back the SAM layers a user deleted while the image is open, so
        that clicks prompt again; its prompts (or preview) went with it (the status says)."""
        if self.image_layer is None or self.image_layer not in self.viewer.layers:
            return
        if None not in (self.points_layer, self.boxes_layer, self.preview_layer):
            return
        self._muted = True
        try:
            self._ensure_layers(recreate=False)
        finally:
            self._muted = False
        self.previews, self.volume = [], None
        self.render()
        self._say(f"The '{name}' layer was deleted: a new, empty one is in its place, so "
                  "clicks prompt again (what it held is gone).")

    # ------------------------------------------------------------------ jobs
    def start_job(self, gen, description: str, on_returned, then=None) -> Job:
        """Run job ``gen`` in a worker (or on this thread when ``sync``);
        ``on_returned(result)`` applies its result and ``then()`` runs once the job has
        ended, if it succeeded (so that no decoding happens while a job counts as running)."""
        if self.job is not None and self.job.running:
            gen.close()
            raise UserError(f"'{self.job.description}' is running: wait for it or press Cancel.")
        gen = self.holding_store(gen)  # (its contrast store, until it ends)

        def finished(job):
            if self.job is job:
                self.job = None
                self.job_changed.emit(None)
            after = (self.job_cancelled(job) if job.cancelled
                     else then if job.succeeded else None)
            if self._pending:  # prompts arrived while the job ran
                self._pending = False
                after = self.update_preview
            queued, self._queued = self._queued, None  # an action the job made way for
            if queued is not None and job.succeeded:  # (a failure's message stays)
                after = self.after_queued(queued, after)
            if after is not None and not self._closed:  # (a closed dock starts nothing)
                # with self as the owner: a refusal is the status line too
                guarded(lambda controller: after())(self)

        def errored(err):
            self._pending = False  # a click during a failed job must not start it again
            self.job_failed()  # the slices it embedded are kept, and counted
            message = job_error_text(description, job.phase, err, status_text(err, report(err)))
            self._say(message + self.failed_load_note(job, err))  # (a refusal: its own words)

        job = self.job = Job(description, key=self.job_key())
        self.job_changed.emit(job)
        self._say(description + " ...")
        run_job(gen, description=description, on_progress=self.job_progress.emit,
                on_returned=on_returned, on_error=errored, on_finished=finished,
                on_message=self._say, on_phase=self.job_phase.emit, sync=self.sync, job=job,
                progress_bar=False)  # the dock's own bar (napari's: jobs ~1.4x slower)
        return job

    def cancel(self) -> None:
        self.cancel_job()  # "Cancelling: ..." at once

    def close(self) -> None:
        """Stop listening to the viewer and cancel a running job (the layers stay)."""
        self._closed = True  # what waits (a job's end, the torch import) starts nothing then
        self._paint_autosave.follow(None)  # a stroke just made is autosaved, then no more
        self.write_waiting_autosave()  # a commit's waiting for the pixels' hash too
        self.cancel_pixel_reads()  # a lazy image's hash read for nothing now: stops
        self.cancel_job(say=False)
        self.viewer.layers.events.removing.disconnect(self._on_layer_removing)
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)
        self.unwatch_view()
        if self._target_layer is not None:
            self._target_layer.events.selected_label.disconnect(self._on_refine_input)
        self._transforms.follow(None)
        self._new_pixels.follow(None)

    def detach(self, links: list, unbind_keys, *_destroyed) -> None:
        """Undo a dock's connections ``links`` ((signal, slot) pairs), stop listening and
        cancel the job (:meth:`close`), and ``unbind_keys()``. On closing the dock, and when
        napari deletes the dock with its window while a job runs (Qt then calls no
        ``closeEvent``; a late progress report would reach deleted Qt objects and abort the
        process). Runs once: the links are emptied."""
        if not links:
            return
        self.close()
        unbind_keys()
        for signal, slot in links:
            signal.disconnect(slot)
        links.clear()

    def remove_working_layers(self) -> None:
        """Remove the prompt and preview layers (after :meth:`close`: the dock was closed).
        Labels layers stay; a dock opened again makes its own working layers and commits
        into the 'segmentation' layer of the image's shape."""
        for attr in ("points_layer", "boxes_layer", "preview_layer"):
            layer = getattr(self, attr)
            setattr(self, attr, None)
            if layer is not None and layer in self.viewer.layers:
                L.remove_layer(self.viewer, layer)
