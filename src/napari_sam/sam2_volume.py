"""Segment objects through a stack with SAM 2.1's memory, from arrays (no image files).

:func:`segment_volume_sam2` is the SAM 2 sibling of :func:`napari_sam.segment_volume`: the
same prompts (:class:`napari_sam.volume.SlicePrompt`, (row, col) pixels), the same result
(:class:`napari_sam.volume.VolumeResult`), on a (Z, Y, X) stack of any dtype, in memory or
lazy (numpy, zarr, dask): each slice is read when it is needed, mapped to [0, 1] with our
contrast limits (no 8-bit quantisation: a 16-bit stack keeps its precision), resized to the
model's square input and normalised as Meta's SAM 2 expects.

Where SAM 1 propagation re-prompts each slice from the last mask and stops on rules,
SAM 2 carries the object in its memory and says itself whether the object is present; an
object's run in a direction ends after ``stop_after_absent`` slices in a row without it
(stop reason ``"absent"``), or before a slice with a stop marker (``"stop_marker"``).
Slices' image features can be kept between runs (:class:`Sam2FeatureCache`), and the memory
bank is bounded (:mod:`napari_sam.models.sam2.propagation`), so long stacks run in bounded
memory. Where objects overlap, a pixel goes to the object with the
highest logit, and a slice's own prompts win over propagation.

A slice takes seconds on a CPU (the image encoder, then per object the memory attention
over up to seven slices' memories: 20 to 30 s for Hiera-T at 1024 px on two cores), so a
``progress`` callback is also called inside a slice, with the count unchanged, between the
model's blocks (at most every :data:`CHECK_EVERY_S` seconds): a callback that raises (the
dock's Cancel) stops the run within a block, not at the end of the slice.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from napari_sam.words import for_count

from .embeddings import slice_hash, stack_intensity_limits
from .models.registry import load_model, require_family
from .models.sam2.feature_cache import Sam2FeatureCache
from .models.sam2.model import Sam2Model
from .models.sam2.propagation import Sam2Prompts, Sam2Tracker
from .preprocess import check_contrast_limits
from .progress import ProgressArg, reports_progress
from .volume import SlicePrompt, VolumeResult
from .volume.annotations import ObjectPrompts, normalize_prompts
from .volume.records import label_dtype
from .volume.result import warn_lost as warn_about_lost

__all__ = ["ABSENT_REASON", "CHECK_EVERY_S", "Sam2FeatureCache", "segment_volume_sam2",
           "unused_negative_notes"]

ABSENT_REASON = "absent"  # "the model found the object absent on stop_after_absent slices"
#: Inside a slice, ``progress`` is called again (same count) at most this often (seconds)
CHECK_EVERY_S = 0.5
_MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)


class _Planes:
    """Slice z of a stack as a numpy array, the last one read kept (a cache check and the
    encoding of the same slice read it once)."""

    def __init__(self, stack):
        self.stack = stack
        self.last: tuple[int, np.ndarray] | None = None

    def __call__(self, z: int) -> np.ndarray:
        if self.last is None or self.last[0] != z:
            self.last = (z, np.asarray(self.stack[z]))
        return self.last[1]


class _CheckedFeatures:
    """A :class:`Sam2FeatureCache` seen through the pixels of the slices and the contrast
    limits: a slice whose pixels or mapping changed since its features were kept (an edited
    slice, another stack of the same shape, a contrast changed by an edit) counts as a miss
    and is encoded again, so a run with a cache gives what a run without one gives."""

    def __init__(self, cache: Sam2FeatureCache, planes: _Planes, limits: tuple):
        self.cache, self.planes, self.limits = cache, planes, limits

    def _made_from(self, z: int) -> tuple:
        return slice_hash(self.planes(z)), self.limits

    def get(self, z: int):
        return self.cache.get(z, self._made_from(z))

    def put(self, z: int, features) -> None:
        self.cache.put(z, features, self._made_from(z))


def _slice_reader(planes: _Planes, size: int,
                  limits: tuple[float, float]) -> Callable[[int], torch.Tensor]:
    """z -> (3, size, size) normalised float32 model input of slice z."""
    lo, hi = limits
    scale = 1.0 / (hi - lo) if hi > lo else 0.0

    def read(z: int) -> torch.Tensor:
        plane = np.asarray(planes(z), dtype=np.float64)
        plane = np.clip(np.nan_to_num((plane - lo) * scale, nan=0.0), 0.0, 1.0)
        t = torch.from_numpy(plane.astype(np.float32))[None, None]
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)[0]
        return (t.expand(3, -1, -1) - _MEAN) / _STD

    return read


def _check_absent(stop_after_absent) -> None:
    """ValueError unless ``stop_after_absent`` is None or a whole number >= 0."""
    if stop_after_absent is None:
        return
    if isinstance(stop_after_absent, bool) or not isinstance(stop_after_absent, (int, np.integer)) \
            or stop_after_absent < 0:
        raise ValueError(f"stop_after_absent must be a whole number of slices >= 1, or None or 0 "
                         f"to track to the ends of the stack; got {stop_after_absent!r}")


def _check_slices(prompts: Mapping, z_len: int) -> None:
    """ValueError naming the first prompt on a slice outside the stack."""
    if not isinstance(prompts, Mapping):
        return  # normalize_prompts names the problem
    for items in prompts.values():
        for item in items if isinstance(items, (list, tuple)) else [items]:
            z = SlicePrompt.coerce(item).slice
            if isinstance(z, (int, np.integer)) and not isinstance(z, bool) \
                    and not 0 <= z < z_len:
                raise ValueError(f"a prompt is on slice {z}, outside the stack's {z_len} "
                                 f"slices (0..{z_len - 1})")


def _object_prompts(obj: ObjectPrompts, shape: tuple[int, int, int], size: int) -> Sam2Prompts:
    """One object's validated prompts (:func:`normalize_prompts`, (row, col) pixels) ->
    SAM 2's (x, y) input-frame points, box corners first; a mask alone is taken as the
    slice's output."""
    _, h, w = shape
    scale = np.array([size / w, size / h])
    out = Sam2Prompts()
    for z, ann in obj.annotations.items():
        coords, labels = [], []
        if ann.box is not None:
            r0, c0, r1, c1 = ann.box
            coords += [[c0, r0], [c1, r1]]
            labels += [2, 3]
        if ann.points is not None:
            coords += ann.points[:, ::-1].tolist()
            labels += ann.labels.astype(int).tolist()
        if coords:
            xy = torch.tensor(np.asarray(coords) * scale, dtype=torch.float32)
            out.points[z] = (xy, torch.tensor(labels, dtype=torch.int32))
            if ann.candidate is not None:
                out.candidates[z] = ann.candidate
        else:
            m = torch.as_tensor(ann.mask.astype(np.float32))[None, None]
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
            out.masks[z] = (m[0, 0] >= 0.5).float()
    return out


