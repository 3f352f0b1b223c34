"""Propagate objects slice by slice through a stack (z of a volume, t of a time series).

``segment_volume(emb, prompts)`` segments every object on the slices the user annotated, then
carries each object to the neighbouring slices: the next slice is prompted from the previous
slice's mask (a box, a box plus the previous low-resolution logits, points, or a centre point)
until the mask vanishes, changes too much, reaches a stop marker or the end of the stack.
Between two annotated slices of an object the gap is filled from both ends, meeting in the
middle.

All objects advance together: on each slice the prompts of every live object go to the mask
decoder in one batched call, so the number of decoder calls per slice does not depend on the
number of objects. Where objects overlap, each pixel goes to the object with the highest
mask logit there (ties: higher predicted IoU, then smaller id), never to the one that came
first.

Directions: "up" is increasing slice index, "down" decreasing. Coordinates are napari order:
points (row, col), boxes (row0, col0, row1, col1), in pixels of the stack's slices.

To propagate along another axis, embed the stack with that axis first and move the result
back::

    emb = ns.embed(np.moveaxis(volume, 1, 0), model)          # propagate along rows (y)
    res = ns.segment_volume(emb, prompts)                      # slice index = y
    labels = np.moveaxis(res.labels, 0, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "MODES",
    "STOP_REASONS",
    "SlicePrompt",
    "VolumeResult",
    "box_from_mask",
    "center_from_mask",
    "mask_contrast",
    "mask_to_logits",
    "points_from_mask",
    "prompts_from_labels",
    "segment_volume",
    "stop_reason",
]

MODES = ("auto", "box", "box+mask", "points", "center")
AXIS_KINDS = ("z", "t")

#: Why propagation of an object ended in one direction.
STOP_REASONS = {
    "edge": "reached the first or last slice of the stack",
    "stop_marker": "the next slice carries a stop marker for this object",
    "met": "met the propagation coming from the object's next annotated slice",
    "vanished": "the mask on the next slice was empty or smaller than min_area",
    "iou": "IoU with the previous slice's mask fell below iou_threshold",
    "area": "the area changed by more than area_factor from the previous slice",
    "score": "the predicted IoU fell below min_score",
    "max_slices": "propagated max_slices slices from the annotated slice",
    "faded": "the object's contrast with its surroundings fell below fade_fraction of its "
             "strongest contrast on its annotated slices",
    "rebounded": "the object's contrast fell from its peak and then rose again on two slices "
                 "in a row, both by more than rebound_fraction of its reference contrast and "
                 "by more than rebound_noise times the measurement noise of the contrasts "
                 "compared: the mask ran into another object above or below (it is cut back "
                 "to its dimmest slice)",
    "claimed": "most of the mask lay on another object that is fewer slices from its own "
               "annotated slice (claimed_fraction)",
}

# default propagation mode per kind of axis (see segment_volume)
_AUTO_MODE = {"z": "box+mask", "t": "box+mask"}
# default fade rule per kind of axis: z ends of blurred objects; not t (bleaching)
_AUTO_FADE = {"z": 0.5, "t": None}
# default rebound rule per kind of axis: a chain running into the next object along z; not t
_AUTO_REBOUND = {"z": 0.05, "t": None}
# the rise must hold on this many slices in a row (one brighter slice is not another object)
_REBOUND_SLICES = 2
# ... and both the dip and the rise must exceed this many standard errors of the difference
# of the two contrasts (from the pixels' own spread: a noisy object's wobble is not a rebound)
_REBOUND_NOISE = 2.0

_USER_LOGIT = 1.0e4  # full-resolution "logit" of a mask the user gave: always wins overlaps
# added to the logits of masks decoded from the user's prompts on their own slice: there they
# outrank masks propagated into that slice from other slices (but not drawn masks)
_ANNOTATED_OFFSET = 1.0e3
_MASK_PROMPT_LOGIT = 10.0  # magnitude of low-resolution logits made from a binary mask


# ---------------------------------------------------------------------------------- prompts
@dataclass
class SlicePrompt:
    """Prompts for one object on one slice.

    Attributes
    ----------
    slice : int
        Index along the propagation axis (0 <= slice < Z).
    points : array-like (P, 2), optional
        (row, col) pixel coordinates.
    labels : array-like (P,), optional
        1 positive, 0 negative; default all positive. Only negative points (no box or mask)
        on a slice are a constraint, not an annotation: they are added to the prompt that
        propagation brings onto that slice (and do nothing where the object does not reach
        it); an object needs a positive point, a box or a mask on some slice.
    box : array-like (4,), optional
        (row0, col0, row1, col1).
    mask : array-like (Y, X) bool, optional
        The object's mask on this slice. Alone, it is taken as the object's segmentation on
        this slice as is; with points or a box it becomes a mask prompt for the decoder.
    stop : bool
        A stop marker: the object is absent from this slice and propagation ends before it.
        A stop marker carries no other prompt.
    """

    slice: int
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask: np.ndarray | None = None
    stop: bool = False

    _KEYS = ("slice", "points", "labels", "box", "mask", "stop")

    @classmethod
    def coerce(cls, value) -> SlicePrompt:
        """A :class:`SlicePrompt` from itself or a plain dict with the same keys."""
        if isinstance(value, SlicePrompt):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(cls._KEYS)
            if unknown:
                raise ValueError(
                    f"unknown slice prompt keys {sorted(unknown)}; allowed: {list(cls._KEYS)}"
                )
            if "slice" not in value:
                raise ValueError(
                    f"a slice prompt needs a 'slice' index, got keys {sorted(value)}; "
                    "e.g. {'slice': 12, 'points': [[40, 52]]}"
                )
            return cls(**value)
        raise TypeError(
            f"a slice prompt must be a SlicePrompt or a dict, got {type(value).__name__}"
        )


@dataclass
class _Annotation:
    """Validated and merged prompts of one object on one slice."""

    points: np.ndarray | None  # (P, 2) float64
    labels: np.ndarray | None  # (P,) int64
    box: np.ndarray | None  # (4,) float64
    mask: np.ndarray | None  # (Y, X) bool

    @property
    def mask_only(self) -> bool:
        return self.mask is not None and self.points is None and self.box is None

    @property
    def multimask(self) -> bool:
        """A single click is ambiguous: decode 3 candidates and keep the best scoring."""
        return (
            self.points is not None and len(self.points) == 1 and self.box is None
            and self.mask is None
        )

    @property
    def signature(self) -> tuple[bool, bool, bool, bool]:
        """Prompts of equal signature are decoded together in one call."""
        return (self.points is not None, self.box is not None, self.mask is not None,
                self.multimask)


@dataclass
class _Object:
    id: int
    annotations: dict[int, _Annotation]  # slice -> annotation
    stops: list[int]  # sorted slices with stop markers
    # slice -> (P, 2) negative points on a slice with no other prompt of the object: added to
    # the prompt propagated onto that slice (a constraint, not an annotation)
    negatives: dict[int, np.ndarray] = field(default_factory=dict)


def _as_id(key) -> int:
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)):
        raise ValueError(
            f"object ids must be positive integers (0 is background), got {key!r}"
        )
    if int(key) <= 0:
        raise ValueError(f"object ids must be positive integers (0 is background), got {key}")
    return int(key)


def _validate_slice(z, obj_id: int, n_slices: int) -> int:
    if isinstance(z, (bool, np.bool_)) or not isinstance(z, (int, np.integer)):
        raise ValueError(f"object {obj_id}: slice index must be an integer, got {z!r}")
    if not 0 <= int(z) < n_slices:
        raise ValueError(
            f"object {obj_id}: slice {int(z)} is out of range for a stack of {n_slices} slices "
            f"(valid: 0..{n_slices - 1}); negative indices are not accepted"
        )
    return int(z)


def _validate_annotation(sp: SlicePrompt, obj_id: int, size: tuple[int, int]) -> _Annotation:
    h, w = size
    where = f"object {obj_id}, slice {sp.slice}"
    pts = lab = box = mask = None
    if sp.points is not None:
        pts = np.asarray(sp.points, dtype=np.float64)
        if pts.ndim == 1 and pts.size == 2:
            pts = pts[None]
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
            raise ValueError(
                f"{where}: points must have shape (P, 2) as (row, col), got {pts.shape}"
            )
        if not np.isfinite(pts).all():
            raise ValueError(f"{where}: points must be finite (row, col) pairs")
        outside = (pts[:, 0] < -0.5) | (pts[:, 0] > h - 0.5) | (pts[:, 1] < -0.5)
        outside |= pts[:, 1] > w - 0.5
        if outside.any():
            raise ValueError(
                f"{where}: point (row, col) = {tuple(pts[outside][0])} is outside the slices of "
                f"shape {size}; give points in pixels of the embedded stack"
            )
        if sp.labels is None:
            lab = np.ones(len(pts), np.int64)
        else:
            lab = np.asarray(sp.labels).reshape(-1)
            if len(lab) != len(pts):
                raise ValueError(
                    f"{where}: got {len(pts)} points but {len(lab)} labels; give one label "
                    "per point (1 positive, 0 negative)"
                )
            if not np.isin(lab, (0, 1)).all():
                raise ValueError(
                    f"{where}: labels must be 1 (positive) or 0 (negative), got {np.unique(lab)}"
                )
            lab = lab.astype(np.int64)
    elif sp.labels is not None:
        raise ValueError(f"{where}: labels were given without points")
    if sp.box is not None:
        box = np.asarray(sp.box, dtype=np.float64).reshape(-1)
        if box.shape != (4,) or not np.isfinite(box).all():
            raise ValueError(
                f"{where}: box must be 4 finite numbers (row0, col0, row1, col1), got {sp.box}"
            )
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(
                f"{where}: box {tuple(box)} is inverted; need row1 >= row0 and col1 >= col0"
            )
        if box[2] < 0 or box[3] < 0 or box[0] > h - 1 or box[1] > w - 1:
            raise ValueError(f"{where}: box {tuple(box)} lies outside the slices of shape {size}")
        box = np.clip(box, 0, [h - 1, w - 1, h - 1, w - 1])
    if sp.mask is not None:
        mask = np.asarray(sp.mask)
        if mask.shape != (h, w):
            raise ValueError(
                f"{where}: mask has shape {mask.shape} but the embedded stack's slices are "
                f"{size}; masks must come from the same stack (and axis order) as the embedding"
            )
        mask = mask.astype(bool)
        if not mask.any():
            raise ValueError(f"{where}: the mask is empty; give a non-empty mask or remove it")
    if pts is None and box is None and mask is None:
        raise ValueError(
            f"{where}: the prompt has no points, box or mask and is not a stop marker"
        )
    return _Annotation(pts, lab, box, mask)


def _merge(a: _Annotation, b: _Annotation, where: str) -> _Annotation:
    if a.box is not None and b.box is not None:
        raise ValueError(f"{where}: two boxes on the same slice; give one box per object")
    if a.points is not None and b.points is not None:
        pts = np.concatenate([a.points, b.points])
        lab = np.concatenate([a.labels, b.labels])
    else:
        pts = a.points if a.points is not None else b.points
        lab = a.labels if a.labels is not None else b.labels
    if a.mask is not None and b.mask is not None:
        mask = a.mask | b.mask
    else:
        mask = a.mask if a.mask is not None else b.mask
    return _Annotation(pts, lab, a.box if a.box is not None else b.box, mask)


def _normalize_prompts(prompts, shape: tuple[int, int, int]) -> list[_Object]:
    if not isinstance(prompts, Mapping):
        raise TypeError(
            "prompts must be a mapping {object_id: [SlicePrompt or dict, ...]}, got "
            f"{type(prompts).__name__}"
        )
    if len(prompts) == 0:
        raise ValueError("no prompts given; add at least one object with a prompt on one slice")
    n_slices, size = shape[0], (shape[1], shape[2])
    objects = []
    for key in sorted(prompts, key=lambda k: _as_id(k)):
        obj_id = _as_id(key)
        value = prompts[key]
        items = [value] if isinstance(value, (SlicePrompt, Mapping)) else list(value or [])
        annotations: dict[int, _Annotation] = {}
        stops: set[int] = set()
        for item in items:
            sp = SlicePrompt.coerce(item)
            z = _validate_slice(sp.slice, obj_id, n_slices)
            sp = SlicePrompt(z, sp.points, sp.labels, sp.box, sp.mask, bool(sp.stop))
            if sp.stop:
                if sp.points is not None or sp.box is not None or sp.mask is not None:
                    raise ValueError(
                        f"object {obj_id}, slice {z}: a stop marker carries no points, box or "
                        "mask; give the stop marker and the prompts on different slices"
                    )
                stops.add(z)
                continue
            ann = _validate_annotation(sp, obj_id, size)
            if z in annotations:
                ann = _merge(annotations[z], ann, f"object {obj_id}, slice {z}")
            annotations[z] = ann
        negatives = {z: a.points for z, a in annotations.items()
                     if a.box is None and a.mask is None and not a.labels.any()}
        for z in negatives:
            del annotations[z]
        if not annotations:
            if negatives:
                raise ValueError(
                    f"object {obj_id} has only negative points (slices {sorted(negatives)}); "
                    "negative points alone start nothing: add a positive point, a box or a mask "
                    "on at least one slice (negative points on other slices then constrain the "
                    "propagated masks there)"
                )
            raise ValueError(
                f"object {obj_id} has no prompts (only stop markers or nothing); add points, a "
                "box or a mask on at least one slice, or remove the object"
            )
        clash = stops & (set(annotations) | set(negatives))
        if clash:
            raise ValueError(
                f"object {obj_id}: slice {min(clash)} has both a stop marker and prompts; "
                "remove one of them"
            )
        objects.append(_Object(obj_id, annotations, sorted(stops), negatives))
    _same_prompts(objects)
    return objects


def prompts_from_labels(
    labels, slice: int | None = None, ids: Iterable[int] | None = None
) -> dict[int, list[SlicePrompt]]:
    """Seed propagation from existing labels: one mask prompt per object.

    Parameters
    ----------
    labels : array-like, (Y, X) or (Z, Y, X) int
        A label image (0 = background). A 2D array is the labels of slice ``slice``.
    slice : int, optional
        The slice the masks come from. Required for 2D labels. For 3D labels, ``None`` seeds
        every object on the slice where its area is largest.
    ids : iterable of int, optional
        Only these objects (default: every non-zero label present).

    Returns
    -------
    dict
        ``{id: [SlicePrompt(slice, mask=(Y, X) bool)]}`` for :func:`segment_volume`.

    Examples
    --------
    >>> prompts = prompts_from_labels(layer.data, slice=12)        # (Z, Y, X) labels
    >>> result = segment_volume(emb, prompts)
    """
    lab = np.asarray(labels)
    if lab.ndim not in (2, 3):
        raise ValueError(f"labels must be (Y, X) or (Z, Y, X), got shape {lab.shape}")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == bool):
        raise ValueError(f"labels must be an integer array, got dtype {lab.dtype}")
    if lab.ndim == 2:
        if slice is None:
            raise ValueError("2D labels need the slice they belong to: prompts_from_labels(l, slice=z)")
        if int(slice) < 0:
            raise ValueError(f"slice must be >= 0, got {slice}")
        planes = {int(slice): lab}
    elif slice is not None:
        if not 0 <= int(slice) < lab.shape[0]:
            raise ValueError(
                f"slice {slice} is out of range for labels with {lab.shape[0]} slices"
            )
        planes = {int(slice): lab[int(slice)]}
    else:
        planes = None
    wanted = None if ids is None else {int(i) for i in ids}
    out: dict[int, list[SlicePrompt]] = {}
    if planes is not None:
        (z, plane), = planes.items()
        present = np.unique(plane)
        for i in present[present != 0]:
            if wanted is None or int(i) in wanted:
                out[int(i)] = [SlicePrompt(z, mask=plane == i)]
    else:
        flat = lab.reshape(lab.shape[0], -1)
        present = np.unique(lab)
        for i in present[present != 0]:
            if wanted is not None and int(i) not in wanted:
                continue
            z = int(np.argmax((flat == i).sum(1)))
            out[int(i)] = [SlicePrompt(z, mask=lab[z] == i)]
    if wanted is not None and wanted - set(out):
        raise ValueError(f"labels {sorted(wanted - set(out))} are not present in the given labels")
    if not out:
        raise ValueError("the labels contain no objects (all zero)")
    return out


# --------------------------------------------------------------------- prompt derivation
def box_from_mask(mask) -> np.ndarray | None:
    """Tight box of a mask.

    Parameters
    ----------
    mask : array-like (Y, X) bool

    Returns
    -------
    numpy.ndarray (4,) float64 or None
        (row0, col0, row1, col1) inclusive pixel coordinates; None for an empty mask.
    """
    m = np.asarray(mask, bool)
    rows = np.flatnonzero(m.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(0))
    return np.array([rows[0], cols[0], rows[-1], cols[-1]], np.float64)


def center_from_mask(mask) -> np.ndarray | None:
    """A single point at the centre of a mask.

    The centroid when it lies inside the mask, otherwise the pixel deepest inside the mask
    (maximum of the distance transform), so concave shapes get a point on the object.

    Returns
    -------
    numpy.ndarray (2,) float64 (row, col) or None for an empty mask.
    """
    m = np.asarray(mask, bool)
    rr, cc = np.nonzero(m)
    if rr.size == 0:
        return None
    r, c = int(round(rr.mean())), int(round(cc.mean()))
    if m[r, c]:
        return np.array([r, c], np.float64)
    return points_from_mask(m, n_positive=1, n_negative=0)[0][0]


def points_from_mask(
    mask, n_positive: int = 2, n_negative: int = 4, min_separation: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts derived from a mask.

    Positives are maxima of the distance transform (the deepest pixels inside the mask): the
    deepest first, then further maxima at least ``min_separation`` away and at least half as
    deep. Negatives lie just outside the mask, at the middles of the sides of the mask's box
    grown by a margin (a quarter of the box's shorter side, at least 2 pixels), kept only when they fall
    inside the image and outside the mask.

    Parameters
    ----------
    mask : array-like (Y, X) bool
    n_positive, n_negative : int
        Maximum numbers of positive and negative points.
    min_separation : float, optional
        Minimum distance between positives; default the deepest depth.

    Returns
    -------
    points : numpy.ndarray (P, 2) float64, (row, col)
    labels : numpy.ndarray (P,) int64, 1 positive, 0 negative
        Empty arrays for an empty mask.
    """
    from scipy import ndimage as ndi

    m = np.asarray(mask, bool)
    box = box_from_mask(m)
    if box is None:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    r0, c0, r1, c1 = box.astype(int)
    crop = np.pad(m[r0 : r1 + 1, c0 : c1 + 1], 1)
    dist = ndi.distance_transform_edt(crop)
    pos = []
    deepest = float(dist.max())
    sep = deepest if min_separation is None else float(min_separation)
    d = dist.copy()
    yy, xx = np.indices(d.shape)
    for _ in range(max(0, n_positive)):
        k = int(np.argmax(d))
        r, c = divmod(k, d.shape[1])
        if d[r, c] <= 0 or (pos and d[r, c] < 0.5 * deepest):
            break
        pos.append((r - 1 + r0, c - 1 + c0))
        d[(yy - r) ** 2 + (xx - c) ** 2 < sep**2] = 0
    neg = []
    if n_negative > 0:
        h, w = m.shape
        mr = mc = max(2, int(round(0.25 * min(r1 - r0 + 1, c1 - c0 + 1))))
        rm, cm = (r0 + r1) // 2, (c0 + c1) // 2
        for r, c in ((r0 - mr, cm), (r1 + mr, cm), (rm, c0 - mc), (rm, c1 + mc)):
            if len(neg) >= n_negative:
                break
            if 0 <= r < h and 0 <= c < w and not m[r, c]:
                neg.append((r, c))
    pts = np.array(pos + neg, np.float64).reshape(-1, 2)
    labels = np.array([1] * len(pos) + [0] * len(neg), np.int64)
    return pts, labels


