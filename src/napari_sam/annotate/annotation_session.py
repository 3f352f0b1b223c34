"""One annotation session without a viewer: the image, model, prompts, preview, commits with
undo and redo, and the status line that says what happened and what to do next.

A script drives :class:`AnnotationSession` directly (prompts and labels are numpy arrays, long
work runs on the calling thread); the napari dock's
:class:`~napari_sam._qt.controller.AnnotationController` is a subclass that overrides the
*hooks* (the methods under "hooks" below) to keep the prompts in napari layers, commit into a
labels layer, draw the preview into a layer and run long work in worker threads.

Coordinates are napari order: points (z, row, col), boxes (z, row0, col0, row1, col1), labels
(Z, Y, X).
"""

from __future__ import annotations

import numbers
import os
import warnings
from pathlib import Path

import numpy as np

from napari_sam.annotation import (
    CommitHistory,
    LabelIdTaken,
    ObjectMask,
    ObjectPreview,
    apply_objects,
    not_writable,
)
from napari_sam.words import counted, for_count

from .autosave_retry import AutosaveRetry
from .click_first import ClickFirst
from .commit_checks import (
    preview_out_of_date,
    refine_changed,
    refine_problem,
    volume_out_of_date,
)
from .commit_words import describe_commit, edited_note, nothing_to_commit
from .embedding_cache import EmbeddingCache, describe_tiling, missing_slices, new_embeddings
from .ended_sessions import LastSave
from .errors import UserError
from .failed_loads import FailedLoads
from .id_room import id_room_problem
from .image_source import ImageSource, channels_hint, make_source, time_point_words
from .jobs import Phase, embed_job, run_to_end, tiled_embed_job
from .model_choice import DEMO_NOTICE, ModelCache, ModelChoice, choice_identity, precision_key
from .model_contrast import ModelContrast
from .model_notes import ModelNotes
from .prompt_groups import POINT_OBJECT, all_labelled, positives
from .prompt_shelf import PromptShelf
from .session_log import SessionLog
from .slice_preview import SlicePreview
from .stack_actions import StackActions
from .stale_jobs import StaleJobs

__all__ = ["ALREADY_LABELLED", "MAX_MEMORY_SLICES", "AnnotationSession"]

#: Embeddings kept in memory per stack (the rest is recomputed or read from the store).
MAX_MEMORY_SLICES = 256

#: A previewed object of which at least this fraction is already labelled (by other
#: objects) is not committed unless "Overwrite other labels" is on: it is almost surely an
#: object committed before, clicked again, and only a sliver around it would be written.
ALREADY_LABELLED = 0.8