def unused_negative_notes(prompts: Mapping | list[ObjectPrompts],
                          shape: tuple[int, int, int] | None = None) -> list[str]:
    """One sentence per object whose negative points SAM 2 does not use, naming the slices
    (slices with no positive point, box or mask of the object): what
    :func:`segment_volume_sam2` warns, for a caller that says it in its own way (the CLI's
    notes) without catching warnings.

    Parameters
    ----------
    prompts : mapping or list of ObjectPrompts
        ``{object_id: [SlicePrompt | dict, ...]}`` as :func:`segment_volume_sam2` takes them
        (checked against ``shape``), or objects already normalised.
    shape : (int, int, int), optional
        The stack's (Z, Y, X) shape; needed for a mapping.

    Returns
    -------
    list of str
        E.g. ``["object 1: the negative points on slice 4 are not used: ..."]``; [] when
        every negative point is used.
    """
    objects = (normalize_prompts(prompts, tuple(shape), method="sam2")
               if isinstance(prompts, Mapping) else prompts)
    return [f"object {obj.id}: the negative points on "
            f"{for_count(len(obj.negatives), 'slice')} "
            f"{', '.join(map(str, sorted(obj.negatives)))} are not used: SAM 2 uses negative "
            "points only on a slice that also has a positive point, a box or a mask of the "
            "object; add one there, or propagate with SAM 1 re-prompting (segment_volume; "
            "CLI: --method sam1), which uses them" for obj in objects if obj.negatives]


def _warn_unused_negatives(objects: list[ObjectPrompts]) -> None:
    """A UserWarning per :func:`unused_negative_notes` sentence."""
    for note in unused_negative_notes(objects):
        warnings.warn(note, UserWarning,
                      stacklevel=4)  # this, segment_volume_sam2, its reports_progress wrapper


def _features_key(model, stack) -> tuple:
    """What a feature cache must have been made for (the pixels and contrast limits are
    checked per slice, :class:`_CheckedFeatures`)."""
    return (str(model.model_id), int(model.config.image_size), tuple(int(s) for s in stack.shape),
            str(np.dtype(stack.dtype)))