def mask_to_logits(mask, original_size, input_size, img_size: int, low_res_size: int) -> torch.Tensor:
    """A binary mask as low-resolution logits usable as a decoder mask prompt.

    The inverse of the predictor's upsampling: resize to the model input size, pad, shrink to
    the low-resolution grid; inside maps to about +10, outside to -10.

    Parameters
    ----------
    mask : array-like or tensor (..., Y, X) bool
    original_size, input_size : (int, int)
        See :class:`napari_sam.ImageEmbedding`.
    img_size, low_res_size : int
        Model input side S and low-resolution side 4E.

    Returns
    -------
    torch.Tensor (..., 4E, 4E) float32
    """
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    lead = m.shape[:-2]
    x = m.reshape(-1, 1, *m.shape[-2:]).float()
    h, w = input_size
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False)
    x = F.pad(x, (0, img_size - w, 0, img_size - h))
    x = F.interpolate(x, (low_res_size, low_res_size), mode="area")
    x = (x * 2 - 1) * _MASK_PROMPT_LOGIT
    return x.reshape(*lead, low_res_size, low_res_size)


def mask_contrast(image, masks, ring: int = 3) -> np.ndarray:
    """How much each mask stands out from its surroundings.

    Mean intensity inside the mask minus the mean of a ring of ``ring`` pixels around it
    (the mask dilated ``ring`` times, less the mask). Positive for bright objects on a darker
    surround, negative for dark ones.

    Parameters
    ----------
    image : array-like (Y, X) or (Y, X, C)
        The slice; channels are averaged.
    masks : array-like (N, Y, X) or (Y, X) bool
    ring : int
        Width of the surrounding ring in pixels.

    Returns
    -------
    numpy.ndarray (N,) float64
        NaN for an empty mask or one with no pixels around it inside the image.
    """
    return _contrast_and_error(image, masks, ring)[0]


