"""One annotation session on a napari viewer: the image, model, prompt layers, preview,
commits and jobs. No Qt widgets here (the dock widget in :mod:`.widget` drives this class);
long work runs as jobs (:mod:`.workers`) whose results are applied on the main thread.

Layers are held as themselves, never as the proxies napari hands a plugin (see
:func:`.layers.unwrap`), and compared with :func:`.layers.same`.
"""

from __future__ import annotations

import numpy as np
from psygnal import Signal

from . import layers as L
from .embedding_cache import EmbeddingCache, missing_slices
from .history import CommitHistory, ObjectMask, apply_objects
from .image_data import ImageSource, make_source
from .model_choice import DEMO_NOTICE, ModelCache, ModelChoice
from .notify import UserError, report
from .preview import ObjectPreview, decode_slice
from .prompts import POINT_OBJECT, boxes_from_shapes, group_prompts
from .session_actions import SessionActions
from .stack_actions import StackActions
from .workers import Job, embed_job, run_job

__all__ = ["AnnotationController"]

#: Embeddings kept in memory per stack (the rest is recomputed or read from the store).
MAX_MEMORY_SLICES = 256

#: A previewed object of which at least this fraction is already labelled (by other
#: objects) is not committed unless "Overwrite other labels" is on: it is almost surely an
#: object committed before, clicked again, and only a sliver around it would be written.
ALREADY_LABELLED = 0.8


