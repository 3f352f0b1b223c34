"""Whole-stack actions of the annotation session: propagation and segment everything.

A mixin of :class:`~napari_sam.annotate.annotation_session.AnnotationSession`: both run as
jobs (in the GUI: worker thread, progress, Cancel) that first make sure the model (and, for
SAM 1, the embeddings) exist, then call :func:`napari_sam.segment_volume` (SAM 1
re-prompting), :func:`napari_sam.sam2_volume.segment_volume_sam2` (SAM 2 memory) or
:func:`napari_sam.segment_everything`; only the ``on_returned`` callbacks (on the main
thread) change the session.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from itertools import pairwise

import numpy as np

from napari_sam.words import counted, in_frames

from .commit_checks import volume_out_of_date
from .errors import Refusal, UserError
from .jobs import Phase, with_progress
from .memory_checks import embedding_bytes, propagation_problem, segment_everything_problem
from .prompt_groups import POINT_OBJECT, group_prompts, ignored_negative_slices

__all__ = ["PROPAGATION_METHODS", "SAM2_ABSENT_SLICES", "StackActions", "describe_ignored",
           "describe_stops"]

#: How propagation carries objects through a stack: method -> what the GUI calls it
PROPAGATION_METHODS = {"sam1": "SAM 1 re-prompting", "sam2": "SAM 2 memory"}

#: SAM 2 propagation ends an object's run in a direction after this many slices in a row
#: on which the model finds the object absent
SAM2_ABSENT_SLICES = 2

#: why a propagation ended, in the few words the status line has room for
#: (napari_sam.volume.STOP_REASONS has the long form)
STOP_WORDS = {
    "edge": "stack edge",
    "stop_marker": "stop marker",
    "met": "fills met",
    "vanished": "mask vanished",
    "iou": "shape changed",
    "area": "size jumped",
    "score": "low score",
    "max_slices": "slice limit",
    "faded": "faded out",
    "rebounded": "ran into the next object",
    "claimed": "another object's place",
}
#: The words of :data:`STOP_WORDS` that differ for a time series (*Stack axis is: t*).
TIME_STOP_WORDS = {"edge": "end of the series", "max_slices": "frame limit"}
#: a time series' directions: "up" (higher slice indices) is later
TIME_WAYS = {"up": "later", "down": "earlier"}


def describe_stops(stop_reasons: dict[int, dict[str, str]],
                   absent_slices: int = SAM2_ABSENT_SLICES, time: bool = False) -> str:
    """Why propagation ended, for the status line.

    One object: ``"up: faded out, down: ran into the next object"`` ("up" is towards higher
    slice indices; SAM 2's ``"absent"`` reads "the model found the object absent on N
    slices", N = ``absent_slices``); several: each reason with how many object ends it
    stopped, most frequent first, e.g. ``"faded out 5, stack edge 3"``. ``time``: the
    stack is a time series: "later" and "earlier" frames instead of "up", "down" and slices.
    """
    base = {**STOP_WORDS, **(TIME_STOP_WORDS if time else {})}
    if len(stop_reasons) == 1:
        (reasons,) = stop_reasons.values()
        unit = in_frames("slices", "t" if time else "z")
        words = {**base,
                 "absent": f"the model found the object absent on {absent_slices} {unit}"}
        names = TIME_WAYS if time else {"up": "up", "down": "down"}
        return ", ".join(f"{names[d]}: {words.get(reasons[d], reasons[d])}"
                         for d in ("up", "down") if d in reasons)
    words = {**base, "absent": "found absent"}
    counts: dict[str, int] = {}
    for reasons in stop_reasons.values():
        for r in reasons.values():
            counts[r] = counts.get(r, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{words.get(r, r)} {n}" for r, n in ordered)


def describe_ignored(slices: list[int]) -> str:
    """Why negative points on ``slices`` did not constrain propagation ("" if none)."""
    if not slices:
        return ""
    where = ", ".join(str(z) for z in slices)
    return (f" Negative points on slice {where} were ignored: negatives alone do not say "
            "which object they belong to. Add a positive point of the object (or a box) on "
            "that slice to use them.")


class StackActions:
    """Propagation and automatic segmentation (needs the session's attributes)."""

    #: "sam1", "sam2" or None: the chosen model's own (:meth:`default_propagation`)
    propagation_method: str | None = None
    #: (cache key, Sam2FeatureCache) of the image and model SAM 2 propagated last
    _sam2_features: tuple | None = None
    #: (job, prompt arrays) of the propagation started last (:meth:`prompts_changed_since`)
    _propagation_drawn: tuple | None = None
    #: What the status said of the propagated preview shown (said again when a view that
    #: could not show slices, napari's 3D view, goes back to 2D: the preview is kept)
    volume_status: str = ""

    # ------------------------------------------------------------------ model family
    @property
    def model_family(self) -> str:
        """``"sam2"`` when the chosen (or loaded) model is a SAM 2 model, else ``"sam1"``."""
        model = getattr(self.predictor, "model", None)
        if model is not None and getattr(model, "family", None) in ("sam1", "sam2"):
            return model.family
        choice = self.model_choice
        return "sam1" if choice is None else getattr(choice, "family", "sam1")

    def default_propagation(self) -> str:
        """The propagation a model uses unless told otherwise: SAM 2 memory for SAM 2."""
        return "sam2" if self.model_family == "sam2" else "sam1"

    def propagation_problem(self, method: str) -> str | None:
        """Why ``method`` cannot propagate with the chosen model (None: it can)."""
        if method not in PROPAGATION_METHODS:
            return (f"Unknown propagation method {method!r}; use one of "
                    f"{', '.join(map(repr, PROPAGATION_METHODS))}.")
        family = self.model_family
        if method == "sam2" and family != "sam2":
            return ("SAM 2 memory propagation needs a SAM 2 model: pick a sam2.1_hiera_* "
                    "model or a SAM 2 checkpoint file in 'Model', or propagate with "
                    "'SAM 1 re-prompting'.")
        if method == "sam1" and family == "sam2":
            return ("SAM 1 re-prompting needs a SAM 1 model (vit_b, vit_b_lm, ...); with this "
                    "SAM 2 model propagate with 'SAM 2 memory'.")
        return None

    def check_propagation(self, all_objects: bool = False, method: str | None = None) -> None:
        """Raise the :class:`UserError` :meth:`propagate` would raise before any work (an
        unknown method, a model of the other family, a 2D image, no prompts to propagate):
        checked before the action waits for an embedding under way, so that a refusal is not
        said after the wait (and the embedding is not stopped for nothing)."""
        method = method or self.propagation_method or self.default_propagation()
        problem = self.propagation_problem(method)
        if problem:
            self.refuse(problem)
        self._volume_prompts(all_objects)

    def check_segment_everything(self) -> None:
        """Raise the :class:`UserError` :meth:`segment_everything` would raise before any
        work (a SAM 2 model, no image); see :meth:`check_propagation`."""
        self.require_sam1("Segment everything")
        self._require_image()

    def refuse(self, message: str, error: type[UserError] = UserError):
        """Say ``message`` in the status line and raise it as ``error`` (a :class:`UserError`;
        the GUI shows it as a notification too)."""
        self._say(message)
        raise error(message)

    def sam2_features(self):
        """The SAM 2 image features of the current image and model kept between
        propagations (a :class:`~napari_sam.models.sam2.feature_cache.Sam2FeatureCache`,
        at most 1 GiB): propagating again after a correction encodes no slice it holds.
        One image and model at a time; another one starts a new cache."""
        from napari_sam.models.sam2.feature_cache import Sam2FeatureCache

        key = self._cache_key()
        if self._sam2_features is None or self._sam2_features[0] != key:
            self._sam2_features = (key, Sam2FeatureCache())
        return self._sam2_features[1]

    def sam2_features_kept(self) -> int:
        """How many slices of the current image and model :meth:`sam2_features` holds (a
        propagation encodes the others again)."""
        held = self._sam2_features
        return len(held[1]) if held is not None and held[0] == self._cache_key() else 0

    def drop_sam2_features(self) -> None:
        """Free the SAM 2 features kept between propagations (the image went away)."""
        self._sam2_features = None

    def require_sam1(self, action: str) -> None:
        """Refuse ``action`` (e.g. "Segment everything") with a SAM 2 model."""
        if self.model_family == "sam2":
            self.refuse(f"{action} needs a SAM 1 model; the chosen model is a SAM 2 model. "
                        "Pick a SAM 1 model in 'Model' (vit_b, vit_b_lm, vit_b_em_organelles "
                        "or the demo) for it; SAM 2 models propagate objects (Shift+D).")

    # ------------------------------------------------------------------ propagation
    def _volume_prompts(self, all_objects: bool):
        """The objects to propagate: (source, {i: [SlicePrompt]}, {i: label refined},
        {i: object key}, slices whose negative points were ignored)."""
        src = self._require_image()
        if not src.is_3d:
            raise UserError("Propagation needs a 3D stack; this image is 2D. Use Shift+C to commit.")
        self._require_image()
        points, point_labels, boxes = self.prompt_arrays()
        # negatives alone carve a refined label on its slice, not through the stack: they
        # are left out here (and named) as without 'Refine selected label'
        objects = group_prompts(points, point_labels, boxes)
        ignored = ignored_negative_slices(points, point_labels, objects)
        elsewhere = sorted({k for o in objects for k in o.slices})
        if not all_objects:
            z = self.current_z()
            objects = [o for o in objects if z in o.slices]
        if not objects and elsewhere:  # a user scrolled away from the prompt and pressed it
            from napari_sam.trace import describe_slices

            where = describe_slices(elsewhere, True)
            text = (f"No prompts on this slice ({z}) to propagate; there are prompts on "
                    f"{where}: go there and propagate, or pick 'all objects with prompts' in "
                    "'Propagate' to propagate every prompted object.")
            raise UserError(in_frames(text, self.axis_kind))
        if not objects:
            raise UserError(in_frames(
                "No prompts to propagate: click the object (or draw a box) on this slice first.",
                self.axis_kind))
        refine = self._refine_id(None)
        prompts, replaces, keys = {}, {}, {}
        labels = self.target_labels() if refine else None
        for i, obj in enumerate(objects, start=1):
            # previewed with the label's mask as a prompt: where the label is on the slice
            prompts[i] = [self._slice_prompt(obj.key, z, sp, obj.key == POINT_OBJECT
                                             and labels is not None
                                             and bool((labels[z] == refine).any()))
                          for z, sp in sorted(obj.slices.items())]
            keys[i] = obj.key
            if obj.key == POINT_OBJECT and refine:
                replaces[i] = refine
        return src, prompts, replaces, keys, ignored

    def _slice_prompt(self, key, z: int, drawn, refined: bool):
        """The :class:`~napari_sam.volume.SlicePrompt` of object ``key``'s prompts ``drawn``
        on slice ``z``, with the candidate Shift+M chose for them (if any; none where the
        object refines a label: its preview had the label's mask as a prompt)."""
        sp = drawn.to_slice_prompt(z)
        chosen = self.chosen_candidates.get(self.choice_key(key, z, drawn, refined))
        return sp if chosen is None else replace(sp, candidate=chosen)

    def propagate(self, all_objects: bool = False, method: str | None = None, **options):
        """Propagate the objects prompted on the current slice (or all) through the stack
        into the preview; commit writes them. ``method``: ``"sam1"`` (re-prompting each
        slice, ``options`` go to :func:`napari_sam.segment_volume`), ``"sam2"`` (SAM 2
        memory, ``options`` go to :func:`napari_sam.sam2_volume.segment_volume_sam2`) or
        None (:attr:`propagation_method`, else the model's default). Returns the GUI's job
        (None without one)."""
        method = method or self.propagation_method or self.default_propagation()
        problem = self.propagation_problem(method)
        if problem:
            self.refuse(problem)
        src, prompts, replaces, keys, ignored = self._volume_prompts(all_objects)
        drawn = [np.array(a, copy=True) for a in self.prompt_arrays()]  # what it propagates
        if method == "sam2":
            return self._propagate_sam2(src, prompts, replaces, keys, ignored, drawn, **options)
        from napari_sam.volume import segment_volume

        self._check_memory(propagation_problem(
            src.shape, f"Propagating {counted(len(prompts), 'object')}",
            self._embedding_bytes(range(src.n_slices))))
        # the slices (and tiles) are embedded as the object reaches them: embedding the
        # whole stack first cost 360 s for one nucleus of a 120 x 1024 x 1024 stack
        prep = self._prepare_gen([])
        axis_kind = self.axis_kind
        options = {"axis_kind": axis_kind, **options}
        if self.mask_boundary != "auto":  # set by the user: Propagate's annotated slices too
            options["boundary"] = self.mask_boundary

        def gen():
            prepared = yield from prep
            yield Phase("propagating")
            # the status line said "Embedding ..." for the whole propagation before
            yield f"Propagating {counted(len(prompts), 'object')} through the stack ..."
            # the status line says which objects were lost (_describe_lost), not the console
            result = yield from with_progress(segment_volume, prepared[4], prompts,
                                              warn_lost=False, **options)
            return prepared, result, _trace(result, src.stack, prompts)

        def done(value):
            self._show_volume(value, (prompts, options, keys), replaces, ignored, "", drawn)

        return self._started(gen(), "Propagating through the stack", done, drawn)

    def _propagate_sam2(self, src, prompts, replaces, keys, ignored, drawn,
                        stop_after_absent: int = SAM2_ABSENT_SLICES):
        """SAM 2 memory propagation of ``prompts`` (see :meth:`propagate`)."""
        from napari_sam.embeddings import stack_intensity_limits
        from napari_sam.sam2_volume import segment_volume_sam2

        if src.rgb or src.channel_axis is not None:
            self.refuse("SAM 2 memory propagation takes grey stacks; this image has colour or "
                        "channels. Open one channel as its own image layer (or pick an image "
                        "without channels in 'Image'), then propagate again.")
        prep = self._prepare_gen([], embed=False)
        options = {"method": "sam2", "stop_after_absent": stop_after_absent}
        features = self.sam2_features()
        chosen = self.model_contrast()  # (the user's contrast limits; read on this thread)

        def gen():
            prepared = yield from prep
            yield Phase("propagating")
            limits = chosen or stack_intensity_limits(src.stack)
            result = yield from with_progress(
                segment_volume_sam2, GreyStack(src.stack), prompts, prepared[3].model,
                contrast_limits=limits, stop_after_absent=stop_after_absent, features=features,
                warn_lost=False)
            return prepared, result, _trace(result, src.stack, prompts)

        def done(value):
            self._show_volume(value, (prompts, options, keys), replaces, ignored,
                              " with SAM 2 memory", drawn, stop_after_absent)

        return self._started(gen(), "Propagating through the stack with SAM 2 memory", done,
                             drawn)

    def _embedding_bytes(self, indices) -> int:
        """Bytes the current embeddings will hold once the slices of ``indices`` they lack
        are embedded (:func:`~.memory_checks.embedding_bytes`; 0 before the first)."""
        if self.emb is None:
            return 0
        todo = self.emb.missing(list(indices))
        return embedding_bytes(self.emb, todo, self.contrast_store() is not None)

    def _check_memory(self, problem: str | None) -> None:
        """Refuse a job that would not fit in the memory free here (``problem``: the words
        of :mod:`~.memory_checks`, None where it fits): a :class:`~.errors.Refusal`."""
        if problem:
            self.refuse(problem, Refusal)

    def _started(self, gen, description: str, done, drawn):
        """Start propagation job ``gen`` made from the prompt arrays ``drawn``."""
        job = self.start_job(gen, description, done)
        self._propagation_drawn = (job, drawn)
        return job

    def prompts_changed_since(self) -> bool:
        """Whether a propagation runs and the prompts changed since it started: its result
        will be dropped when it ends (:meth:`_show_volume`)."""
        job = self.job
        if job is None or not job.running or self._propagation_drawn is None \
                or self._propagation_drawn[0] is not job:
            return False
        return bool(volume_out_of_date(self._propagation_drawn[1], self.prompt_arrays()))

    def _show_volume(self, value, request, replaces, ignored, how: str, drawn,
                     absent_slices: int = SAM2_ABSENT_SLICES) -> None:
        """Main thread: a finished propagation becomes the preview (``drawn``: the prompt
        arrays it was made from); the status says where and why each object stopped."""
        prepared, result, trace = value
        self._adopt(*prepared)
        if not self.result_is_current(prepared, "Propagating" + how):
            return
        points, _, boxes = self.prompt_arrays()
        if len(drawn[0]) + len(drawn[2]) and not len(points) + len(boxes):  # cleared meanwhile
            self._pending = False  # no preview follows: this line stays
            self._say("The propagation ended, but its prompts were cleared while it ran, so "
                      "its preview was dropped: click the object to segment it again.")
            return
        if volume_out_of_date(drawn, self.prompt_arrays()):  # prompts added while it ran
            self.preview_lead = ("The propagation ended, but the prompts changed while it ran, "
                                 "so its preview was dropped; the prompts are kept: press "
                                 "Shift+D to propagate them.")
            self._say(self.preview_lead)
            self._pending = self._pending or self.live  # the slice's preview follows
            return
        ran = request[1].get("axis_kind", self.axis_kind)  # (SAM 2's follows no stack axis)
        if ran != self.axis_kind:  # e.g. napari's axes named ("t", "y", "x") while it ran
            self.preview_lead = _axis_changed_words(ran, self.axis_kind)
            self._say(self.preview_lead)
            self._pending = self._pending or self.live
            return
        self.previews, self.volume, self._volume_replaces = [], result, replaces
        self._volume_request, self._volume_drawn = request, drawn
        self.trace = trace
        self.notify_trace(trace)
        self.render()
        from napari_sam.trace import describe_slices, slice_runs

        spans = {o["id"]: o["slices"] for o in trace.get("objects", [])}
        where = [spans.get(i) or range(result.slice_range[i][0], result.slice_range[i][1] + 1)
                 for i in result.object_ids]
        holes = [f"object {i} has no mask on {describe_slices(range(a[1] + 1, b[0]), True)}"
                 for i, zs in spans.items() for a, b in pairwise(slice_runs(zs))]
        hole = (f" Between its prompts {'; '.join(holes)}: click the object there and "
                "Propagate again." if holes else "")
        over = (describe_slices(where[0], True) if len(where) == 1
                else "slices " + ", ".join(describe_slices(zs) for zs in where))
        time = self.axis_kind == "t"
        if time:  # a time series: frames (the trace panel keeps the stack's indices)
            over, hole = (t.replace("slice", "frame") for t in (over, hole))
        n = len(result.object_ids)
        self.volume_status = (
            f"Propagated {counted(n, 'object')}{how} over {over} "
            f"(stopped: {describe_stops(result.stop_reasons, absent_slices, time)})"
            f". Check the preview, then Shift+C commits; a prompt on a "
            f"{'frame' if time else 'slice'} further out carries an object on."
            f"{hole}{describe_ignored(ignored)}{_describe_lost(result)}"
        )
        self._say(self.volume_status)

    # ------------------------------------------------------------------ automatic
    def segment_everything(self, whole_stack: bool = False, **params):
        """Automatic segmentation of the current slice (or the stack) into new labels
        (:meth:`add_result`; the GUI adds a labels layer). Returns the GUI's job (None
        without one)."""
        try:
            from napari_sam.automatic import segment_everything
        except ImportError:
            raise UserError(
                "Automatic segmentation is not available in this installation (napari_sam."
                "automatic is missing); update napari-sam-stacks."
            ) from None
        self.require_sam1("Segment everything")
        src = self._require_image()
        z = self.current_z()
        indices = None if whole_stack else [z]
        if src.is_3d:  # (a 2D image's labels are one slice)
            held = self._embedding_bytes(range(src.n_slices) if whole_stack else [z])
            self._check_memory(segment_everything_problem(
                src.shape, whole_stack, params.get("propagate", True), held))
        prep = self._prepare_gen(indices)
        accepts = inspect.signature(segment_everything).parameters
        accepts_progress = "progress" in accepts
        what = "the stack" if whole_stack else in_frames("this slice", self.axis_kind)

        def gen():
            prepared = yield from prep
            predictor, emb = prepared[3], prepared[4]
            if getattr(emb, "tiling", None) is not None and "tiling" not in accepts:
                raise UserError(
                    "Segment everything on a tiled image is not available in this installation "
                    "(napari_sam.segment_everything takes no tiling); untick 'Tile large "
                    "images' to segment the image shrunk to the model input.")
            kwargs = dict(params)
            yield Phase("segmenting")
            yield f"Segmenting everything in {what} ..."  # (the line said "Embedding ...")
            if whole_stack and src.is_3d:
                target = emb  # StackEmbeddings: slices reused, objects linked and propagated
                kwargs.setdefault("axis_kind", self.axis_kind)
                if getattr(emb, "tiling", None) is not None:
                    kwargs.setdefault("image", src.stack)  # tiled: slices read from here
            else:
                target = emb[z]  # one ImageEmbedding; decode on the session's device
                kwargs["device"] = predictor.device
            if accepts_progress:
                result = yield from with_progress(
                    segment_everything, target, predictor.model, **kwargs
                )
            else:
                result = segment_everything(target, predictor.model, **kwargs)
                yield 1, 1
            return prepared, result

        def done(value):
            prepared, result = value
            self._adopt(*prepared)
            if not self.result_is_current(prepared, "Segment everything"):
                return
            labels = np.asarray(getattr(result, "labels", result))
            full = np.zeros(src.shape, dtype=np.uint32)
            if labels.ndim == 3:
                full[...] = labels
            else:
                full[z] = labels
            axis = "t" if self.axis_kind == "t" else "z"
            when = "" if src.time_point is None else f" t={src.time_point}"  # (a movie's)
            name = "automatic segmentation" + when + ("" if whole_stack or not src.is_3d
                                                      else f" {axis}={z}")
            name = self.add_result(full, name)
            n = int(np.count_nonzero(np.unique(labels)))  # of one slice: not the whole stack
            tiles = getattr(prepared[4], "tiling", None)
            how = "" if tiles is None else f" (in {len(tiles)} tiles of {tiles.window} px)"
            self._say(f"Segment everything: {counted(n, 'object')}{how} in a new layer "
                      f"'{name}'.")

        return self.start_job(gen(), f"Segmenting everything in {what}", done)


class GreyStack:
    """A grey :class:`~napari_sam.annotate.image_source.SliceView` as the (Z, Y, X) array
    :func:`napari_sam.sam2_volume.segment_volume_sam2` reads: ``ndim``, ``shape``,
    ``dtype`` and ``[z]`` -> (Y, X), one slice at a time."""

    ndim = 3

    def __init__(self, view):
        self.view = view
        self.shape = tuple(view.shape)
        self.dtype = view.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, z) -> np.ndarray:
        return np.asarray(self.view[int(z)])


def _describe_lost(result) -> str:
    """`` Not in the preview: object 2 (why).`` for the objects a propagation lost."""
    lost = getattr(result, "lost", None) or {}
    if not lost:
        return ""
    return " Not in the preview: " + "; ".join(
        f"object {oid} ({why})" for oid, why in sorted(lost.items())) + "."


def _axis_changed_words(ran: str, now: str) -> str:
    """The line where *Stack axis is* changed from ``ran`` to ``now`` ("z" or "t") while a
    propagation ran: its preview, which followed the rules of the axis it started with (the
    fade rules of a volume cut a cell that bleaches over time), is dropped."""
    how = {"z": "as a volume", "t": "as a time series"}
    return (f"The propagation ended, but 'Stack axis is' changed to {now} while it ran, so "
            f"its preview, which followed the objects {how[ran]}, was dropped; the prompts are "
            f"kept: press Shift+D to propagate them {how[now]}.")


def _trace(result, stack, prompts) -> dict:
    """The propagation trace (:mod:`napari_sam.trace`) of ``result``."""
    from napari_sam.trace import propagation_trace

    annotated = {i: [sp.slice for sp in sps] for i, sps in prompts.items()}
    return propagation_trace(result.labels, stack, result.scores, result.stop_reasons,
                             annotated)