def _contrast_and_error(image, masks, ring: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mask_contrast` (N,) and its standard error (N,) from the pixels' own spread:
    sqrt(var_inside / n_inside + var_ring / n_ring); NaN where the contrast is."""
    from scipy import ndimage as ndi

    img = np.asarray(image, np.float32)
    if img.ndim == 3:
        img = img.mean(-1)
    m = np.asarray(masks, bool)
    if m.ndim == 2:
        m = m[None]
    if m.shape[1:] != img.shape:
        raise ValueError(f"masks of shape {m.shape[1:]} do not match the image {img.shape}")
    h, w = img.shape
    out = np.full(len(m), np.nan)
    err = np.full(len(m), np.nan)
    for i, mask in enumerate(m):
        box = box_from_mask(mask)
        if box is None:
            continue
        r0, c0 = max(0, int(box[0]) - ring), max(0, int(box[1]) - ring)
        r1, c1 = min(h, int(box[2]) + ring + 1), min(w, int(box[3]) + ring + 1)
        crop = mask[r0:r1, c0:c1]
        around = ndi.binary_dilation(crop, iterations=ring) & ~crop
        if around.any():
            sub = img[r0:r1, c0:c1]
            a, b = sub[crop].astype(np.float64), sub[around].astype(np.float64)
            out[i] = float(a.mean()) - float(b.mean())
            err[i] = float(np.sqrt(a.var() / a.size + b.var() / b.size))
    return out, err


# ------------------------------------------------------------------------ stopping rules
def stop_reason(
    area,
    prev_area,
    iou,
    score=None,
    *,
    min_area: int = 5,
    iou_threshold: float = 0.5,
    area_factor: float = 2.5,
    min_score: float = 0.0,
    contrast=None,
    ref_contrast=None,
    fade_fraction: float | None = None,
    peak_contrast=None,
    low_contrast=None,
    rebound_fraction: float | None = None,
    contrast_error=None,
    peak_error=None,
    low_error=None,
    rebound_noise: float | None = None,
) -> np.ndarray:
    """Which stopping rule (if any) rejects a propagated mask; vectorised over objects.

    Parameters
    ----------
    area, prev_area : array-like (N,)
        Pixel counts of the new mask and of the previous slice's mask.
    iou : array-like (N,)
        IoU of the new mask with the previous slice's mask.
    score : array-like (N,), optional
        Predicted IoU of the new mask.
    min_area, iou_threshold, area_factor, min_score, fade_fraction
        See :func:`segment_volume`.
    contrast, ref_contrast : array-like (N,), optional
        The new mask's contrast on its slice and the object's contrast on its annotated slice
        (:func:`mask_contrast`); NaN where unknown. With ``fade_fraction``, a mask whose
        contrast, in the sign of the reference, is below ``fade_fraction * |ref_contrast|``
        fails as "faded"; objects with a NaN reference are not tested.
    peak_contrast, low_contrast : array-like (N,), optional
        The highest contrast of the object's chain so far and the lowest since that peak, in
        the sign of ``ref_contrast`` (so larger means more contrast). With
        ``rebound_fraction``, a mask fails as "rebounded" where the chain had dimmed from its
        peak by more than ``rebound_fraction * |ref_contrast|`` and the new contrast rises
        above that low by more than the same amount: an object's contrast along z rises to its
        middle and falls to its ends once, so a second rise is another object
        (:func:`segment_volume` stops where this holds on two slices in a row).
    contrast_error, peak_error, low_error : array-like (N,), optional
        Standard errors of ``contrast``, ``peak_contrast`` and ``low_contrast``. With
        ``rebound_noise``, the dip must also exceed ``rebound_noise * hypot(peak_error,
        low_error)`` and the rise ``rebound_noise * hypot(contrast_error, low_error)``.

    Returns
    -------
    numpy.ndarray (N,) of str
        ``""`` where the mask is accepted, else the first rule that failed, in the order
        "vanished", "area", "iou", "score", "faded", "rebounded" (see :data:`STOP_REASONS`).
    """
    area = np.asarray(area, np.float64).reshape(-1)
    prev = np.asarray(prev_area, np.float64).reshape(-1)
    iou = np.asarray(iou, np.float64).reshape(-1)
    out = np.full(area.shape, "", dtype=object)
    vanished = (area < max(1, min_area)) | (area == 0)
    ratio = np.where(prev > 0, area / np.maximum(prev, 1), np.inf)
    jump = (ratio > area_factor) | (ratio < 1.0 / area_factor)
    low_iou = iou < iou_threshold
    rules = [("vanished", vanished), ("area", jump), ("iou", low_iou)]
    if score is not None:
        rules.append(("score", np.asarray(score, np.float64).reshape(-1) < min_score))
    if fade_fraction is not None and contrast is not None and ref_contrast is not None:
        c = np.asarray(contrast, np.float64).reshape(-1)
        ref = np.asarray(ref_contrast, np.float64).reshape(-1)
        with np.errstate(invalid="ignore"):
            faded = np.isfinite(ref) & (c * np.sign(ref) < fade_fraction * np.abs(ref))
        rules.append(("faded", faded))
    if (rebound_fraction is not None and contrast is not None and ref_contrast is not None
            and peak_contrast is not None and low_contrast is not None):
        c = np.asarray(contrast, np.float64).reshape(-1)
        ref = np.asarray(ref_contrast, np.float64).reshape(-1)
        peak = np.asarray(peak_contrast, np.float64).reshape(-1)
        low = np.asarray(low_contrast, np.float64).reshape(-1)
        bar = rebound_fraction * np.abs(ref)
        dip_bar = rise_bar = bar
        if (rebound_noise is not None and contrast_error is not None and peak_error is not None
                and low_error is not None):
            ce, pe, le = (np.nan_to_num(np.asarray(e, np.float64).reshape(-1))
                          for e in (contrast_error, peak_error, low_error))
            dip_bar = np.maximum(bar, rebound_noise * np.hypot(pe, le))
            rise_bar = np.maximum(bar, rebound_noise * np.hypot(ce, le))
        with np.errstate(invalid="ignore"):
            rebounded = (np.isfinite(ref) & (peak - low > dip_bar)
                         & (c * np.sign(ref) - low > rise_bar))
        rules.append(("rebounded", rebounded))
    for name, hit in reversed(rules):
        out[hit] = name
    return out.astype(str)


# ------------------------------------------------------------------------------- result
@dataclass
class VolumeResult:
    """Result of :func:`segment_volume`.

    Attributes
    ----------
    labels : numpy.ndarray (Z, Y, X)
        Object ids as given (0 background); the smallest unsigned dtype that holds them.
    scores : dict[int, dict[int, float]]
        ``scores[id][z]``: predicted IoU of the object's mask on slice z (1.0 for masks the
        user gave), for the slices where the object is in ``labels``.
    stop_reasons : dict[int, dict[str, str]]
        ``stop_reasons[id] = {"up": reason, "down": reason}``: why propagation ended above
        the object's highest annotated slice ("up", increasing index) and below its lowest
        ("down"); keys of :data:`STOP_REASONS`. Only objects present in ``labels``.
    slice_range : dict[int, tuple[int, int]]
        ``(first, last)`` slice (inclusive) on which the object is in ``labels``.
    chains : list[dict]
        Every propagation run: ``{"id", "direction", "start", "last", "reason"}`` including
        the runs that fill gaps between annotated slices.
    decoder_calls : int
        Batched decoder calls made.
    calls_per_slice : numpy.ndarray (Z,) int
        Decoder calls made on each slice.
    lost : dict[int, str]
        Objects given prompts that are nowhere in ``labels`` (every pixel of their masks went
        to other objects), with the reason; they are in none of the dicts above, and
        :func:`segment_volume` warns about them.
    """

    labels: np.ndarray
    scores: dict[int, dict[int, float]]
    stop_reasons: dict[int, dict[str, str]]
    slice_range: dict[int, tuple[int, int]]
    chains: list[dict] = field(default_factory=list)
    decoder_calls: int = 0
    calls_per_slice: np.ndarray | None = None
    lost: dict[int, str] = field(default_factory=dict)

    @property
    def object_ids(self) -> list[int]:
        return sorted(self.stop_reasons)

    def __array__(self, dtype=None, copy=None):
        return self.labels if dtype is None else self.labels.astype(dtype)


def _check_embeddings(emb, predictor) -> None:
    """TypeError for what is not a stack's embeddings (a raw stack, a 2D embedding, None)."""
    from napari_sam.predictor import ImageEmbedding

    if isinstance(emb, ImageEmbedding):
        raise TypeError(
            "segment_volume needs the embeddings of a stack, got the ImageEmbedding of one 2D "
            "image; use Predictor.predict for a single image, or "
            "emb = napari_sam.embed(stack, model) for a stack"
        )
    raw = hasattr(emb, "dtype") and not hasattr(emb, "predictor")  # numpy, zarr, dask
    if raw or emb is None or isinstance(emb, (list, tuple, str)):
        what = (
            f"an array of shape {tuple(emb.shape)}" if hasattr(emb, "shape")
            else f"{type(emb).__name__}"
        )
        raise TypeError(
            f"segment_volume needs the stack's embeddings, got {what}; embed the stack first: "
            "emb = napari_sam.embed(stack, model), then segment_volume(emb, prompts)"
        )


def _same_prompts(objects: list[_Object]) -> None:
    """ValueError when two objects have identical prompts on one slice: they segment the same
    thing, and only one of them could end up in the labels."""
    seen: dict[tuple, int] = {}
    for obj in objects:
        for z, a in obj.annotations.items():
            key = (z,) + tuple(
                None if v is None else (v.shape, np.ascontiguousarray(v).tobytes())
                for v in (a.points, a.labels, a.box, a.mask)
            )
            other = seen.setdefault(key, obj.id)
            if other != obj.id:
                raise ValueError(
                    f"objects {other} and {obj.id} have the same prompts on slice {z}: they "
                    "would segment the same thing and one of them would be lost; give each "
                    "object its own prompts, or merge them into one object"
                )


def _label_dtype(max_id: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_id <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"object id {max_id} does not fit in uint64")


# --------------------------------------------------------------------------- internals
@dataclass
class _State:
    """An object's mask on the slice a chain last accepted."""

    mask: np.ndarray  # (H, W) bool
    lowres: torch.Tensor  # (4E, 4E) float32, on the predictor's device
    area: float
    box: np.ndarray | None  # (4,)
    centroid: np.ndarray | None  # (2,)
    prev_centroid: np.ndarray | None = None


@dataclass
class _Chain:
    k: int  # object index
    direction: int  # +1 up, -1 down
    start: int
    bound: int  # last slice this chain may fill
    bound_reason: str
    state: _State | None = None
    last: int = -1
    steps: int = 0
    reason: str | None = None
    partner: _Chain | None = None  # the up chain filling the same gap (for down chains)
    ref_contrast: float = float("nan")  # what fading is judged against (NaN: no rule)
    # the chain's highest contrast so far and its lowest since then, in the sign of
    # ref_contrast (the rebound rule)
    peak_contrast: float = float("nan")
    low_contrast: float = float("nan")
    low_slice: int = -1  # where low_contrast was measured
    # standard errors of peak_contrast and low_contrast (the pixels' own noise)
    peak_error: float = 0.0
    low_error: float = 0.0
    rises: int = 0  # slices in a row on which the rebound rule saw the contrast rise

    @property
    def alive(self) -> bool:
        return self.reason is None

    def track_contrast(self, contrast: float, z: int, error: float = 0.0) -> None:
        """The rebound rule's running peak, and the low since it, after accepting slice z
        (``contrast`` in the sign of ``ref_contrast``, ``error`` its standard error)."""
        if contrast > self.peak_contrast:
            self.peak_contrast = self.low_contrast = contrast
            self.peak_error = self.low_error = error
            self.low_slice = z
        elif contrast < self.low_contrast:
            self.low_contrast, self.low_slice, self.low_error = contrast, z, error


@dataclass
class _Record:
    """An object's full-resolution logits on one slice, cropped to the mask's box."""

    r0: int
    c0: int
    logits: np.ndarray  # (h, w) float32, -inf outside the mask
    score: float


def _upsample_logits(logits: torch.Tensor, emb, img_size: int) -> torch.Tensor:
    """(N, 4E, 4E) low-resolution logits -> (N, H, W) float logits, as the predictor does."""
    x = logits[:, None].float()
    if tuple(x.shape[-2:]) != (img_size, img_size):
        x = F.interpolate(x, (img_size, img_size), mode="bilinear", align_corners=False)
    h, w = emb.input_size
    x = x[..., :h, :w]
    if (h, w) != tuple(emb.original_size):  # same size: bilinear would be the identity
        x = F.interpolate(x, tuple(emb.original_size), mode="bilinear", align_corners=False)
    return x[:, 0]


def _mask_stats(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Areas (N,), boxes (N, 4) and centroids (N, 2) of (N, H, W) bool masks (NaN if empty).

    Two passes over the masks (numpy: single-threaded, no thread-pool stalls on busy CPUs).
    """
    n, h, w = masks.shape
    rowcnt = np.count_nonzero(masks, axis=2)  # (N, H)
    colcnt = np.count_nonzero(masks, axis=1)  # (N, W)
    area = rowcnt.sum(1).astype(np.float64)
    rows, cols = rowcnt > 0, colcnt > 0
    boxes = np.stack([rows.argmax(1), cols.argmax(1), h - 1 - rows[:, ::-1].argmax(1),
                      w - 1 - cols[:, ::-1].argmax(1)], 1).astype(np.float64)
    safe = np.maximum(area, 1)
    cents = np.stack([rowcnt @ np.arange(h) / safe, colcnt @ np.arange(w) / safe], 1)
    boxes[area == 0] = np.nan
    cents[area == 0] = np.nan
    return area, boxes, cents


def _shift(x, dr: int, dc: int, fill):
    """Translate a (..., H, W) array or tensor by whole pixels, filling the uncovered border."""
    if dr == 0 and dc == 0:
        return x
    out = torch.full_like(x, fill) if isinstance(x, torch.Tensor) else np.full_like(x, fill)
    h, w = x.shape[-2:]
    if abs(dr) >= h or abs(dc) >= w:
        return out
    sr = slice(max(0, -dr), h - max(0, dr))
    tr = slice(max(0, dr), h - max(0, -dr))
    sc = slice(max(0, -dc), w - max(0, dc))
    tc = slice(max(0, dc), w - max(0, -dc))
    out[..., tr, tc] = x[..., sr, sc]
    return out


class _Propagator:
    def __init__(self, emb, objects, *, predictor, mode, motion, min_area, iou_threshold,
                 area_factor, min_score, max_slices, exclusive, progress,
                 fade_fraction=None, claimed_fraction=None, rebound_fraction=None,
                 rebound_noise=None):
        self.emb = emb
        self.objects = objects
        self.pred = predictor
        self.mode = mode
        self.motion = motion
        self.rules = dict(min_area=min_area, iou_threshold=iou_threshold,
                          area_factor=area_factor, min_score=min_score)
        self.claimed_fraction = claimed_fraction
        # the fade rule needs the images: embeddings from napari_sam.embed keep their stack
        self.stack = getattr(emb, "stack", None)
        self.fade_fraction = fade_fraction if self.stack is not None else None
        self.rebound_fraction = rebound_fraction if self.stack is not None else None
        self.rebound_noise = rebound_noise
        limits = getattr(emb, "contrast_limits", None)
        self.intensity_span = None if limits is None else float(limits[1]) - float(limits[0])
        self._plane_cache: tuple[int, np.ndarray] | None = None
        self.max_slices = max_slices
        self.exclusive = exclusive
        self.progress = progress
        self.n_slices, self.h, self.w = (int(s) for s in emb.shape)
        self.img_size = int(predictor.img_size)
        self.low_res = int(predictor.low_res_size)
        self.thr = float(getattr(getattr(predictor, "model", None), "mask_threshold", 0.0))
        self.device = torch.device(getattr(predictor, "device", "cpu"))
        self.records: dict[tuple[int, int], _Record] = {}
        # slices from the annotated slice of the chain that made a record (0: annotated)
        self.distance: dict[tuple[int, int], int] = {}
        self.chain_of: dict[tuple[int, int], _Chain] = {}
        self.seeds: dict[tuple[int, int], _State] = {}
        #: (object index, annotated slice) -> its seed's reference contrast, measured once
        self._seed_contrasts: dict[tuple[int, int], tuple[float, float]] = {}
        #: (object index, annotated slice) -> the model's own mask for a drawn mask: what its
        #: contrast references are measured on (a drawn mask is not what propagation decodes)
        self._reference_masks: dict[tuple[int, int], np.ndarray] = {}
        self.calls_per_slice = np.zeros(self.n_slices, np.int64)
        self.decoder_calls = 0

    # ----------------------------------------------------------------- decoding
    def _decode(self, z: int, **prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched decoder call on slice z -> (logits (N, C, 4E, 4E), scores (N, C))."""
        out = self.pred.predict_batch(embedding=self.emb[z], upsample=False, **prompts)
        self.calls_per_slice[z] += 1
        self.decoder_calls += 1
        return out.logits.float(), out.scores.float()

    def _masks(self, full: np.ndarray, distance: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W) logits of objects decoded together -> masks; with ``exclusive``, a pixel
        claimed by several of them stays only with the one nearest its annotated slice
        (``distance`` (N,), in slices; default all equal), then with the highest logit
        there (ties: all)."""
        masks = full > self.thr
        if self.exclusive and len(full) > 1:
            if distance is not None and np.ptp(distance) > 0:
                d = np.where(masks, np.asarray(distance, np.float32)[:, None, None], np.inf)
                masks &= d <= d.min(0)
            top = np.where(masks, full, -np.inf).max(0)
            masks &= full >= top
        return masks

    def _full(self, logits: torch.Tensor, emb) -> np.ndarray:
        """(N, 4E, 4E) low-resolution logits -> (N, H, W) float32 numpy logits."""
        return _upsample_logits(logits, emb, self.img_size).cpu().numpy()

    def _plane(self, z: int) -> np.ndarray:
        """Slice z of the stack as float32 (Y, X), channels averaged; the last one is kept."""
        if self._plane_cache is None or self._plane_cache[0] != z:
            img = np.asarray(self.stack[z], np.float32)
            self._plane_cache = (z, img.mean(-1) if img.ndim == 3 else img)
        return self._plane_cache[1]

    def _reference_contrast(self, z: int, mask: np.ndarray) -> tuple[float, float]:
        """Contrast of a chain's starting mask and its standard error; NaN where it is too
        faint to judge fading by (below 2 % of the stack's intensity range)."""
        c, e = (float(v[0]) for v in _contrast_and_error(self._plane(z), mask))
        span = self.intensity_span
        if span is None or not span > 0:
            img = self._plane(z)
            span = float(img.max() - img.min())
        return (c, e) if np.isfinite(c) and abs(c) >= 0.02 * span else (float("nan"), 0.0)

    def _seed_contrast(self, k: int, z: int, error: bool = False):
        """Reference contrast of object k's seed mask on its annotated slice z (NaN where it
        has none or is too faint), measured once per seed, on the model's own mask where the
        user drew one; with ``error``, (contrast, standard error)."""
        key = (k, z)
        if key not in self._seed_contrasts:
            seed = self.seeds.get(key)
            mask = self._reference_masks.get(key, None if seed is None else seed.mask)
            self._seed_contrasts[key] = (
                (float("nan"), 0.0) if seed is None or seed.area == 0 or not mask.any()
                else self._reference_contrast(z, mask))
        return self._seed_contrasts[key] if error else self._seed_contrasts[key][0]

    def _chain_reference(self, c: _Chain) -> float:
        """The contrast a chain's fading is judged against: the object's strongest contrast
        over its annotated slices (in the sign of the chain's own), but never more than the
        chain's own starting contrast / fade_fraction, so that a slice as contrasted as the
        annotated slice the chain starts from never counts as faded. With one annotated slice
        this is that slice's contrast. NaN (no rule) where the start is too faint to judge."""
        start = self._seed_contrast(c.k, c.start)
        if not np.isfinite(start) or not self.fade_fraction:
            return start
        same_sign = [abs(r) for r in (self._seed_contrast(c.k, z)
                                      for z in self.objects[c.k].annotations)
                     if np.isfinite(r) and np.sign(r) == np.sign(start)]
        strongest = max(same_sign)  # the start itself is among them
        return float(np.sign(start) * min(strongest, abs(start) / self.fade_fraction))

    def _accept(self, z: int, ks: Sequence[int], full: np.ndarray, scores: np.ndarray,
                masks: np.ndarray, boxes: np.ndarray, offset: float = 0.0) -> None:
        """Keep cropped full-resolution logits of accepted masks for the final composition
        (``offset`` ranks masks from annotations above propagated ones)."""
        for i, k in enumerate(ks):
            r0, c0, r1, c1 = boxes[i].astype(int)
            win = (i, slice(r0, r1 + 1), slice(c0, c1 + 1))
            crop = np.where(masks[win], full[win] + offset, -np.inf).astype(np.float32)
            self.records[(k, z)] = _Record(r0, c0, crop, float(scores[i]))
            self.distance[(k, z)] = 0

    # ----------------------------------------------------------------- annotated slices
    def annotate(self) -> None:
        by_slice: dict[int, list[tuple[int, _Annotation]]] = {}
        for k, obj in enumerate(self.objects):
            for z, ann in obj.annotations.items():
                by_slice.setdefault(z, []).append((k, ann))
        for z in sorted(by_slice):
            emb = None
            groups: dict[tuple, list[tuple[int, _Annotation]]] = {}
            drawn = []
            for k, ann in by_slice[z]:
                if ann.mask_only:
                    emb = emb or self.emb[z]
                    low = mask_to_logits(ann.mask, emb.original_size, emb.input_size,
                                         self.img_size, self.low_res).to(self.device)
                    full = np.full((1, *ann.mask.shape), _USER_LOGIT, np.float32)
                    self._seed(z, [k], ann.mask[None], low[None], np.ones(1), full)
                    drawn.append((k, ann.mask, low))
                else:
                    groups.setdefault(ann.signature, []).append((k, ann))
            if drawn and (self.fade_fraction is not None or self.rebound_fraction is not None):
                self._drawn_references(z, emb, drawn)
            for (has_pts, has_box, has_mask, multi), items in sorted(groups.items()):
                emb = emb or self.emb[z]
                ks = [k for k, _ in items]
                kw = {}
                if has_pts:
                    p = max(len(a.points) for _, a in items)
                    pts = np.zeros((len(items), p, 2))
                    lab = np.full((len(items), p), -1, np.int64)
                    for i, (_, a) in enumerate(items):
                        pts[i, : len(a.points)] = a.points
                        lab[i, : len(a.points)] = a.labels
                    kw.update(points=pts, labels=lab)
                if has_box:
                    kw["boxes"] = np.stack([a.box for _, a in items])
                if has_mask:
                    kw["mask_inputs"] = mask_to_logits(
                        np.stack([a.mask for _, a in items]), emb.original_size,
                        emb.input_size, self.img_size, self.low_res)
                logits, scores = self._decode(z, multimask=multi, **kw)
                best = scores.argmax(1)
                idx = torch.arange(len(ks))
                logits, scores = logits[idx, best], scores[idx, best]
                full = self._full(logits, emb)
                self._seed(z, ks, self._masks(full), logits, scores.cpu().numpy(), full)

    def _drawn_references(self, z: int, emb, drawn: list) -> None:
        """The contrast references of drawn masks are measured on the mask the model decodes
        from them (their box and mask, as propagation prompts the next slice): a drawn mask
        is often larger than the model's masks, whose 3-pixel ring then falls on the object's
        edge, so a reference from the drawn mask would be higher than any propagated mask
        could show, and the fade rule would stop the chain at once."""
        boxes = np.stack([box_from_mask(m) for _, m, _ in drawn])
        low = torch.stack([lw for _, _, lw in drawn])
        logits, _ = self._decode(z, multimask=False, boxes=boxes, mask_inputs=low)
        masks = self._full(logits[:, 0], emb) > self.thr
        for (k, _, _), m in zip(drawn, masks):
            self._reference_masks[(k, z)] = m

    def _seed(self, z, ks, masks, lowres, scores, full) -> None:
        area, boxes, cents = _mask_stats(masks)
        for i, k in enumerate(ks):
            self.seeds[(k, z)] = _State(masks[i], lowres[i], float(area[i]),
                                        None if area[i] == 0 else boxes[i],
                                        None if area[i] == 0 else cents[i])
        ok = [i for i in range(len(ks)) if area[i] > 0]
        if ok:
            self._accept(z, [ks[i] for i in ok], full[ok], scores[ok], masks[ok], boxes[ok],
                         offset=_ANNOTATED_OFFSET)

    # ----------------------------------------------------------------- chains
    def make_chains(self) -> tuple[list[_Chain], list[_Chain]]:
        up, down = [], []
        last = self.n_slices - 1
        for k, obj in enumerate(self.objects):
            ann = sorted(obj.annotations)
            stops = np.asarray(obj.stops, int)
            below = stops[stops < ann[0]]
            if below.size:
                down.append(_Chain(k, -1, ann[0], int(below.max()) + 1, "stop_marker"))
            else:
                down.append(_Chain(k, -1, ann[0], 0, "edge"))
            above = stops[stops > ann[-1]]
            if above.size:
                up.append(_Chain(k, +1, ann[-1], int(above.min()) - 1, "stop_marker"))
            else:
                up.append(_Chain(k, +1, ann[-1], last, "edge"))
            for a, b in zip(ann[:-1], ann[1:]):
                if b == a + 1:
                    continue
                inside = stops[(stops > a) & (stops < b)]
                if inside.size:
                    up.append(_Chain(k, +1, a, int(inside.min()) - 1, "stop_marker"))
                    down.append(_Chain(k, -1, b, int(inside.max()) + 1, "stop_marker"))
                else:
                    u = _Chain(k, +1, a, (a + b) // 2, "met")
                    d = _Chain(k, -1, b, a + 1, "met", partner=u)
                    up.append(u)
                    down.append(d)
        return up, down

    def sweep(self, chains: list[_Chain], direction: int, step0: int) -> None:
        for c in chains:
            c.state = self.seeds[(c.k, c.start)]
            c.last = c.start
            if c.partner is not None:  # meet the up chain where it ended
                c.bound = max(c.bound, c.partner.last + 1)
            if c.state.area == 0:
                c.reason = "vanished"
            elif c.bound * direction <= c.start * direction:
                c.reason = c.bound_reason
            elif self.fade_fraction is not None or self.rebound_fraction is not None:
                c.ref_contrast = self._chain_reference(c)
                start, err = self._seed_contrast(c.k, c.start, error=True)
                c.peak_contrast = c.low_contrast = abs(start)
                c.peak_error = c.low_error = err
                c.low_slice = c.start
        zs = range(self.n_slices) if direction > 0 else range(self.n_slices - 1, -1, -1)
        for i, z in enumerate(zs):
            live = []
            for c in chains:
                if not c.alive or (z - c.start) * direction <= 0:
                    continue
                if (z - c.bound) * direction > 0:
                    c.reason = c.bound_reason
                elif self.max_slices is not None and c.steps >= self.max_slices:
                    c.reason = "max_slices"
                else:
                    live.append(c)
            if live:
                self._step(z, live, direction)
            if self.progress is not None:
                self.progress(step0 + i + 1, 2 * self.n_slices)
        for c in chains:
            if c.alive:
                c.reason = c.bound_reason

    def _prompts(self, live: list[_Chain], shifts: np.ndarray, emb) -> dict:
        """Decoder prompts for the next slice from each chain's last mask."""
        mode = self.mode
        h, w = self.h, self.w
        kw = {}
        if mode in ("box", "box+mask"):
            boxes = np.stack([c.state.box for c in live]) + np.tile(shifts, 2)
            kw["boxes"] = np.clip(boxes, 0, [h - 1, w - 1, h - 1, w - 1])
        if mode == "box+mask":
            low = torch.stack([c.state.lowres for c in live])
            if shifts.any():
                # original pixels -> low-resolution mask pixels
                scale = self.low_res / self.img_size * np.array(emb.input_size) / np.array(
                    emb.original_size)
                low = torch.stack([
                    _shift(low[i], *np.round(shifts[i] * scale).astype(int).tolist(),
                           fill=-_MASK_PROMPT_LOGIT)
                    for i in range(len(live))
                ])
            kw["mask_inputs"] = low
        if mode == "center":
            pts = np.stack([center_from_mask(c.state.mask) for c in live])
            pts = np.clip(pts + shifts, 0, [h - 1, w - 1])
            kw.update(points=pts[:, None], labels=np.ones((len(live), 1), np.int64))
        if mode == "points":
            derived = [points_from_mask(c.state.mask) for c in live]
            p = max(len(d[0]) for d in derived)
            pts = np.zeros((len(live), p, 2))
            lab = np.full((len(live), p), -1, np.int64)
            for i, (pp, ll) in enumerate(derived):
                pts[i, : len(pp)] = np.clip(pp + shifts[i], 0, [h - 1, w - 1])
                lab[i, : len(ll)] = ll
            kw.update(points=pts, labels=lab)
        return kw

    def _decode_live(self, z: int, live: list[_Chain], shifts: np.ndarray, emb):
        """Decode the next masks of ``live`` chains on slice z: one call, and a second one for
        the chains whose object has negative points on z (added to their propagated prompts;
        kept apart so that the padding they need never changes the others' prompts)."""
        # a single centre point is ambiguous: keep the best of three candidates
        multi = self.mode == "center"
        neg = [i for i, c in enumerate(live) if z in self.objects[c.k].negatives]
        if not neg:
            return self._decode(z, multimask=multi, **self._prompts(live, shifts, emb))
        plain = [i for i in range(len(live)) if i not in set(neg)]
        out_l, out_s = [None] * len(live), [None] * len(live)
        for group, add in ((plain, False), (neg, True)):
            if not group:
                continue
            kw = self._prompts([live[i] for i in group], shifts[group], emb)
            if add:
                kw = self._add_negatives(z, [live[i] for i in group], kw)
            lg, sc = self._decode(z, multimask=multi, **kw)
            for j, i in enumerate(group):
                out_l[i], out_s[i] = lg[j], sc[j]
        return torch.stack(out_l), torch.stack(out_s)

    def _add_negatives(self, z: int, chains: list[_Chain], kw: dict) -> dict:
        """The objects' negative points on slice z appended to the chains' point prompts."""
        negs = [self.objects[c.k].negatives[z] for c in chains]
        old_p = kw.get("points")
        old_l = kw.get("labels")
        n_old = 0 if old_p is None else old_p.shape[1]
        p = n_old + max(len(x) for x in negs)
        pts = np.zeros((len(chains), p, 2))
        lab = np.full((len(chains), p), -1, np.int64)
        for i, x in enumerate(negs):
            if old_p is not None:
                pts[i, :n_old], lab[i, :n_old] = old_p[i], old_l[i]
            pts[i, n_old : n_old + len(x)] = x
            lab[i, n_old : n_old + len(x)] = 0
        kw.update(points=pts, labels=lab)
        return kw

    def _step(self, z: int, live: list[_Chain], direction: int) -> None:
        n = len(live)
        shifts = np.zeros((n, 2))
        if self.motion:
            for i, c in enumerate(live):
                if c.state.prev_centroid is not None:
                    shifts[i] = c.state.centroid - c.state.prev_centroid
        emb = self.emb[z]
        logits, scores = self._decode_live(z, live, shifts, emb)
        best = scores.argmax(1)
        idx = torch.arange(n, device=best.device)
        logits, scores = logits[idx, best], scores[idx, best]
        full = self._full(logits, emb)
        masks = self._masks(full, np.array([c.steps + 1 for c in live]))
        area, boxes, cents = _mask_stats(masks)
        prev = np.stack([c.state.mask for c in live])
        if shifts.any():
            ishift = np.round(shifts).astype(int)
            prev = np.stack([_shift(prev[i], *ishift[i].tolist(), fill=False) for i in range(n)])
        inter = np.count_nonzero((masks & prev).reshape(n, -1), axis=1)
        prev_area = np.array([c.state.area for c in live])
        union = area + np.count_nonzero(prev.reshape(n, -1), axis=1) - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        sc = scores.cpu().numpy()
        fade = {}
        con = np.full(n, np.nan)
        err = np.zeros(n)
        if self.fade_fraction is not None or self.rebound_fraction is not None:
            ref = np.array([c.ref_contrast for c in live])
            judged = np.flatnonzero(np.isfinite(ref) & (area > 0))
            if judged.size:
                con[judged], err[judged] = _contrast_and_error(self._plane(z), masks[judged])
            fade = dict(contrast=con, ref_contrast=ref, fade_fraction=self.fade_fraction,
                        peak_contrast=np.array([c.peak_contrast for c in live]),
                        low_contrast=np.array([c.low_contrast for c in live]),
                        rebound_fraction=self.rebound_fraction, contrast_error=err,
                        peak_error=np.array([c.peak_error for c in live]),
                        low_error=np.array([c.low_error for c in live]),
                        rebound_noise=self.rebound_noise)
        reasons = stop_reason(area, prev_area, iou, sc, **self.rules, **fade)
        for i, c in enumerate(live):
            if reasons[i] == "rebounded":
                c.rises += 1
                if c.rises < _REBOUND_SLICES:
                    reasons[i] = ""  # kept until the next slice confirms the rise
            elif not reasons[i]:
                c.rises = 0
            if reasons[i]:
                c.reason = str(reasons[i])
                if c.reason == "rebounded":
                    self._cut_back(c)
                continue
            if c.rises == 0 and np.isfinite(con[i]):
                c.track_contrast(float(con[i] * np.sign(c.ref_contrast)), z, float(err[i]))
            c.state = _State(masks[i], logits[i], float(area[i]), boxes[i], cents[i],
                             prev_centroid=c.state.centroid)
            c.last = z
            c.steps += 1
        ok = [i for i in range(n) if not reasons[i]]
        if ok:
            self._accept(z, [live[i].k for i in ok], full[ok], sc[ok], masks[ok], boxes[ok])
            for i in ok:
                key = (live[i].k, z)
                self.distance[key] = live[i].steps
                self.chain_of[key] = live[i]

    def _cut_back(self, c: _Chain) -> None:
        """Drop a chain's slices beyond its dimmest one (where one object ends and the next
        begins)."""
        for z in range(c.low_slice + c.direction, c.last + c.direction, c.direction):
            key = (c.k, z)
            if self.chain_of.get(key) is c:
                del self.records[key], self.distance[key], self.chain_of[key]
        c.last = c.low_slice

    # ----------------------------------------------------------------- claims
    def resolve_claims(self) -> None:
        """Cut each propagated chain at the first slice where more than ``claimed_fraction``
        of its mask lies on the mask of another object that is fewer slices from its own
        annotated slice (the one with the nearer evidence keeps the place).

        Records are visited in order of distance, so a mask only yields to masks that
        survive themselves; a cut chain loses that slice and all its later ones.
        """
        frac = self.claimed_fraction
        if frac is None:
            return
        by_slice: dict[int, list[tuple[int, int]]] = {}
        for k, z in self.records:
            by_slice.setdefault(z, []).append((k, z))
        cut: set[int] = set()
        for key in sorted(self.chain_of, key=lambda kz: (self.distance[kz], kz[1], kz[0])):
            chain = self.chain_of[key]
            k, z = key
            if id(chain) in cut:
                del self.records[key]
                continue
            rec, d = self.records[key], self.distance[key]
            inside = rec.logits > -np.inf
            area = np.count_nonzero(inside)
            hh, ww = rec.logits.shape
            for other in by_slice[z]:
                if other[0] == k or other not in self.records or self.distance[other] >= d:
                    continue
                o = self.records[other]
                oh, ow = o.logits.shape
                r0, c0 = max(rec.r0, o.r0), max(rec.c0, o.c0)
                r1, c1 = min(rec.r0 + hh, o.r0 + oh), min(rec.c0 + ww, o.c0 + ow)
                if r1 <= r0 or c1 <= c0:
                    continue
                a = inside[r0 - rec.r0 : r1 - rec.r0, c0 - rec.c0 : c1 - rec.c0]
                b = o.logits[r0 - o.r0 : r1 - o.r0, c0 - o.c0 : c1 - o.c0] > -np.inf
                if np.count_nonzero(a & b) > frac * area:
                    cut.add(id(chain))
                    chain.reason = "claimed"
                    chain.last = z - chain.direction
                    del self.records[key]
                    break

    # ----------------------------------------------------------------- composition
    def compose(self) -> np.ndarray:
        ids = [o.id for o in self.objects]
        labels = np.zeros((self.n_slices, self.h, self.w), _label_dtype(max(ids)))
        by_slice: dict[int, list[tuple[int, _Record]]] = {}
        for (k, z), rec in self.records.items():
            by_slice.setdefault(z, []).append((k, rec))
        for z, recs in by_slice.items():
            best_d = np.full((self.h, self.w), np.iinfo(np.int32).max, np.int32)
            best = np.full((self.h, self.w), -np.inf, np.float32)
            best_score = np.full((self.h, self.w), -np.inf, np.float32)
            out = labels[z]
            for k, rec in sorted(recs, key=lambda t: t[0]):  # by object id, not arrival
                hh, ww = rec.logits.shape
                win = (slice(rec.r0, rec.r0 + hh), slice(rec.c0, rec.c0 + ww))
                cur_d, cur, cur_s = best_d[win], best[win], best_score[win]
                d = self.distance.get((k, z), 0)
                same = (d == cur_d) & ((rec.logits > cur)
                                       | ((rec.logits == cur) & (rec.score > cur_s)))
                better = ((d < cur_d) | same) & (rec.logits > -np.inf)
                cur_d[better] = d
                cur[better] = rec.logits[better]
                cur_s[better] = rec.score
                out[win][better] = ids[k]
        return labels


def segment_volume(
    emb,
    prompts: Mapping,
    *,
    axis_kind: str = "z",
    mode: str = "auto",
    iou_threshold: float = 0.5,
    area_factor: float = 2.5,
    min_area: int = 5,
    min_score: float = 0.0,
    fade_fraction: float | str | None = "auto",
    claimed_fraction: float | None = 0.5,
    rebound_fraction: float | str | None = "auto",
    rebound_noise: float | None = _REBOUND_NOISE,
    max_slices: int | None = None,
    exclusive: bool = True,
    motion: bool | None = None,
    predictor=None,
    progress: Callable[[int, int], None] | None = None,
) -> VolumeResult:
    """Segment objects through a stack from prompts on one or more slices.

    Each object is segmented on its annotated slices (a single click decodes three candidate
    masks and keeps the best scoring), then propagated up and down: the next slice is
    prompted from the previous slice's mask. Between two annotated slices of the same object
    the gap is filled from both ends, meeting in the middle. On each slice, all live objects
    are decoded in one batched decoder call. Where masks overlap in the labels, a drawn mask
    wins, then a mask decoded from the user's prompts on that slice, then propagated masks,
    the one propagated over fewer slices first; among masks of one rank the highest logit
    wins.

    Parameters
    ----------
    emb : StackEmbeddings
        Embeddings of a (Z, Y, X) stack along the propagation axis (:func:`napari_sam.embed`);
        anything with ``.shape`` (Z, Y, X), ``[z] -> ImageEmbedding`` and ``.predictor``.
    prompts : mapping
        ``{object_id: [SlicePrompt | dict, ...]}`` (one prompt or a list); ids are positive
        integers and become the label values. See :class:`SlicePrompt` and
        :func:`prompts_from_labels`. A slice with only negative points of an object is no
        annotated slice: the points are added to the prompt propagated onto that slice.
    axis_kind : {"z", "t"}
        What the stack axis is; picks defaults for ``mode`` and ``motion``.
    mode : {"auto", "box", "box+mask", "points", "center"}
        How the next slice is prompted from the previous mask: its box; its box plus its
        low-resolution logits as a mask prompt; distance-transform maxima as positives with
        negatives just outside the mask; a single centre point (best of three candidates).
        ``"auto"`` is "box+mask" for both "z" and "t" (the best mode on synthetic nuclei,
        tuning seeds; see "Volume propagation" in docs/benchmarks.md).
    iou_threshold : float
        Stop when a new mask's IoU with the previous slice's mask is below this.
    area_factor : float
        Stop when the area grows or shrinks by more than this factor from one slice to the next.
    min_area : int
        Stop when the new mask has fewer pixels ("vanished").
    min_score : float
        Stop when the predicted IoU is below this (0 disables).
    fade_fraction : float, "auto" or None
        Stop where the object fades: when its contrast (:func:`mask_contrast`: mean inside
        the mask minus the mean of a 3-pixel ring around it) falls below this fraction of its
        strongest contrast on its annotated slices, in the same sign (bright or dark objects
        alike); a slice as contrasted as the annotated slice propagation started from never
        counts as faded (so an object annotated on a dim end slice keeps its like neighbours). Objects fainter than 2 % of the stack's intensity range there are
        not tested. Needs the images (``emb.stack``, as :func:`napari_sam.embed` keeps);
        None disables. "auto": 0.5 for "z" (propagated masks otherwise run on past the ends
        of blurred objects), None for "t" (objects that bleach over time would stop).
    rebound_fraction : float, "auto" or None
        Stop where the object's contrast (as for ``fade_fraction``), having fallen from its
        highest value along the chain by more than this fraction of the reference contrast,
        rises again by more than the same amount on two slices in a row: the mask has run
        from the end of its object into another one above or below it (a nucleus's contrast
        rises to its middle and falls to its ends once). The run is cut back to its dimmest
        slice. Catches what the claimed rule cannot: objects nobody annotated. Needs the
        images, as the fade rule does; None disables. "auto": 0.05 for "z", None for "t"
        (chosen on validation volumes: docs/benchmarks.md, "Stopping rules").
    rebound_noise : float or None
        The dip and the rise of the rebound rule must also each exceed this many standard
        errors of the difference between the two contrasts compared, each contrast's error
        measured from the spread of the pixels inside the mask and in its ring
        (sqrt(var_in / n_in + var_ring / n_ring)): on a noisy object a wobble of its contrast
        along z is not taken for another object. None: the fraction alone.
    claimed_fraction : float or None
        After propagation, cut an object's run at the first slice where more than this
        fraction of its mask lies on another object's mask that is fewer slices away from
        its own annotated slice (the nearer evidence keeps the place); None disables.
    max_slices : int, optional
        Propagate at most this many slices from each annotated slice.
    exclusive : bool
        Objects decoded together on a slice do not share pixels when their next prompts are
        derived: a contested pixel stays with the object propagated over fewer slices, then
        with the highest logit there (the rule used for the final labels), so one object's
        leak does not widen its next prompt into a neighbour.
    motion : bool, optional
        Shift the prompts (and the previous mask used for the IoU rule) by the object's
        centroid motion between the last two slices; default True for "t", False for "z".
    predictor : Predictor, optional
        Decoder to use; default ``emb.predictor``.
    progress : callable(done, total), optional
        Called after each slice of the two sweeps (total = 2 Z).

    Returns
    -------
    VolumeResult
        ``labels`` (Z, Y, X), per-slice ``scores``, ``stop_reasons`` {"up", "down"} per object,
        ``slice_range`` per object; ``np.asarray(result)`` is the label array.

    Raises
    ------
    ValueError
        Prompts outside the slices, slice indices out of range, an object without prompts,
        masks whose shape differs from the embedded stack, unknown modes.

    Examples
    --------
    >>> emb = ns.embed(volume, ns.load_model("demo"))
    >>> res = ns.segment_volume(emb, {1: [SlicePrompt(20, points=[[64, 80]])],
    ...                               2: [{"slice": 31, "box": [10, 10, 40, 50]},
    ...                                   {"slice": 40, "stop": True}]})
    >>> res.labels.shape, res.stop_reasons[2]
    ((64, 256, 256), {'up': 'stop_marker', 'down': 'iou'})
    """
    if axis_kind not in AXIS_KINDS:
        raise ValueError(f"axis_kind must be one of {AXIS_KINDS}, got {axis_kind!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        mode = _AUTO_MODE[axis_kind]
    if motion is None:
        motion = axis_kind == "t"
    if isinstance(fade_fraction, str):
        if fade_fraction != "auto":
            raise ValueError(f"fade_fraction must be a number in [0, 1], 'auto' or None, got "
                             f"{fade_fraction!r}")
        fade_fraction = _AUTO_FADE[axis_kind]
    if isinstance(rebound_fraction, str):
        if rebound_fraction != "auto":
            raise ValueError(f"rebound_fraction must be a number in [0, 1], 'auto' or None, "
                             f"got {rebound_fraction!r}")
        rebound_fraction = _AUTO_REBOUND[axis_kind]
    _check_embeddings(emb, predictor)
    shape = tuple(int(s) for s in getattr(emb, "shape", ()))
    if len(shape) != 3:
        raise ValueError(
            f"emb must be the embeddings of a (Z, Y, X) stack (from napari_sam.embed), got "
            f"shape {getattr(emb, 'shape', None)}"
        )
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if area_factor < 1:
        raise ValueError(f"area_factor must be >= 1, got {area_factor}")
    for name, value in (("fade_fraction", fade_fraction), ("claimed_fraction", claimed_fraction),
                        ("rebound_fraction", rebound_fraction)):
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"{name} must be in [0, 1] or None (to disable the rule), got {value}")
    if max_slices is not None and max_slices < 0:
        raise ValueError(f"max_slices must be >= 0, got {max_slices}")
    objects = _normalize_prompts(prompts, shape)
    pred = predictor if predictor is not None else getattr(emb, "predictor", None)
    if pred is None or not hasattr(emb, "__getitem__"):
        raise TypeError(
            f"segment_volume needs the stack's embeddings (napari_sam.embed(stack, model)), got "
            f"a {type(emb).__name__} without per-slice embeddings or a predictor"
        )
    prop = _Propagator(emb, objects, predictor=pred, mode=mode, motion=bool(motion),
                       min_area=min_area, iou_threshold=iou_threshold, area_factor=area_factor,
                       min_score=min_score, max_slices=max_slices, exclusive=exclusive,
                       progress=progress, fade_fraction=fade_fraction,
                       claimed_fraction=claimed_fraction, rebound_fraction=rebound_fraction,
                       rebound_noise=rebound_noise)
    prop.annotate()
    up, down = prop.make_chains()
    prop.sweep(up, +1, 0)
    prop.sweep(down, -1, shape[0])
    prop.resolve_claims()
    labels = prop.compose()

    ids = [o.id for o in objects]
    # what the labels hold: an object that lost a slice's pixels to others is not on it
    present: dict[int, set[int]] = {i: set() for i in ids}
    for (k, z), rec in prop.records.items():  # within each mask's window, as compose wrote it
        hh, ww = rec.logits.shape
        if (labels[z, rec.r0 : rec.r0 + hh, rec.c0 : rec.c0 + ww] == ids[k]).any():
            present[ids[k]].add(z)
    scores: dict[int, dict[int, float]] = {i: {} for i in ids if present[i]}
    for (k, z), rec in sorted(prop.records.items(), key=lambda t: t[0][1]):
        if z in present[ids[k]]:
            scores[ids[k]][z] = rec.score
    slice_range = {i: (min(z), max(z)) for i, z in present.items() if z}
    reasons: dict[int, dict[str, str]] = {}
    lost: dict[int, str] = {}
    for k, obj in enumerate(objects):
        if not present[obj.id]:
            lost[obj.id] = (
                "its masks lost every pixel to other objects (their prompts segment the same "
                "thing); give it prompts on its own object"
            )
            continue
        lo, hi = min(obj.annotations), max(obj.annotations)
        r_up = next(c.reason for c in up if c.k == k and c.start == hi)
        r_down = next(c.reason for c in down if c.k == k and c.start == lo)
        reasons[obj.id] = {"up": r_up, "down": r_down}
    if lost:
        import warnings

        warnings.warn(
            f"objects {sorted(lost)} are not in the labels: their masks lost every pixel to "
            "other objects (see VolumeResult.lost)", stacklevel=2,
        )
    chains = [
        {"id": ids[c.k], "direction": "up" if c.direction > 0 else "down", "start": c.start,
         "last": c.last, "reason": c.reason}
        for c in up + down
    ]
    return VolumeResult(labels, scores, reasons, slice_range, chains, prop.decoder_calls,
                        prop.calls_per_slice, lost)