class AnnotationController(StackActions, SessionActions):
    """State and actions of the annotation session (see docs/gui.md for the user's view).

    Propagation and segment-everything come from :class:`~.stack_actions.StackActions`;
    the commit log, session files, autosave and the trace's fixes from
    :class:`~.session_actions.SessionActions`.

    Parameters
    ----------
    viewer : napari.Viewer
    sync : bool
        Run jobs on the calling thread (tests); the default runs them in a worker thread.
    """

    status_changed = Signal(str)
    job_changed = Signal(object)  # the Job, or None when it finished
    job_progress = Signal(int, int)
    model_changed = Signal(object)  # the Predictor in use
    target_changed = Signal(object)  # the target labels layer (created on first commit)

    def __init__(self, viewer, *, sync: bool = False):
        self.viewer = viewer
        self.sync = sync
        self.models = ModelCache()
        self.embeddings = EmbeddingCache()
        self.history = CommitHistory()
        self.model_choice: ModelChoice | None = None
        self.device = "auto"
        self.precision = "auto"  # "auto", "fp32" or "bf16" (the Precision box)
        self.store: str | None = None
        self.image_layer = None
        self.channel_axis: int | None = None
        self.source: ImageSource | None = None
        self.points_layer = None
        self.boxes_layer = None
        self.preview_layer = None
        self._target_layer = None
        self.overwrite = False
        self.refine = False
        self.live = True
        self.axis_kind = "z"
        self.predictor = None
        self.emb = None
        self.previews: list[ObjectPreview] = []
        self.volume = None  # VolumeResult under preview
        self._volume_replaces: dict[int, int] = {}
        self.job: Job | None = None
        self.status = ""
        self._rendered: set[int] | None = set()  # slices drawn in the preview (None: all)
        self._muted = False
        self._negative_click = False
        self._negative_mode = False  # new points are negative (N, the checkbox)
        self._pending = False
        self._init_session()
        viewer.layers.events.removed.connect(self._on_layer_removed)

    @property
    def target_layer(self):
        """The labels layer commits go into (None: a new one is made on the first commit)."""
        return self._target_layer

    @target_layer.setter
    def target_layer(self, layer) -> None:
        self._target_layer = L.unwrap(layer)

    # ------------------------------------------------------------------ status
    def next_step(self) -> str:
        """What the user has to do next, from the current state (the first status line)."""
        if self.source is None or self.image_layer is None:
            return ("Open an image (File > Open, or File > Open Sample > Segment Anything "
                    "Stacks); it is picked in 'Image'.")
        if self.model_choice is None:
            return "Pick a model in 'Model'."
        return (f"Click on an object in '{self.image_layer.name}' to segment it (Shift-click: "
                "negative point; draw a box in 'SAM boxes' for one object per box).")

    def _say(self, text: str) -> None:
        if self.using_demo and "demo" not in text:
            text += " [demo model]"
        self.status = text
        self.status_changed.emit(text)

    @property
    def using_demo(self) -> bool:
        by_choice = self.model_choice is not None and self.model_choice.is_demo
        by_model = self.predictor is not None and getattr(self.predictor.model, "is_demo", False)
        return bool(by_choice or by_model)

    # ------------------------------------------------------------------ setup
    def set_model(self, choice: ModelChoice) -> None:
        self.model_choice = choice
        self._lookup()

    def set_device(self, device: str) -> None:
        from napari_sam.device import resolve_device

        try:
            resolve_device(device)
        except ValueError as err:
            raise UserError(f"{err}. Pick 'auto' or 'cpu' in 'Device'.") from None
        self._check_precision(device, self.precision)
        self.device = device
        self._lookup()

    def set_precision(self, precision: str) -> None:
        """Compute precision of the models loaded from now on ("auto", "fp32" or "bf16");
        models and embeddings are kept per precision."""
        self._check_precision(self.device, precision)
        self.precision = precision
        self._lookup()

    @staticmethod
    def _check_precision(device, precision) -> None:
        from .model_choice import precision_key

        try:
            precision_key(device, precision)
        except ValueError as err:
            raise UserError(f"{err}. Pick 'auto' in 'Precision'.") from None

    def set_store(self, path: str | None) -> None:
        self.store = path or None
        self._lookup()

    def set_image(self, layer, channel_axis: int | None = None) -> None:
        """Use an image layer (and a channel axis); makes or adapts the prompt layers."""
        if layer is None:
            raise UserError(
                "No image layer: open an image (File > Open, or File > Open Sample > "
                "Segment Anything Stacks) and pick it in 'Image'."
            )
        layer = L.unwrap(layer)
        source = make_source(
            layer.data,
            rgb=bool(getattr(layer, "rgb", False)),
            channel_axis=channel_axis,
            multiscale=bool(getattr(layer, "multiscale", False)),
        )
        changed = not L.same(layer, self.image_layer) or channel_axis != self.channel_axis
        self.image_layer, self.channel_axis, self.source = layer, channel_axis, source
        self._ensure_layers(recreate=changed)
        target = self.target_layer
        if target is not None and tuple(target.data.shape) != source.layer_shape:
            self.target_layer = None  # made for another image: commit into a new layer
            self.target_changed.emit(None)
        self.previews, self.volume = [], None
        self._render()
        self._lookup()
        if changed:
            self.offer_resume()

    def _require_image(self) -> ImageSource:
        if self.source is None or self.image_layer not in self.viewer.layers:
            raise UserError(
                "No image layer: open an image and pick it in 'Image' (File > Open Sample > "
                "Segment Anything Stacks has examples)."
            )
        return self.source

    def _ensure_layers(self, recreate: bool) -> None:
        src, img = self.source, self.image_layer
        layers = self.viewer.layers
        for attr in ("preview_layer", "boxes_layer", "points_layer"):
            layer = getattr(self, attr)
            if layer is not None and layer in layers and recreate:
                self._muted = True
                layers.remove(layer)
                self._muted = False
            if recreate or layer not in layers:
                setattr(self, attr, None)
        if self.preview_layer is None:
            self.preview_layer = L.add_labels_layer(
                self.viewer, src, img, L.PREVIEW_NAME, dtype=np.uint16
            )
            self.preview_layer.opacity = 0.6
            self._rendered = set()
        if self.boxes_layer is None:
            self.boxes_layer = L.add_boxes_layer(self.viewer, src, img)
            self.boxes_layer.events.data.connect(self._on_prompts_changed)
        if self.points_layer is None:
            self.points_layer = L.add_points_layer(self.viewer, src, img)
            self.points_layer.events.data.connect(self._on_prompts_changed)
            self.points_layer.mouse_drag_callbacks.append(self._on_points_press)
            self._restore_default_kind()
        self.viewer.layers.selection.active = self.points_layer

    def _on_layer_removed(self, event) -> None:
        layer = L.unwrap(event.value)
        if self._muted:
            return
        if L.same(layer, self.image_layer):
            self.image_layer = self.source = self.emb = None
            self.previews, self.volume = [], None
        for attr in ("points_layer", "boxes_layer", "preview_layer", "target_layer"):
            if L.same(getattr(self, attr), layer):
                setattr(self, attr, None)
        self.history.forget(layer)
        self.embeddings.drop_layer(layer)

    # ------------------------------------------------------------------ embeddings
    def _cache_key(self):
        from .model_choice import precision_key

        return self.embeddings.key(
            self.image_layer, self.channel_axis, self.model_choice.key, self.device, self.store,
            precision_key(self.device, self.precision),
        )

    def _lookup(self) -> None:
        """Point at cached predictor and embeddings for the current choices (no compute)."""
        self.previews, self.volume = [], None
        self._render()
        if self.model_choice is None:
            self.predictor = self.emb = None
            return
        self.predictor = self.models.get(self.model_choice, self.device, self.precision)
        self.emb = self.embeddings.get(self._cache_key()) if self.source is not None else None
        self.model_changed.emit(self.predictor)

    def current_z(self) -> int:
        src = self._require_image()
        layer = self.image_layer
        world = np.asarray(self.viewer.dims.point, dtype=float)[-src.ndim :]
        data = (world - np.asarray(layer.translate)[-src.ndim :]) / np.asarray(layer.scale)[
            -src.ndim :
        ]
        return src.slice_of(data)

    def embedding_summary(self) -> str:
        """E.g. "12 of 32 slices embedded" for the current image and model."""
        if self.source is None:
            return "no image"
        n = self.source.n_slices
        done = 0 if self.emb is None else n - len(missing_slices(self.emb, range(n)))
        if n == 1:
            return "embedded" if done else "not embedded yet"
        return f"{done} of {n} slices embedded"

    def ready(self, indices) -> bool:
        return self.emb is not None and not missing_slices(self.emb, indices)

    def _prepare_gen(self, indices):
        """Generator job: load the model if needed, compute the embeddings of ``indices``.

        Returns (key, choice, device, predictor, emb, precision); nothing shared is modified.
        """
        if self.model_choice is None:
            raise UserError("No model: pick one in 'Model'.")
        src = self._require_image()
        choice, device, store, key = self.model_choice, self.device, self.store, self._cache_key()
        precision = self.precision
        predictor = self.models.get(choice, device, precision)
        emb = self.embeddings.get(key)
        models = self.models

        def gen():
            nonlocal predictor, emb
            yield 0, 0
            if predictor is None:
                predictor = models.load(choice, device, precision)
            if emb is None:
                from napari_sam.embeddings import StackEmbeddings

                emb = StackEmbeddings(
                    src.stack,
                    predictor.model,
                    store=store,
                    predictor=predictor,
                    cache_size=min(max(64, src.n_slices), MAX_MEMORY_SLICES),
                )
            todo = missing_slices(emb, range(len(emb)) if indices is None else indices)
            yield from embed_job(emb, todo)
            return key, choice, device, predictor, emb, precision

        return gen()

    def _adopt(self, key, choice, device, predictor, emb, precision="auto") -> None:
        """Main thread: keep a finished preparation's model and embeddings."""
        first_load = self.models.get(choice, device, precision) is None
        self.models.put(choice, device, predictor, precision)
        self.embeddings.put(key, emb)
        if self.model_choice is not None and self._cache_key() == key:
            self.predictor, self.emb = predictor, emb
            self.model_changed.emit(predictor)
            if first_load and self.using_demo:
                from .notify import info

                info(DEMO_NOTICE)

    def compute_embeddings(self, indices=None, then=None) -> Job | None:
        """Start computing embeddings (default: every slice); ``then()`` runs afterwards."""
        gen = self._prepare_gen(indices)

        def done(result):
            self._adopt(*result)
            n = len(result[4]) if indices is None else len(list(indices))
            self._say(f"Embeddings ready ({n} slice{'s' if n != 1 else ''}).")

        return self._start(gen, "Computing SAM embeddings", done, then=then)

    def preload(self) -> Job | None:
        """Start loading the model and embedding the visible slice, if an image and a model
        are chosen and that slice is not embedded yet (#29: the first click then only
        decodes). Nothing starts while a job runs, and a model that would be downloaded is
        not fetched before a click. Clicks during the job are previewed when it ends.

        Returns
        -------
        Job or None
            The embedding job, or None when there was nothing to do.
        """
        choice = self.model_choice
        if self.source is None or self.image_layer is None or choice is None:
            return None
        if not (choice.cached or choice.is_file) or (self.job is not None and self.job.running):
            return None
        z = self.current_z()
        if self.ready([z]):
            return None
        return self.compute_embeddings([z], then=lambda: self._say(self.next_step()))

    # ------------------------------------------------------------------ jobs
    def _start(self, gen, description: str, on_returned, then=None) -> Job:
        """Run job ``gen``; ``on_returned(result)`` applies its result and ``then()`` runs
        once the job has ended, if it succeeded (so that no decoding happens while a job
        counts as running)."""
        if self.job is not None and self.job.running:
            gen.close()
            raise UserError(f"'{self.job.description}' is running: wait for it or press Cancel.")

        def finished(job):
            if self.job is job:
                self.job = None
                self.job_changed.emit(None)
            if job.cancelled:
                self._pending = False
                self._say(f"Cancelled: {job.description}. Nothing was changed.")
                return
            from .notify import guarded

            after = then if job.succeeded else None
            if self._pending:  # prompts arrived while the job ran
                self._pending = False
                after = self.update_preview
            if after is not None:
                guarded(after)()

        def errored(err):
            self._pending = False  # a click during a failed job must not start it again
            message = report(err)
            self._say(f"Failed: {description}. {message}")

        job = self.job = Job(description)
        self.job_changed.emit(job)
        self._say(description + " ...")
        run_job(
            gen,
            description=description,
            on_progress=self.job_progress.emit,
            on_returned=on_returned,
            on_error=errored,
            on_finished=finished,
            sync=self.sync,
            job=job,
        )
        return job

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()

    def close(self) -> None:
        """Stop listening to the viewer and cancel a running job (the layers stay)."""
        self.cancel()
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)

    # ------------------------------------------------------------------ prompts
    def _on_points_press(self, layer, event):
        self._negative_click = "Shift" in event.modifiers
        # napari makes a selected point's features the defaults for new points (a negative
        # Shift-click would make every later click negative): the mode decides, not history
        self._restore_default_kind()
        yield
        while event.type == "mouse_move":
            yield

    def _on_prompts_changed(self, event=None) -> None:
        action = str(getattr(event, "action", "")) if event is not None else ""
        if action and not action.endswith(("added", "removed", "changed")):
            return
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
        if self._muted or not self.live:
            return
        from .notify import guarded

        guarded(self.update_preview)()

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

    def objects(self):
        src = self._require_image()
        pts, lab = L.read_points(self.points_layer, src)
        boxes = boxes_from_shapes(L.read_boxes(self.boxes_layer, src))
        return group_prompts(pts, lab, boxes)

    # ------------------------------------------------------------------ preview
    def _refine_id(self, z: int | None) -> int:
        """The target label being refined (0: none)."""
        if not self.refine or self.target_layer is None:
            return 0
        label = int(self.target_layer.selected_label)
        if label <= 0:
            return 0
        if z is not None:
            present = (self.source.zyx_view(self.target_layer.data)[z] == label).any()
            if not present:
                raise UserError(
                    f"Label {label} is not on slice {z}: select a label that is there (picker "
                    "tool of the labels layer) or untick 'Refine selected label'."
                )
        return label

    def _mask_inputs(self, z: int, emb) -> dict:
        label = self._refine_id(z)
        if not label:
            return {}
        from napari_sam.volume import mask_to_logits

        mask = self.source.zyx_view(self.target_layer.data)[z] == label
        p = self.predictor
        logits = mask_to_logits(mask, emb.original_size, emb.input_size, p.img_size, p.low_res_size)
        return {POINT_OBJECT: logits.numpy()}

    def update_preview(self) -> list[ObjectPreview]:
        """Decode the prompts on the current slice into the preview layer (live preview)."""
        src = self._require_image()
        z = self.current_z()
        on_slice = [(o.key, o.slices[z]) for o in self.objects() if z in o.slices]
        if self.volume is not None:
            self.volume = None
        if not on_slice:
            self.previews = []
            self._render()
            self._say("Add a point (click) or a box (boxes layer) to segment an object.")
            return self.previews
        if not self.ready([z]):
            if self.job is None or not self.job.running:
                batch = list(range(z, min(z + 4, src.n_slices)))
                self.compute_embeddings(batch, then=self.update_preview)
            else:
                self._pending = True
                self._say("Waiting for the running job; the preview follows.")
            return self.previews
        emb = self.emb[z]
        self.previews = decode_slice(self.predictor, emb, z, on_slice, self._mask_inputs(z, emb))
        self._render()
        self._say(self._preview_text())
        return self.previews

    def _preview_text(self) -> str:
        if not self.previews:
            return "No object on this slice."
        parts = []
        for p in self.previews:
            name = "point object" if p.key == POINT_OBJECT else f"box {p.key[1] + 1}"
            cand = f", candidate {p.index + 1}/{p.n_candidates}" if p.n_candidates > 1 else ""
            parts.append(f"{name}: score {p.score:.2f}{cand}")
        return "; ".join(parts) + ". Shift+C commits."

    def next_candidate(self) -> int | None:
        multi = [p for p in self.previews if p.n_candidates > 1]
        if not multi:
            self._say("Only one candidate: a single click without a box has three.")
            return None
        target = next((p for p in multi if p.key == POINT_OBJECT), multi[0])
        index = target.cycle()
        self._render()
        self._say(self._preview_text())
        return index

    def _render(self) -> None:
        layer = self.preview_layer
        if layer is None or self.source is None or layer not in self.viewer.layers:
            return
        view = self.source.zyx_view(layer.data)
        if self._rendered is None:
            view[...] = 0
        else:
            for z in self._rendered:
                view[z] = 0
        self._rendered = set()
        if self.volume is not None:
            labels = np.asarray(self.volume.labels)
            np.copyto(view, labels.astype(view.dtype, copy=False))
            self._rendered = None
        else:
            for i, p in enumerate(self.previews, start=1):
                view[p.z][p.mask] = i
                self._rendered.add(p.z)
        layer.refresh()

    # ------------------------------------------------------------------ commit, undo
    def _target(self):
        src = self._require_image()
        if self.target_layer is None or self.target_layer not in self.viewer.layers:
            self.target_layer = L.add_labels_layer(self.viewer, src, self.image_layer, L.TARGET_NAME)
            # keep the prompt layers on top and active
            layers = self.viewer.layers
            layers.move(layers.index(self.target_layer), layers.index(self.preview_layer))
            layers.selection.active = self.points_layer
            self.target_changed.emit(self.target_layer)
        return self.target_layer

    def commit(self):
        """Write the preview into the target labels layer with fresh ids; clear the prompts."""
        src = self._require_image()
        if self.job is not None and self.job.running:
            raise UserError(f"'{self.job.description}' is running: wait for it or press Cancel.")
        if self.volume is not None:
            labels = np.asarray(self.volume.labels)
            keys = list(self.volume.object_ids)
            objects = [ObjectMask(labels == i, None, self._volume_replaces.get(i, 0)) for i in keys]
            clicks = [None] * len(objects)
        elif self.previews:
            refine = self._refine_id(None)
            objects = [
                ObjectMask(p.mask, p.z, refine if p.key == POINT_OBJECT else 0)
                for p in self.previews
            ]
            prompts = {o.key: o for o in self.objects()}
            clicks = [_positives(prompts.get(p.key), p.z) for p in self.previews]
            keys = list(range(len(self.previews)))
        else:
            raise UserError("Nothing to commit: click a point or draw a box on the object first.")
        kept = [i for i, o in enumerate(objects) if o.mask.any() or o.replaces]
        objects, clicks = [objects[i] for i in kept], [clicks[i] for i in kept]
        keys = [keys[i] for i in kept]
        if not objects:
            raise UserError("The preview is empty: add prompts until the object shows, then commit.")
        before = objects
        objects, skipped = self._skip_labelled(objects, clicks)
        written = [(k, o.replaces) for k, o in zip(keys, before) if any(o is w for w in objects)]
        target = self._target()
        data = src.zyx_view(target.data)
        self._log_before_commit(target)
        commit = apply_objects(data, objects, overwrite=self.overwrite)
        if commit.n_pixels == 0:
            raise UserError(
                "Nothing was written: every pixel of the preview belongs to other objects. "
                "Tick 'Overwrite other labels' to replace them."
            )
        commit.target = target
        self.history.push(commit)
        target.refresh()
        self._log_commit(self.previews, written, commit)
        ids = ", ".join(str(i) for i in commit.ids)
        self.clear()
        note = f" {skipped}" if skipped else ""
        self._say(f"Committed label {ids} ({commit.n_pixels} pixels). Shift+U undoes it.{note}")
        return commit

    def _skip_labelled(self, objects: list[ObjectMask], clicks) -> tuple[list[ObjectMask], str]:
        """Leave out new objects that were committed before; say why.

        An object was committed before when at least :data:`ALREADY_LABELLED` of its preview
        is labelled and its positive clicks (``clicks[i]``, (P, 2) (row, col), if any) all
        lie on labelled pixels. Without "Overwrite other labels" only its free pixels would
        be written: a sliver around the old object. Raises :class:`UserError` when every
        object is left out.
        """
        target = self.target_layer
        if self.overwrite or target is None or target not in self.viewer.layers:
            return objects, ""
        data = self.source.zyx_view(target.data)
        keep, notes = [], []
        for obj, pts in zip(objects, clicks):
            region = data[obj.mask] if obj.z is None else data[obj.z][obj.mask]
            labelled = region[region != 0]
            on_labels = pts is None or _all_labelled(data[obj.z], pts)
            if obj.replaces or not on_labels or labelled.size < ALREADY_LABELLED * region.size:
                keep.append(obj)
                continue
            ids, counts = np.unique(labelled, return_counts=True)
            notes.append((int(ids[counts.argmax()]), labelled.size / region.size))
        if not notes:
            return objects, ""
        text = "; ".join(f"{frac:.0%} of it is label {label} already" for label, frac in notes)
        how = (f"To change a label, select it in '{target.name}' and tick 'Refine selected "
               "label'; to replace it, tick 'Overwrite other labels'.")
        if not keep:
            message = f"Not committed: the previewed object was committed before ({text}). {how}"
            self._say(message)
            raise UserError(message)
        return keep, f"{len(notes)} object(s) not committed, committed before ({text}). {how}"

    def _history_step(self, redo: bool):
        commit = self.history.peek_redo() if redo else self.history.peek_undo()
        if commit is None:
            raise UserError("Nothing to redo." if redo else "Nothing to undo.")
        target = commit.target
        if target not in self.viewer.layers:
            self.history.forget(target)
            raise UserError("The labels layer of that commit was removed; nothing to restore.")
        data = target.data
        (self.history.redo if redo else self.history.undo)(data)
        target.refresh()
        self._log_step(commit, redo)
        ids = ", ".join(str(i) for i in commit.ids)
        self._say(f"{'Redid' if redo else 'Undid'} commit of label {ids}.")
        return commit

    def undo(self):
        return self._history_step(redo=False)

    def redo(self):
        return self._history_step(redo=True)

    def clear(self) -> None:
        """Remove all prompts and the preview (the labels stay)."""
        self._muted = True
        try:
            if self.points_layer is not None:
                self.points_layer.data = np.empty((0, self.points_layer.ndim))
            if self.boxes_layer is not None and len(self.boxes_layer.data):
                self.boxes_layer.data = []
        finally:
            self._muted = False
        self.previews, self.volume = [], None
        self._render()
        self._say("Cleared.")


def _positives(obj, z: int) -> np.ndarray | None:
    """Positive clicks (P, 2) (row, col) of prompts ``obj`` on slice ``z`` (None: unknown)."""
    sp = None if obj is None else obj.slices.get(z)
    if sp is None:
        return None
    return sp.points[sp.labels == 1]


def _all_labelled(labels_2d: np.ndarray, points_rc: np.ndarray) -> bool:
    """Whether every point lies on a labelled pixel (no points: True)."""
    rc = np.round(np.asarray(points_rc, dtype=float)).astype(int).reshape(-1, 2)
    rc = np.clip(rc, 0, np.array(labels_2d.shape) - 1)
    return bool((labels_2d[rc[:, 0], rc[:, 1]] != 0).all())