class AnnotationSession(SlicePreview, ClickFirst, StackActions, LastSave, AutosaveRetry,
                        SessionLog, PromptShelf, StaleJobs, FailedLoads, ModelNotes,
                        ModelContrast):
    """State and actions of one annotation session (docs/gui.md has the user's view).

    Propagation and segment-everything come from
    :class:`~napari_sam.annotate.stack_actions.StackActions`; the commit log, session files,
    autosave and the trace's fixes from :class:`~napari_sam.annotate.session_log.SessionLog`;
    the uncommitted prompts of other images from
    :class:`~napari_sam.annotate.prompt_shelf.PromptShelf`; the prompted objects and the
    preview of the visible slice from
    :class:`~napari_sam.annotate.slice_preview.SlicePreview`; the contrast limits the model
    sees from :class:`~napari_sam.annotate.model_contrast.ModelContrast`; the preload, and
    clicks on a tiled image decoded before it ends, from
    :class:`~napari_sam.annotate.click_first.ClickFirst`.

    Attributes
    ----------
    source : ImageSource or None
        The image as a stack of (Y, X) or (Y, X, 3) slices.
    previews : list of napari_sam.annotation.ObjectPreview
        The objects decoded on one slice (the preview), in object order.
    volume : napari_sam.volume.VolumeResult or None
        A propagation under preview (then ``previews`` is empty).
    labels : numpy.ndarray (Z, Y, X) integer or None
        Where commits go (without a viewer); made (uint32) on the first commit.
    status : str
        The last status line.
    """

    def __init__(self):
        self.models = ModelCache()
        self.embeddings = EmbeddingCache()
        self.history = CommitHistory()
        self.model_choice: ModelChoice | None = None
        self.device = "auto"
        self.precision = "auto"  # "auto", "fp32" or "bf16" (the Precision box)
        self.store: str | None = None
        self.tiling = "auto"  # "auto": tile images larger than the model input; None: never
        self.channel_axis: int | None = None
        self.channel: int | None = None  # of channel_axis, segmented alone (None: as RGB)
        self.source: ImageSource | None = None
        self.image_refusal = ""  # why the image last picked cannot be used ("": it can)
        self.refused_image = None  # that image (a napari layer in the dock)
        self.overwrite = False
        self.refine = False
        #: where click and box masks are cut: "auto" (the model's recommendation, "edge" for
        #: the demo model), "threshold" or "edge" (:mod:`napari_sam.edge_threshold`)
        self.mask_boundary = "auto"
        self.live = True
        self.axis_kind = "z"
        self.predictor = None
        self.emb = None
        self.previews: list[ObjectPreview] = []
        self._preview_refine = 0  # the label the slice preview refined (0: none)
        self._volume_drawn = None  # the prompt arrays the propagated preview was made from
        #: Shift+M choices: (object, slice, prompt, model, image) -> candidate index shown
        #: (:meth:`choice_key`); the preview and Propagate start from it
        self.chosen_candidates: dict[tuple, int] = {}
        self.volume = None  # VolumeResult under preview
        self._volume_replaces: dict[int, int] = {}
        self.job = None  # a running job of the GUI (never set without one)
        self.made_embeddings: list = []  # (key, embeddings) the running job made
        self.status = ""
        self._rendered: set[int] | None = set()  # slices drawn in the preview (None: all)
        self.preview_lead = ""  # news the next preview's status line starts with (a load)
        self._pending = False
        # without a viewer: the image, the visible slice, the prompts and the labels
        self.image_data = None
        self.name = "image"
        self.path = None
        self.z = 0
        self.points = np.zeros((0, 3))
        self.point_labels = np.zeros(0, int)
        self.boxes = np.zeros((0, 5))
        self.labels: np.ndarray | None = None
        self.refine_label = 0
        self.results: dict[str, np.ndarray] = {}
        self.shelved: dict = {}  # uncommitted prompts of other images (PromptShelf)
        self._init_session()

    # ------------------------------------------------------------------ hooks
    # Without a viewer these keep everything in this object; the GUI overrides them.
    def image_identity(self) -> tuple:
        """``(image id, data object)`` of the image: embeddings are cached under them."""
        return id(self.image_data), self.image_data

    def image_name(self) -> str:
        return self.name

    def image_path(self) -> Path | None:
        """The file the image was read from (None: made in memory)."""
        return Path(self.path) if self.path else None

    def image_shown(self) -> bool:
        """Whether the image is still there (a napari layer can be removed)."""
        return self.image_data is not None

    def contrast_limits(self) -> list[float]:
        """The image's display contrast limits (a session file records them): slice 0's
        finite pixels' range (NaN pixels, which JSON cannot hold, left out; none: 0-1)."""
        data = np.asarray(self.source.stack[0]) if self.source is not None else np.zeros(1)
        data = data[np.isfinite(data)] if data.dtype.kind == "f" else data
        return [float(data.min()), float(data.max())] if data.size else [0.0, 1.0]

    def current_z(self) -> int:
        """The slice shown (the one prompts and previews are about)."""
        self._require_image()
        return int(self.z)

    def go_to_slice(self, z: int) -> None:
        """Show slice ``z`` of the image's stack (UserError for a slice it does not have)."""
        z = self.checked_slice(z)
        if self._require_image().is_3d:
            self.z = z

    def checked_slice(self, z) -> int:
        """Slice number ``z`` given by a script, as an int; UserError when it is not a whole
        number, or not a slice of the image's stack (0 for a 2D image)."""
        n = self._require_image().n_slices
        try:
            whole = isinstance(z, numbers.Real) and not isinstance(z, bool) and (
                float(z) == int(z))
        except (ValueError, OverflowError):  # nan, inf
            whole = False
        if not whole or not 0 <= int(z) < n:
            have = "slice 0 (a 2D image)" if n == 1 else f"slices 0-{n - 1}"
            shown = z if isinstance(z, numbers.Number) else repr(z)  # 12, not np.int64(12)
            raise UserError(f"Slice {shown} is not a slice of '{self.image_name()}': it has "
                            f"{have}.")
        return int(z)

    def prompt_slice(self, z) -> int:
        """Slice ``z`` of a prompt a script adds, checked (:meth:`checked_slice`) and shown:
        previews are of the slice shown (a point added on another slice was kept, but the
        status line asked for a point and a commit found nothing)."""
        z = self.checked_slice(z)
        if self._require_image().is_3d and z != self.current_z():
            self.go_to_slice(z)
        return z

    def prompt_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompts as points (P, 3) (z, row, col), their labels (P,) 1/0 and boxes (N, 5)
        (z, row0, col0, row1, col1), in stack coordinates."""
        return self.points, self.point_labels, self.boxes

    def set_prompts(self, points, labels, boxes) -> None:
        """Replace the prompts (arrays as :meth:`prompt_arrays` returns them)."""
        self.points = np.asarray(points, float).reshape(-1, 3)
        self.point_labels = np.asarray(labels, int).reshape(-1)
        self.boxes = np.asarray(boxes, float).reshape(-1, 5)

    def add_point(self, z: int, row: float, col: float, positive: bool = True) -> None:
        """Add a prompt point on slice ``z`` (``positive=False``: a negative point), which is
        shown (:meth:`prompt_slice`)."""
        z = self.prompt_slice(z)
        self.points = np.concatenate([self.points, [[z, row, col]]])
        self.point_labels = np.append(self.point_labels, int(bool(positive)))

    def add_box(self, z: int, row0: float, col0: float, row1: float, col1: float) -> None:
        """Add a box prompt on slice ``z`` (one object per box), which is shown."""
        z = self.prompt_slice(z)
        box = [z, min(row0, row1), min(col0, col1), max(row0, row1), max(col0, col1)]
        self.boxes = np.concatenate([self.boxes, [box]])

    def clear_prompts(self) -> None:
        self.set_prompts(np.zeros((0, 3)), np.zeros(0, int), np.zeros((0, 5)))

    def selected_label(self) -> int | None:
        """The label chosen for refining (None: there are no labels to refine)."""
        return None if self.labels is None else int(self.refine_label)

    def target_labels(self) -> np.ndarray | None:
        """The (Z, Y, X) labels commits go into, if they exist yet."""
        return self.labels

    def commit_target(self) -> tuple[object, np.ndarray]:
        """``(target, (Z, Y, X) labels)`` to commit into, made if needed; ``target`` is what
        a commit records (undo finds its array with :meth:`target_data`)."""
        if self.labels is None:
            self.labels = np.zeros(self._require_image().shape, dtype=np.uint32)
        return self.labels, self.labels

    def new_target(self, labels_zyx: np.ndarray):
        """Commit from now on into a copy of ``labels_zyx`` (a loaded session's labels)."""
        self.labels = np.array(labels_zyx, copy=True)
        return self.labels

    def forget_mismatched_target(self) -> None:
        """Drop the labels if they were made for another image (commits make new ones)."""
        if self.labels is not None and self.labels.shape != self.source.shape:
            self.labels = None

    def target_alive(self, target) -> bool:
        """Whether a commit's target still exists (a labels layer can be removed)."""
        return True

    def target_zyx(self, target) -> np.ndarray:
        """The (Z, Y, X) labels of a commit's target."""
        return target

    def target_data(self, target) -> np.ndarray:
        """The array of a commit's target, as it was committed into (undo and redo write it
        in place, also after the image changed)."""
        return target

    def labels_changed(self, target, changes=(), undoing: bool = False) -> None:
        """A commit, undo (``undoing``) or redo wrote ``changes`` into ``target``."""

    def render(self) -> None:
        """Show the preview (the GUI draws :meth:`draw_preview` into its preview layer)."""

    def add_result(self, labels: np.ndarray, name: str) -> str:
        """A segment-everything result (Z, Y, X) named ``name``: kept in :attr:`results`;
        returns the name it is kept under (the GUI's layer may be renamed: "name [1]")."""
        self.results[name] = labels
        return name

    def start_job(self, gen, description: str, on_returned, then=None):
        """Run job ``gen``; ``on_returned(result)`` applies its result, then ``then()`` runs.
        Here on the calling thread (errors raise); the GUI runs it in a worker thread."""
        if self.job is not None and self.job.running:
            gen.close()
            raise UserError(f"'{self.job.description}' is running: wait for it or press Cancel.")
        gen = self.holding_store(gen)
        self._say(description + " ...")
        on_returned(run_to_end(gen, self._say))
        if then is not None:
            then()
        return None

    def refresh_preview(self) -> None:
        """Preview again after the prompts changed (the GUI reports errors instead)."""
        self.update_preview()

    def notify_status(self, text: str) -> None:
        """The status line changed to ``text``."""

    def notify_model(self, predictor) -> None:
        """The predictor in use changed."""

    def notify_info(self, text: str) -> None:
        """Something worth knowing happened (e.g. the demo model was loaded)."""

    def notify_warning(self, text: str) -> None:
        """Something went wrong that does not stop the session (e.g. autosave failed)."""
        warnings.warn(text, stacklevel=2)

    # ------------------------------------------------------------------ status
    def next_step(self) -> str:
        """What the user has to do next, from the current state (the first status line)."""
        if self.source is None and self.image_refusal:  # images open, none usable: why
            return self.image_refusal
        if self.source is None or not self.image_shown():
            return ("Open an image (File > Open, or File > Open Sample > Segment Anything "
                    "Stacks); it is picked in 'Image'.")
        if self.model_choice is None:
            return "Pick a model in 'Model'."
        return (f"Click on an object in '{self.image_name()}' to segment it (Shift-click: "
                "negative point; draw a box in 'SAM boxes' for one object per box)."
                + self.shelf_note() + channels_hint(self.source, self.image_name()))

    def refused(self, text: str) -> None:
        """Show why an action was refused as the status line (the GUI's handlers call it for
        every :class:`UserError`)."""
        if text != self.status:
            self._say(text)

    def say(self, text: str) -> None:
        """Show ``text`` as the status line (news the GUI has about the viewer)."""
        self._say(text)

    def _say(self, text: str) -> None:
        if self.using_demo and "demo" not in text:
            text += " [demo model]"
        self.status = text
        self.notify_status(text)

    @property
    def using_demo(self) -> bool:
        by_choice = self.model_choice is not None and self.model_choice.is_demo
        by_model = self.predictor is not None and getattr(self.predictor.model, "is_demo", False)
        return bool(by_choice or by_model)

    # ------------------------------------------------------------------ setup
    def set_model(self, choice: ModelChoice) -> None:
        """Use ``choice`` from now on; propagation goes back to the model's own method."""
        before, loaded = self.model_choice, self.predictor
        if before is not None and (choice is None or before.key != choice.key):
            self.previous_model_choice = before  # (a failed load goes back to it if it works)
        self.model_choice = choice
        self.propagation_method = None
        dropped = self._lookup()
        if (choice is not None and before is not None and before.key == choice.key
                and choice.is_file and loaded is not None and self.predictor is None):
            self.after_setting(dropped, self.checkpoint_changed(choice.key))
            return
        if choice is None or before is None or before.key == choice.key:
            return  # the first choice (the widget opening) keeps the first status
        fetch = "" if choice.cached else " It is downloaded at the first click (once)."
        self.after_setting(dropped, f"Model {choice.key}.{fetch}")  # not the old model's line

    def set_device(self, device: str) -> None:
        from napari_sam.device import resolve_device

        try:
            resolve_device(device)
        except ValueError as err:
            raise UserError(f"{err}. Pick 'auto' or 'cpu' in 'Device'.") from None
        self._check_precision(device, self.precision)
        self.device = device
        self.after_setting(self._lookup(), f"Device {device}.", quiet=True)

    def set_precision(self, precision: str) -> None:
        """Compute precision of the models loaded from now on ("auto", "fp32" or "bf16");
        models and embeddings are kept per precision."""
        self._check_precision(self.device, precision)
        self.precision = precision
        self.after_setting(self._lookup(), f"Precision {precision}.", quiet=True)

    @staticmethod
    def _check_precision(device, precision) -> None:
        try:
            precision_key(device, precision)
        except ValueError as err:
            raise UserError(f"{err}. Pick 'auto' in 'Precision'.") from None

    def set_tiling(self, on: bool) -> None:
        """Tile images larger than the model input (``on``, the default) or never: embed
        each slice whole, shrunk to the model input. Embeddings are kept per choice."""
        self.tiling = "auto" if on else None
        dropped = self._lookup()
        how = ("embedded in tiles of the model input's size" if on else
               "shrunk to the model input")
        self.after_setting(dropped, f"Large images are {how}.")

    def set_store(self, path: str | None) -> None:
        """Keep embeddings in the zarr store ``path`` (None: in memory); ``~/emb.zarr`` is in
        the home folder (it made a folder named ``~``), a relative path is made absolute."""
        self.store = os.path.abspath(os.path.expanduser(path)) if path else None
        self.after_setting(self._lookup(), "Embedding store changed.", quiet=True)

    def set_image(self, data, *, rgb: bool = False, channel_axis: int | None = None,
                  channel: int | None = None, name: str = "image", path=None) -> None:
        """Annotate ``data``: (Y, X), (Z, Y, X), RGB (..., 3|4) with ``rgb``, or any of these
        with a ``channel_axis`` and the ``channel`` of it segmented alone (None: channels
        0-2 as R, G, B; see :func:`~napari_sam.annotate.image_source.make_source`);
        ``path`` is the file it came from (autosave writes beside it)."""
        source = make_source(data, rgb=rgb, channel_axis=channel_axis, channel=channel)
        changed = data is not self.image_data or channel_axis != self.channel_axis
        aside = self.set_aside_prompts() if changed else ""
        switched = not changed and channel != self.channel  # the prompts stay: decoded anew
        self.image_data, self.name, self.path = data, name, path
        self.channel_axis, self.channel, self.source = channel_axis, channel, source
        self.z = min(int(self.z), source.n_slices - 1)  # a slice of this image (0 for 2D)
        if changed:
            self.clear_prompts()
        self.use_source(changed, aside, f"SAM now segments {source.segmented}." if switched else "")

    def use_source(self, changed: bool, aside: str = "", switched: str = "") -> None:
        """After a new image (``changed``) or channel axis: forget the preview, point at the
        cached model and embeddings, bring back the image's prompts set aside before
        (``aside``: what setting the last image's aside said), offer an autosaved session.
        After another channel of the image (``switched`` says which), the prompts stay and
        the preview is decoded again (live) or said to be dropped."""
        dropped = ("volume" if self.volume is not None else "slice" if self.previews else None)
        self.forget_mismatched_target()
        self.previews, self.volume = [], None
        self.render()
        self._lookup()
        if changed:
            self.release_session_file()  # (the last image's: another window may autosave it)
            self.forget_trace()  # (the last image's: not this one's)
            self.drop_sam2_features()
            restored = self.restore_prompts()
            note = " ".join(t for t in (aside, restored) if t)
            if note:  # with the restored preview's line, if it was decoded at once
                self._say(f"{note} {self.status}" if self.previews else note)
            else:  # not the last image's news ("Committed label 1 ... Shift+U undoes it")
                self._say(self.next_step())
            self.offer_resume()
        elif switched:
            self.after_setting(dropped, switched)

    def _require_image(self) -> ImageSource:
        if self.source is None and self.image_refusal:  # images open, none usable
            raise UserError(self.image_refusal)
        if self.source is None or not self.image_shown():
            raise UserError(
                "No image layer: open an image and pick it in 'Image' (File > Open Sample > "
                "Segment Anything Stacks has examples)."
            )
        return self.source

    # ------------------------------------------------------------------ embeddings
    def _cache_key(self):
        image_id, data = self.image_identity()
        return self.embeddings.key(
            image_id, data, (self.channel_axis, self.channel, self.source.time_point),
            choice_identity(self.model_choice),
            self.device, self.store, precision_key(self.device, self.precision), self.tiling,
            self.model_contrast(),
        )

    def _lookup(self) -> str | None:
        """Point at cached predictor and embeddings for the current choices (no compute).
        Where they changed, the preview goes; returns what went ("volume", "slice" or None)."""
        old = (self.predictor, self.emb)
        if self.model_choice is None:
            self.predictor = self.emb = None
        else:
            self.predictor = self.models.get(self.model_choice, self.device, self.precision)
            self.emb = (self.embeddings.get(self._cache_key())  # none yet: no torch needed
                        if self.source is not None and len(self.embeddings) else None)
            self.notify_model(self.predictor)
        self.cancel_stale_job()  # a job for other choices could not apply its result
        if self.predictor is not None and old[0] is self.predictor and old[1] is self.emb:
            return None  # the same model and embeddings: the preview stays
        dropped = "volume" if self.volume is not None else "slice" if self.previews else None
        self.previews, self.volume = [], None
        self.render()
        return dropped

    def embedding_summary(self) -> str:
        """E.g. "12 of 32 slices embedded" ("frames" in a time series) (SAM 2: for
        clicks, and what propagation keeps, :func:`~.embedding_cache.describe_embedded`)."""
        from .embedding_cache import describe_embedded

        if self.source is None:
            return "no image"
        n = self.source.n_slices
        done = 0 if self.emb is None else n - len(missing_slices(self.emb, range(n)))
        kept = self.sam2_features_kept() if self.model_family == "sam2" else None
        return describe_embedded(done, n, getattr(self.emb, "tiling", None), kept, self.axis_kind)

    def _say_ready(self, lead: str = "") -> None:
        """After the preload: ``lead``, what to do next, and how the image is tiled (if it
        is)."""
        tiles = getattr(self.emb, "tiling", None)
        note = "" if tiles is None else (f" Embedded in tiles: {describe_tiling(tiles)}; "
                                         "untick 'Tile large images' to embed it whole.")
        lead, model = self.ready_words(lead)  # a checkpoint file named, its news kept
        self._say(f"{lead} {self.next_step()}{note}{model}".lstrip())

    def tiling_note(self, emb=None) -> str:
        """", tiled: ..." saying how the embeddings ``emb`` (default the current ones) tile
        the image and how to turn it off ("" when they do not tile)."""
        tiles = getattr(self.emb if emb is None else emb, "tiling", None)
        if tiles is None:
            return ""
        return (f", tiled: {describe_tiling(tiles)}; untick 'Tile large images' to embed "
                "it whole")

    def ready(self, indices) -> bool:
        return (self.predictor is not None and self.emb is not None
                and not missing_slices(self.emb, indices))

    def _prepare_gen(self, indices, embed: bool = True, read_ahead=(), should_stop=None):
        """Generator job: load the model if needed, compute the embeddings of ``indices``
        and, unless the image is tiled (every window of a slice costs a model input), those
        of ``read_ahead`` (:func:`~.embedding_cache.new_embeddings`: SAM 1's
        :class:`~napari_sam.embeddings.StackEmbeddings`, tiled ones for large images, or a
        SAM 2 model's :class:`~.embedding_cache.Sam2SliceEmbeddings`; tiled embeddings yield
        a status line saying how the image is tiled, and progress over slices x windows);
        with ``embed`` False only load the model (``emb`` is then what the cache had, maybe
        None); ``should_stop()`` true ends a tiled embedding early (``tiled_embed_job``).

        Returns (key, choice, device, predictor, emb, precision); nothing shared is modified
        (but the layer's-limits store it embeds into is held: ``prune_contrast_stores``).
        """
        if self.model_choice is None:
            raise UserError("No model: pick one in 'Model'.")
        src = self._require_image()
        choice, device, store, key = (self.model_choice, self.device, self.contrast_store(),
                                      self._cache_key())
        precision, tiling, limits = self.precision, self.tiling, self.model_contrast()
        if limits is not None and store is not None:  # held (and counted if made) from now
            self.prune_contrast_stores()  # on, not only once the contrast changes again
        predictor = self.models.get(choice, device, precision)
        emb = self.stored_embeddings(key)  # (None: its store was deleted)
        models = self.models
        if self.job is None or not self.job.running:  # what the job makes, for job_cancelled
            self.made_embeddings = []
        made = self.made_embeddings

        def gen():
            nonlocal predictor, emb
            yield 0, 0
            if predictor is None:  # a failure then names this phase, not the job's work
                name = Path(choice.key).name if choice.is_file else choice.key
                yield Phase(f"loading the model '{name}'")
                predictor = models.load(choice, device, precision)
            if not embed:
                return key, choice, device, predictor, emb, precision
            if emb is None:
                emb = new_embeddings(src, predictor, store, tiling, MAX_MEMORY_SLICES, limits)
                made.append((key, emb))
            wanted = list(range(len(emb)) if indices is None else indices)
            tiled = getattr(emb, "tiling", None) is not None
            todo = missing_slices(emb, wanted if tiled else [*wanted, *read_ahead])
            if not tiled:
                yield from embed_job(emb, todo)
            elif todo:
                yield f"Embedding {describe_tiling(emb.tiling, len(todo))} ..."
                yield from tiled_embed_job(emb, todo, should_stop)
            return key, choice, device, predictor, emb, precision

        return gen()

    def _adopt(self, key, choice, device, predictor, emb, precision="auto") -> None:
        """Main thread: keep a finished preparation's model and embeddings (the embeddings
        only while an image is open: a job that ends after its image layer was removed keeps
        nothing of that image)."""
        first_load = self.models.get(choice, device, precision) is None
        self.models.put(choice, device, predictor, precision)
        self.working_model_choice = choice  # what a failed load goes back to
        self.made_embeddings = []  # adopted below (or of an image gone)
        if first_load:  # e.g. a checkpoint without its metadata file (also if the image left)
            for note in getattr(predictor.model, "load_notes", ()):
                self.notify_warning(note)
        if self.source is None:
            return
        if emb is not None:
            self.embeddings.put(key, emb)
        if self.model_choice is not None and self._cache_key() == key:
            self.predictor, self.emb = predictor, emb
            self.notify_model(predictor)
            if first_load and self.using_demo:
                self.notify_info(DEMO_NOTICE)

    def result_is_current(self, prepared, what: str) -> bool:
        """Main thread: whether a finished job's image, model and settings (the cache key of
        its preparation, ``prepared[0]``) are still the ones chosen. When they are not (the
        user picked another image or model while it ran) the status says that its result is
        not applied, and the caller drops it: it belongs to an image no longer shown."""
        if self.model_choice is not None and self.source is not None and (
                self._cache_key() == prepared[0]):
            return True
        if self.source is None:
            self._say(f"{what} finished after its image layer was removed: its result was not "
                      "applied. Open the image again to rerun it.")
            return False
        self._say(f"{what} finished after the image or model was changed: its result was not "
                  "applied. Pick that image and model again and rerun it (its embeddings are "
                  "kept, so it is quicker).")
        return False

    # ------------------------------------------------------------------ commit, undo
    def _preview_objects(self) -> tuple[list[ObjectMask], list, list]:
        """The preview as (objects to write, positive clicks of each, key of each)."""
        if self.volume is not None:
            labels = np.asarray(self.volume.labels)
            keys = list(self.volume.object_ids)
            objects = [ObjectMask(labels == i, None, self._volume_replaces.get(i, 0)) for i in keys]
            return objects, [None] * len(objects), keys
        if not self.previews:
            raise UserError(nothing_to_commit(self.prompt_arrays(), self.live, self.current_z,
                                              self.axis_kind))  # (frames: a time series)
        refine = self._refine_id(None)
        objects = [ObjectMask(p.mask, p.z, refine if p.key == POINT_OBJECT else 0)
                   for p in self.previews]
        prompts = {o.key: o for o in self.objects()}
        clicks = [positives(prompts.get(p.key), p.z) for p in self.previews]
        return objects, clicks, list(range(len(self.previews)))

    def commit(self):
        """Write the preview into the target labels with fresh ids; clear the prompts.

        Returns
        -------
        napari_sam.annotation.Commit
            What was written (``ids``, ``n_pixels``); :meth:`undo` restores it exactly.
        """
        self._require_image()
        if self.job_blocks_commit():  # (not a preload: it does not touch labels or prompts)
            raise UserError(f"'{self.job.description}' is running: wait for it or press Cancel.")
        objects, clicks, keys = self._preview_objects()
        kept = [i for i, o in enumerate(objects) if o.mask.any() or o.replaces]
        objects, clicks = [objects[i] for i in kept], [clicks[i] for i in kept]
        keys = [keys[i] for i in kept]
        if not objects:
            raise UserError("The preview is empty: add prompts until the object shows, then commit.")
        self._require_writable(self.target_labels())
        if self.volume is None:
            problem = (preview_out_of_date(self.previews, self.objects())
                       or refine_changed(self._preview_refine, self._refine_id(None)))
        else:
            problem = volume_out_of_date(self._volume_drawn, self.prompt_arrays())
        problem = problem or refine_problem(objects, self.target_labels())
        if problem:
            self.refuse(f"Not committed: {problem}.")
        before = objects
        objects, skipped = self._skip_labelled(objects, clicks)
        written = [(k, o.replaces) for k, o in zip(keys, before) if any(o is w for w in objects)]
        target, data = self.commit_target()
        self._require_writable(data)
        if problem := id_room_problem(data, objects, self.target_name()):
            raise UserError(problem)
        self._log_before_commit(target, data)
        commit = self.source.in_layer(apply_objects(data, objects, overwrite=self.overwrite))
        if commit.n_pixels == 0:
            raise UserError(
                "Nothing was written: every pixel of the preview belongs to other objects. "
                "Tick 'Overwrite other labels' to replace them."
            )
        commit.target = target
        self.history.push(commit)
        self.labels_changed(target, commit.changes)
        self._log_commit(self.previews, written, commit)
        what = describe_commit(commit, objects, data)
        self.clear()
        self.autosave_now()  # after the clear: the committed prompts are not pending
        note = (f" {skipped}" if skipped else "") + self.take_autosave_note()
        self._say(f"{what} Shift+U undoes it.{note}")
        return commit

    def _require_writable(self, data) -> None:
        """Refuse to commit into ``data`` (the target's (Z, Y, X) labels, None: made at the
        commit) unless it is an in-memory writable numpy array (a dask or zarr layer is
        not), before anything reads or writes it."""
        if data is None or not not_writable(data):
            return
        kind = (f"{type(data).__module__.split('.')[0]}.{type(data).__name__}"
                if not isinstance(data, np.ndarray) else
                "read-only" if not data.flags.writeable else "not contiguous")
        name = self.target_name()
        raise UserError(  # np.asarray kept a read-only array read-only; napari's console
            # has no 'layer' (nor always 'np')
            f"Not committed: the data of '{name}' ({kind}) is not an in-memory writable numpy "
            "array. Pick a new layer in 'Labels layer', or convert this one: type in napari's "
            f"console: import numpy as np; layer = viewer.layers[{name!r}]; layer.data = "
            "np.array(layer.data) (then commit again)."
        )

    def _skip_labelled(self, objects: list[ObjectMask], clicks) -> tuple[list[ObjectMask], str]:
        """Leave out new objects that were committed before; say why.

        An object was committed before when at least :data:`ALREADY_LABELLED` of its preview
        is labelled and its positive clicks (``clicks[i]``, (P, 2) (row, col), if any) all
        lie on labelled pixels. Without "Overwrite other labels" only its free pixels would
        be written: a sliver around the old object. Raises :class:`UserError` when every
        object is left out.
        """
        data = None if self.overwrite else self.target_labels()
        if data is None:
            return objects, ""
        keep, notes = [], []
        for obj, pts in zip(objects, clicks):
            region = data[obj.mask] if obj.z is None else data[obj.z][obj.mask]
            labelled = region[region != 0]
            on_labels = pts is None or all_labelled(data[obj.z], pts)
            if obj.replaces or not on_labels or labelled.size < ALREADY_LABELLED * region.size:
                keep.append(obj)
                continue
            ids, counts = np.unique(labelled, return_counts=True)
            notes.append((int(ids[counts.argmax()]), labelled.size / region.size))
        if not notes:
            return objects, ""
        text = "; ".join(f"{frac:.0%} of it is label {label} already" for label, frac in notes)
        how = (f"To change a label, select it in '{self.target_name()}' and tick 'Refine "
               "selected label'; to replace it, tick 'Overwrite other labels'.")
        if not keep:
            message = f"Not committed: the previewed object was committed before ({text}). {how}"
            self._say(message)
            raise UserError(message)
        return keep, f"{counted(len(notes), 'object')} not committed, as {text}. {how}"

    def target_name(self) -> str:
        """The name of the labels commits go into (the GUI's labels layer)."""
        return "labels"

    def _history_step(self, redo: bool):
        commit = self.history.peek_redo() if redo else self.history.peek_undo()
        if commit is None:
            raise UserError("Nothing to redo." if redo else "Nothing to undo.")
        target = commit.target
        if not self.target_alive(target):
            self.history.forget(target)
            raise UserError("The labels layer of that commit was removed; nothing to restore.")
        problem = self.history_problem(target)
        if problem:
            self.refuse(f"Not {'redone' if redo else 'undone'}: {problem}.")
        ids = for_count(len(commit.ids), "label") + " " + ", ".join(map(str, commit.ids))
        where = self.labels_name(target)
        try:
            (self.history.redo if redo else self.history.undo)(self.target_data(target))
        except LabelIdTaken as err:
            raise UserError(
                f"Not redone: {err} in '{where}'. Give that object another id (or erase it), "
                "then press Shift+R again; or leave it and commit the object anew."
            ) from None
        # what it wrote only: napari's history gets no step for a redo that found the
        # label back, nor for pixels napari's Ctrl+Z had undone already
        self.labels_changed(target, commit.written, undoing=not redo)
        self._log_step(commit, redo)
        other = "" if self.is_current_target(target) else " (not the current Labels layer)"
        other += time_point_words(commit, self.source)  # (a movie's, at another time point)
        self._say(f"{'Redid' if redo else 'Undid'} commit of {ids} in '{where}'{other}."
                  + edited_note(commit, redo) + self.take_autosave_note())
        return commit

    def history_problem(self, target) -> str | None:
        """Why an undo or redo of a commit into ``target`` is refused (None: it is not;
        the GUI refuses another image's commits)."""
        return None

    def labels_name(self, target) -> str:
        """The name of the labels ``target`` (a commit's target) to show: "labels" here, the
        layer's name in the GUI."""
        return "labels"

    def is_current_target(self, target) -> bool:
        """Whether ``target`` (a commit's target) is where the next commit goes (always, here:
        one labels array)."""
        return True

    def undo(self):
        """Restore the labels as they were before the last commit; returns that commit."""
        return self._history_step(redo=False)

    def redo(self):
        """Re-apply the last undone commit; returns it."""
        return self._history_step(redo=True)

    def clear(self) -> None:
        """Remove all prompts and the preview (the labels stay)."""
        self.clear_prompts()
        self.previews, self.volume = [], None
        self.forget_choices()
        self.render()
        self._say("Cleared.")