@reports_progress("segment volume")
def segment_volume_sam2(
    stack,
    prompts: Mapping,
    model: Sam2Model,
    *,
    contrast_limits: tuple[float, float] | None = None,
    stop_after_absent: int | None = 2,
    progress: ProgressArg = None,
    features: Sam2FeatureCache | None = None,
    warn_lost: bool = True,
    warn_unused_negatives: bool = True,
) -> VolumeResult:
    """Segment objects through ``stack`` with SAM 2.1's memory propagation.

    Parameters
    ----------
    stack : array-like (Z, Y, X)
        Any real dtype; numpy, zarr or dask (slices are read one at a time).
    prompts : mapping
        ``{object_id: [SlicePrompt | dict, ...]}`` as for :func:`napari_sam.segment_volume`
        (points (row, col), labels, box (row0, col0, row1, col1), a mask, or a stop
        marker), checked by :func:`napari_sam.volume.annotations.normalize_prompts`. A stop
        marker ends the object's run before its slice; negative points on a slice without a
        positive point, box or mask of the object are not used (SAM 2 decodes a prompted
        slice from its own prompts): a UserWarning names those slices.
    model : Sam2Model, str or PathLike
        E.g. ``napari_sam.load_model("sam2.1_hiera_tiny")``, or the name or path to load.
    contrast_limits : (float, float), optional
        Intensity mapped to black and white; default: percentiles of up to 16 evenly
        spaced slices, as :func:`napari_sam.embed` does.
    stop_after_absent : int or None
        End an object's run in a direction after this many slices in a row on which the
        model finds it absent (None or 0: track to the ends of the stack, as Meta's video
        predictor does).
    progress : None, bool or callable(done, total)
        None or False: silent; True: a ``tqdm.auto`` bar; a callable: called after each
        tracked slice and object, and again with the same count between the model's
        blocks while a slice takes longer than :data:`CHECK_EVERY_S` (an exception it
        raises stops the run there); TypeError for anything else, before any work.
    features : Sam2FeatureCache, optional
        Slices' image features kept between runs: pass the same cache to a second run on
        the same stack (say, with a correction prompt added) and no slice it holds is
        encoded again. Each slice's pixels (a hash) and the contrast limits are checked
        against those its features were made from: a slice edited since, a stack of the same
        shape with other pixels, or other contrast limits, and the slice is encoded again, so
        the result is always that of a run without the cache. Refused (ValueError) when it
        was made for another model or stack shape or dtype.
    warn_lost : bool
        Warn (LostObjectsWarning, below) about objects that are not in the labels; False:
        only ``result.lost`` says which and why (a caller that reports them itself, as the
        dock's status line does; no warning filter is touched, which is not thread-safe).
    warn_unused_negatives : bool
        Warn (UserWarning) about negative points SAM 2 does not use; False: a caller that
        says :func:`unused_negative_notes` itself (the CLI), again without touching the
        warning filters.

    Returns
    -------
    VolumeResult
        ``labels`` (Z, Y, X); ``scores[id][z]`` the predicted IoU; stop reasons
        ``"edge"``, ``"absent"`` or ``"stop_marker"``; ``slice_range``; ``lost``: {id: why}
        of the objects asked for that have no voxel in ``labels`` (and no entry in the
        other fields).

    Warns
    -----
    LostObjectsWarning
        (a UserWarning, :class:`napari_sam.volume.result.LostObjectsWarning`) naming the
        objects that are not in ``labels`` and why (``result.lost``).
    """
    if getattr(stack, "ndim", None) != 3:
        raise ValueError(f"segment_volume_sam2 needs a (Z, Y, X) stack, got shape "
                         f"{getattr(stack, 'shape', None)}; a stack with channels: pick one "
                         "channel first (stack[..., c])")
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if getattr(model, "family", None) == "sam1":
        require_family(model, "sam2", "segment_volume_sam2")
    if not isinstance(model, Sam2Model):
        raise TypeError(f"segment_volume_sam2 needs a SAM 2 model (load_model of a SAM 2.1 "
                        f"checkpoint), got {type(model).__name__}; for SAM 1 models use "
                        "segment_volume")
    _check_absent(stop_after_absent)
    shape = tuple(int(s) for s in stack.shape)
    _check_slices(prompts, shape[0])
    objects = normalize_prompts(prompts, shape, method="sam2")
    if warn_unused_negatives:
        _warn_unused_negatives(objects)
    size = model.config.image_size
    limits = check_contrast_limits(contrast_limits) if contrast_limits is not None \
        else stack_intensity_limits(stack)
    planes = _Planes(stack)
    if features is not None:
        features.bind(_features_key(model, stack))
        features = _CheckedFeatures(features, planes, tuple(float(v) for v in limits))
    tracker = Sam2Tracker(model, _slice_reader(planes, size, limits), shape[0],
                          feature_cache=features)
    wanted = {o.id: _object_prompts(o, shape, size) for o in objects}
    stops = {o.id: o.stops for o in objects if o.stops}
    labels, scores, found = _propagate(tracker, wanted, stops, shape,
                                       stop_after_absent or None, progress)
    result = _result(labels, scores, tracker.stopped, wanted, found)
    if warn_lost:
        warn_about_lost(result.lost, stacklevel=3)  # the caller of the reports_progress wrapper
    return result


