"""Whole-stack actions of the annotation session: propagation and segment everything.

A mixin of :class:`~napari_sam.annotate.annotation_session.AnnotationSession`: both run as
jobs (in the GUI: worker thread, progress, Cancel) that first make sure the embeddings exist,
then call :func:`napari_sam.segment_volume` or :func:`napari_sam.segment_everything`; only
the ``on_returned`` callbacks (on the main thread) change the session.
"""

from __future__ import annotations

import inspect

import numpy as np

from .errors import UserError
from .jobs import with_progress
from .prompt_groups import POINT_OBJECT, ignored_negative_slices

__all__ = ["StackActions", "describe_ignored", "describe_stops"]

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


def describe_stops(stop_reasons: dict[int, dict[str, str]]) -> str:
    """Why propagation ended, for the status line.

    One object: ``"up: faded out, down: ran into the next object"`` ("up" is towards higher
    slice indices); several: each reason with how many object ends it stopped, most
    frequent first, e.g. ``"faded out 5, stack edge 3"``.
    """
    if len(stop_reasons) == 1:
        (reasons,) = stop_reasons.values()
        return ", ".join(f"{d}: {STOP_WORDS.get(reasons[d], reasons[d])}"
                         for d in ("up", "down") if d in reasons)
    counts: dict[str, int] = {}
    for reasons in stop_reasons.values():
        for r in reasons.values():
            counts[r] = counts.get(r, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{STOP_WORDS.get(r, r)} {n}" for r, n in ordered)


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

    # ------------------------------------------------------------------ propagation
    def propagate(self, all_objects: bool = False, **options):
        """Propagate the objects prompted on the current slice (or all) through the stack
        into the preview (``options`` go to :func:`napari_sam.segment_volume`); commit
        writes them. Returns the GUI's job (None without one)."""
        from napari_sam.volume import segment_volume

        src = self._require_image()
        if not src.is_3d:
            raise UserError("Propagation needs a 3D stack; this image is 2D. Use Shift+C to commit.")
        objects = self.objects()
        points, point_labels, _ = self.prompt_arrays()
        ignored = ignored_negative_slices(points, point_labels, objects)
        if not all_objects:
            z = self.current_z()
            objects = [o for o in objects if z in o.slices]
        if not objects:
            raise UserError(
                "No prompts to propagate: click the object (or draw a box) on this slice first."
            )
        refine = self._refine_id(None)
        prompts, replaces, keys = {}, {}, {}
        for i, obj in enumerate(objects, start=1):
            prompts[i] = [sp.to_slice_prompt(z) for z, sp in sorted(obj.slices.items())]
            keys[i] = obj.key
            if obj.key == POINT_OBJECT and refine:
                replaces[i] = refine
        prep = self._prepare_gen(None)
        axis_kind = self.axis_kind

        def gen():
            from napari_sam.trace import propagation_trace

            prepared = yield from prep
            result = yield from with_progress(
                segment_volume, prepared[4], prompts, axis_kind=axis_kind, **options
            )
            annotated = {i: [sp.slice for sp in sps] for i, sps in prompts.items()}
            trace = propagation_trace(result.labels, src.stack, result.scores,
                                      result.stop_reasons, annotated)
            return prepared, result, trace

        def done(value):
            prepared, result, trace = value
            self._adopt(*prepared)
            self.previews, self.volume, self._volume_replaces = [], result, replaces
            self._volume_request = (prompts, {"axis_kind": axis_kind, **options}, keys)
            self.trace = trace
            self.notify_trace(trace)
            self.render()
            lo_hi = [f"{a}-{b}" for a, b in (result.slice_range[i] for i in result.object_ids)]
            self._say(
                f"Propagated {len(result.object_ids)} object(s) over slices "
                f"{', '.join(lo_hi)} (stopped: {describe_stops(result.stop_reasons)}). Check "
                f"the preview, then Shift+C commits; a prompt on a slice further out carries "
                f"an object on.{describe_ignored(ignored)}"
            )

        return self.start_job(gen(), "Propagating through the stack", done)

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
        src = self._require_image()
        z = self.current_z()
        indices = None if whole_stack else [z]
        prep = self._prepare_gen(indices)
        accepts_progress = "progress" in inspect.signature(segment_everything).parameters

        def gen():
            prepared = yield from prep
            predictor, emb = prepared[3], prepared[4]
            kwargs = dict(params)
            if whole_stack and src.is_3d:
                target = emb  # StackEmbeddings: slices reused, objects linked and propagated
                kwargs.setdefault("axis_kind", self.axis_kind)
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
            labels = np.asarray(getattr(result, "labels", result))
            full = np.zeros(src.shape, dtype=np.uint32)
            if labels.ndim == 3:
                full[...] = labels
            else:
                full[z] = labels
            name = "automatic segmentation" + ("" if whole_stack or not src.is_3d else f" z={z}")
            self.add_result(full, name)
            n = len(np.unique(full)) - 1
            self._say(f"Segment everything: {n} objects in a new layer '{name}'.")

        what = "the stack" if whole_stack else "this slice"
        return self.start_job(gen(), f"Segmenting everything in {what}", done)