def _propagate(tracker: Sam2Tracker, wanted: dict, stops: dict, shape, stop_after_absent,
               progress) -> tuple[np.ndarray, dict, set]:
    """Run the tracker and paint its masks: (labels (Z, Y, X), scores[id][z], the ids the
    model gave a mask with pixels on some slice)."""
    best = np.full(shape, -np.inf, np.float32)  # winning logit per pixel
    labels = np.zeros(shape, label_dtype(max(wanted)))
    scores: dict[int, dict[int, float]] = {oid: {} for oid in wanted}
    found: set[int] = set()
    total, done = len(wanted) * shape[0], 0
    with torch.inference_mode(), _checks_inside_slices(tracker.model, progress, total) as at:
        for z, oid, out in tracker.propagate_all(wanted, stop_after_absent, stops):
            logits = F.interpolate(out.low_res_masks.float(), size=shape[1:], mode="bilinear",
                                   align_corners=False)[0, 0].cpu().numpy()
            own = z in wanted[oid].slices
            if _paint(labels[z], best[z], logits + (1e4 if own else 0.0), oid):
                found.add(oid)
            scores[oid][z] = float(out.iou.max())
            done += 1
            if progress is not None:
                progress(min(done, total), total)
                at.reported(min(done, total))
    if progress is not None and done < total:
        progress(total, total)  # runs that ended early: the rest is not needed
    return labels, scores, found


class _SliceChecks:
    """A forward pre-hook that calls ``progress`` again with the last count reported when
    :data:`CHECK_EVERY_S` seconds passed since the last call, on the propagation's own
    thread only (another thread may use the same model meanwhile)."""

    def __init__(self, progress: Callable[[int, int], None], total: int):
        self.progress, self.total, self.done = progress, total, 0
        self.thread = threading.get_ident()
        self.last = time.monotonic()

    def reported(self, done: int) -> None:
        """``progress(done, total)`` was just called."""
        self.done, self.last = done, time.monotonic()

    def __call__(self, *_hook_args) -> None:
        if threading.get_ident() == self.thread \
                and time.monotonic() - self.last >= CHECK_EVERY_S:
            self.progress(self.done, self.total)
            self.last = time.monotonic()


@contextmanager
def _checks_inside_slices(model: Sam2Model, progress, total: int) -> Iterator[_SliceChecks]:
    """:class:`_SliceChecks` hooked before the image encoder's blocks, the memory
    attention's self- and cross-attention and MLP, the memory encoder and the mask decoder
    (the longest gap between two checks: one attention call); removed on leaving."""
    checks = _SliceChecks(progress or (lambda done, total: None), total)
    handles = []
    if progress is not None:
        encoder = model.image_encoder
        points = [*encoder.trunk.blocks, encoder.neck, model.memory_encoder,
                  model.sam_mask_decoder]
        for layer in model.memory_attention.layers:
            points += [layer.self_attn, layer.cross_attn_image, layer.linear1]
        handles = [m.register_forward_pre_hook(checks) for m in points]
    try:
        yield checks
    finally:
        for handle in handles:
            handle.remove()


def _paint(labels: np.ndarray, best: np.ndarray, logits: np.ndarray, oid: int) -> bool:
    """Give ``oid`` the pixels where its logit is positive and higher than any so far; True
    when its mask has any pixel (won or not)."""
    positive = logits > 0
    win = positive & (logits > best)
    labels[win] = oid
    best[win] = logits[win]
    return bool(positive.any())


#: ``VolumeResult.lost`` reasons of segment_volume_sam2
LOST_TO_OTHERS = ("its masks lost every pixel to other objects (their prompts segment the "
                  "same thing); give it prompts on its own object")
LOST_EMPTY = ("the model found it absent on every slice (an empty mask for its prompts); give "
              "it a positive point inside the object or a box around it")


def _result(labels, scores, stopped, wanted, found=()) -> VolumeResult:
    """Slice ranges, scores and stop reasons of the objects present in ``labels``; why the
    others are lost (``found``: the ids the model gave a mask with pixels)."""
    present = {int(v) for v in np.unique(labels) if v}
    ranges, reasons, kept, lost = {}, {}, {}, {}
    for oid in wanted:
        if oid not in present:
            lost[oid] = LOST_TO_OTHERS if oid in found else LOST_EMPTY
            continue
        zs = np.flatnonzero((labels == oid).any(axis=(1, 2)))
        ranges[oid] = (int(zs[0]), int(zs[-1]))
        kept[oid] = {z: s for z, s in scores[oid].items() if ranges[oid][0] <= z <= ranges[oid][1]}
        reasons[oid] = {d: stopped[(oid, d)][1] if (oid, d) in stopped else "edge"
                        for d in ("up", "down")}
    return VolumeResult(labels=labels, scores=kept, stop_reasons=reasons, slice_range=ranges,
                        lost=lost)
