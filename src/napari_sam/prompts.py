"""Prompt primitives: the one home of what every decoding path does with point, box and mask
prompts (the predictor, volume propagation and the annotation decoder use these).

* Checking: :func:`check_points`, :func:`check_box` and :func:`check_mask_input` validate one
  object's prompts against an image of size (rows, cols) and raise errors that say what to
  give instead (:meth:`napari_sam.Predictor.predict` uses them as they are); the predicates
  beneath them (:func:`points_outside`, :func:`box_problem`, :func:`clip_box`, ...) serve callers that word their errors for their own surface
  (:mod:`napari_sam.volume` names the object and the slice).
* Frames: :func:`prompt_tensors` maps (row, col) pixel prompts into the model input frame
  (SAM's (x, y), through :mod:`napari_sam.preprocess`, the one place that swaps the axes);
  :func:`low_res_scale` maps image pixels onto the low-resolution mask grid;
  :func:`upsample_logits` takes low-resolution logits back to image pixels and
  :func:`mask_to_logits` a binary image mask to low-resolution logits.
* Batching: prompts of many objects are decoded in as few decoder calls as their kinds allow:
  :class:`PromptKind` says which prompts an object has, :func:`group_by_kind` groups objects of
  one kind, :func:`stack_prompts` and :func:`pad_points` make the (N, ...) arrays of one call.

Coordinates are napari order: points (row, col), boxes (row0, col0, row1, col1), in pixels of
the image (a slice of a stack).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import numpy as np

from napari_sam.preprocess import ResizeSpec, boxes_to_model, points_to_model

if TYPE_CHECKING:  # torch is imported where tensors are made: the dock opens without it
    import torch

__all__ = [
    "MASK_PROMPT_LOGIT",
    "MIN_BOX_SIDE",
    "PromptKind",
    "box_is_inverted",
    "box_is_outside",
    "box_problem",
    "check_box",
    "check_mask_input",
    "check_points",
    "clip_box",
    "group_by_kind",
    "labels_are_binary",
    "low_res_scale",
    "mask_to_logits",
    "numeric",
    "ordered_box",
    "pad_points",
    "plain",
    "point_rows",
    "points_outside",
    "prompt_tensors",
    "stack_prompts",
    "upsample_logits",
    "warn_mask_alone_empty",
    "warn_only_negative",
]

#: Boxes with a side shorter than this (image pixels) are not prompts: a plain click on
#: napari's shapes layer makes a rectangle of about 1.5 px, which would segment junk (the
#: dock drops them; a prompts file with one is refused).
MIN_BOX_SIDE = 3.0

#: magnitude of the low-resolution logits made from a binary mask (:func:`mask_to_logits`)
MASK_PROMPT_LOGIT = 10.0

T = TypeVar("T")


# ------------------------------------------------------------------------------ messages
def _is_tensor(value) -> bool:
    """Whether ``value`` is a torch tensor (never, while torch is not imported)."""
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)  # (None: half-imported)
    return tensor is not None and isinstance(value, tensor)


def plain(values) -> tuple:
    """Numbers as a plain tuple for messages: (20.0, 5.0), not (np.float64(20.0), ...)."""
    return tuple(v.item() if hasattr(v, "item") else v for v in np.asarray(values).reshape(-1))


def numeric(value, name: str, expected: str) -> np.ndarray:
    """``value`` as a float64 array, or a ValueError / TypeError naming ``name``.

    Parameters
    ----------
    value : array-like or torch.Tensor
    name : str
        The argument's name, for the message.
    expected : str
        What the argument should be, for the message (e.g. "(P, 2) array of (row, col)").
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a {expected}, got the string {value!r:.60}")
    if _is_tensor(value):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a {expected}; got {type(value).__name__} {value!r:.80} that is not "
            "a numeric array"
        ) from None
    return arr


# ---------------------------------------------------------------------------- predicates
def point_rows(points: np.ndarray) -> np.ndarray:
    """A single (2,) point as (1, 2); other shapes unchanged."""
    return points[None] if points.ndim == 1 and points.size == 2 else points


def points_outside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(P,) bool: which (P, 2) (row, col) points lie outside an image of ``size`` (rows,
    cols); a point may sit up to half a pixel beyond the outer pixel centres."""
    h, w = size
    outside = (points[:, 0] < -0.5) | (points[:, 0] > h - 0.5)
    outside |= (points[:, 1] < -0.5) | (points[:, 1] > w - 0.5)
    return outside


def labels_are_binary(labels: np.ndarray) -> bool:
    """Whether every point label is 1 (positive) or 0 (negative)."""
    return bool(np.isin(labels, (0, 1)).all())


def box_is_inverted(box: np.ndarray) -> bool:
    """Whether a (row0, col0, row1, col1) box has row1 < row0 or col1 < col0."""
    return bool(box[2] < box[0] or box[3] < box[1])


def box_is_outside(box: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether a (row0, col0, row1, col1) box misses an image of ``size`` (rows, cols)."""
    h, w = size
    return bool(box[2] < 0 or box[3] < 0 or box[0] > h - 1 or box[1] > w - 1)


def box_problem(box: np.ndarray, size: tuple[int, int]) -> str | None:
    """What is wrong with a box, checked in this order: "shape" (not 4 finite numbers),
    "inverted" (:func:`box_is_inverted`), "outside" (:func:`box_is_outside`); None: nothing.
    """
    if box.shape != (4,) or not np.isfinite(box).all():
        return "shape"
    if box_is_inverted(box):
        return "inverted"
    if box_is_outside(box, size):
        return "outside"
    return None


def clip_box(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (4,) (row0, col0, row1, col1) box clipped to the pixels of an image of ``size``."""
    h, w = size
    return np.clip(box, 0, [h - 1, w - 1, h - 1, w - 1])


def ordered_box(box: np.ndarray) -> np.ndarray:
    """The (4,) box with its corners swapped where it is inverted."""
    return np.r_[np.minimum(box[:2], box[2:]), np.maximum(box[:2], box[2:])]


# ---------------------------------------------------------------------------- checking
# check_box's message per box_problem
_BOX_MESSAGES = {
    "shape": "box must be 4 finite numbers (row0, col0, row1, col1), got {box}",
    "inverted": "box {box} is inverted: need row1 >= row0 and col1 >= col0 "
                "(row0, col0, row1, col1); did you mean {fix}?",
    "outside": "box {box} lies outside the image of shape {size}; boxes are "
               "(row0, col0, row1, col1) in pixels (napari order)",
}


def warn_only_negative(labels, box, mask_input, stacklevel: int = 3) -> None:
    """Warn (``UserWarning``) when checked ``labels`` ((P,) 0 / 1, or None) are all negative
    and no box or mask says where the object is: the masks are then likely empty or
    arbitrary."""
    if labels is not None and not np.asarray(labels).any() and box is None and (
            mask_input is None):
        warnings.warn("only negative points (labels 0): they say where the object is not, "
                      "and nothing says where it is, so the masks are likely empty or "
                      "arbitrary; add a positive point or a box", UserWarning,
                      stacklevel=stacklevel)


def warn_mask_alone_empty(masks, points, boxes, stacklevel: int = 3) -> None:
    """Warn (``UserWarning``) when a mask prompt alone (no ``points``, no ``boxes``: None)
    gave only empty ``masks``: SAM's decoder takes a mask prompt as a hint to refine what
    points or a box select, and alone it often selects nothing (the demo model: always)."""
    if points is None and boxes is None and not np.asarray(masks).any():
        warnings.warn("a mask prompt alone gave only empty masks: give a point inside the "
                      "object (or a box) with it; mask_input refines what points and boxes "
                      "select", UserWarning, stacklevel=stacklevel)


def check_points(points, labels, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Validated point prompts of one object.

    Parameters
    ----------
    points : array-like (P, 2) or (2,)
        (row, col) pixel coordinates.
    labels : array-like (P,) or None
        1 positive, 0 negative; None: all positive.
    size : (int, int)
        (rows, cols) of the image.

    Returns
    -------
    points : numpy.ndarray (P, 2) float64
    labels : numpy.ndarray (P,) int64

    Raises
    ------
    ValueError, TypeError
        Saying what is wrong and what to give instead.
    """
    pts = point_rows(numeric(points, "points", "(P, 2) array of (row, col) pairs such as [[30, 40]]"))
    if pts.ndim != 2 or pts.shape[-1] != 2:
        raise ValueError(
            f"points must have shape (P, 2) as (row, col) pairs such as [[30, 40]], got "
            f"shape {pts.shape}"
        )
    if len(pts) == 0:
        raise ValueError(
            "points is empty (shape (0, 2)); give at least one (row, col) point, or "
            "points=None to prompt with a box or mask_input only"
        )
    lab = _check_labels(labels, len(pts))
    h, w = size
    finite = np.isfinite(pts).all(1)
    if not finite.all():
        raise ValueError(
            f"point (row, col) = {plain(pts[~finite][0])} is not finite; give pixel "
            "coordinates"
        )
    outside = points_outside(pts, size)
    if outside.any():
        raise ValueError(
            f"point (row, col) = {plain(pts[outside][0])} is outside the image of shape "
            f"{size}; points are (row, col) pixel coordinates (napari order, not x, y), "
            f"rows in 0..{h - 1} and cols in 0..{w - 1}"
        )
    return pts, lab


def _check_labels(labels, n_points: int) -> np.ndarray:
    if labels is None:
        return np.ones(n_points, np.int64)
    lab = numeric(labels, "labels", "1 (positive) or 0 (negative) per point").reshape(-1)
    if len(lab) != n_points:
        raise ValueError(
            f"got {n_points} points but {len(lab)} labels; give one label per point "
            "(1 positive, 0 negative)"
        )
    if not labels_are_binary(lab):
        raise ValueError(
            f"labels must be 1 (positive) or 0 (negative), got {plain(np.unique(lab))}"
        )
    return lab.astype(np.int64)


def check_box(box, size: tuple[int, int]) -> np.ndarray:
    """A validated (row0, col0, row1, col1) box, clipped to the image.

    Parameters
    ----------
    box : array-like (4,)
    size : (int, int)
        (rows, cols) of the image.

    Returns
    -------
    numpy.ndarray (4,) float64
        Partly outside boxes are clipped to the image's pixels.
    """
    b = numeric(box, "box", "4 numbers (row0, col0, row1, col1)").reshape(-1)
    if b.size > 4 and b.size % 4 == 0:
        raise ValueError(f"box must be one box, 4 numbers (row0, col0, row1, col1), got "
                         f"{b.size // 4} boxes; for several objects at once use "
                         "Predictor.predict_batch(boxes=...), one mask per box")
    problem = box_problem(b, size)
    if problem is not None:
        fix = plain(ordered_box(b)) if problem == "inverted" else None
        raise ValueError(_BOX_MESSAGES[problem].format(box=plain(b), size=size, fix=fix))
    return clip_box(b, size)


def check_mask_input(mask_input, low_res_size: int) -> np.ndarray:
    """A validated low-resolution mask prompt.

    Parameters
    ----------
    mask_input : array-like (4E, 4E) or (1, 4E, 4E)
        Low-resolution logits, e.g. ``logits[i]`` of a previous predict.
    low_res_size : int
        4E, the side of the model's low-resolution logits.

    Returns
    -------
    numpy.ndarray (4E, 4E) float32
    """
    n = low_res_size
    if _is_tensor(mask_input):
        mask_input = mask_input.detach().cpu().numpy()
    if isinstance(mask_input, np.ndarray) and mask_input.dtype.kind in "biu":  # never logits
        raise ValueError(
            f"mask_input is a {mask_input.dtype} mask, but it takes ({n}, {n}) low-resolution "
            "logits (such as logits[i] of a previous predict); to prompt with a (Y, X) mask "
            "of the image pass predictor.mask_prompt(mask)")
    masks = numeric(mask_input, "mask_input", f"({n}, {n}) low-resolution logits").astype(
        np.float32)
    if masks.ndim == 3 and masks.shape[0] == 1:
        masks = masks[0]
    if masks.shape != (n, n):
        raise ValueError(
            f"mask_input must have shape ({n}, {n}) (low-resolution logits, such as "
            f"logits[i] of a previous predict), got {masks.shape}; to prompt with a "
            "(Y, X) mask of the image pass predictor.mask_prompt(mask)"
        )
    if not np.isfinite(masks).all():
        raise ValueError(
            f"mask_input has {int((~np.isfinite(masks)).sum())} NaN or inf values; give "
            "finite logits (such as logits[i] of a previous predict)"
        )
    return masks


# ------------------------------------------------------------------------------ frames
def _as_numpy(value) -> np.ndarray:
    if _is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def prompt_tensors(points, labels, boxes, mask_inputs, spec: ResizeSpec, device):
    """Batched prompts of N objects, in pixels of the image, as the decoder's tensors.

    Parameters
    ----------
    points : array-like or tensor (N, P, 2) or None
        (row, col) in original pixels.
    labels : array-like or tensor (N, P) or None
        1 positive, 0 negative, -1 padding.
    boxes : array-like or tensor (N, 4) or None
        (row0, col0, row1, col1).
    mask_inputs : array-like or tensor (N, 4E, 4E) or (N, 1, 4E, 4E) or None
        Low-resolution logits.
    spec : ResizeSpec
        How the image maps onto the model input.
    device : torch.device

    Returns
    -------
    points : (coords (N, P, 2) float32 (x, y) in model input pixels, labels (N, P) int64) or None
    boxes : torch.Tensor (N, 4) float32 (x0, y0, x1, y1) or None
    masks : torch.Tensor (N, 1, 4E, 4E) float32 or None
    n : int or None
        N; None when no prompt was given.
    """
    import torch

    pt = bx = mk = None
    n = None
    if points is not None:
        coords = torch.as_tensor(points_to_model(_as_numpy(points), spec), device=device)
        lab = torch.as_tensor(_as_numpy(labels), device=device, dtype=torch.int64)
        pt = (coords, lab)
        n = coords.shape[0]
    if boxes is not None:
        bx = torch.as_tensor(boxes_to_model(_as_numpy(boxes), spec), device=device)
        n = bx.shape[0]
    if mask_inputs is not None:
        mk = torch.as_tensor(mask_inputs, device=device, dtype=torch.float32)
        if mk.ndim == 3:
            mk = mk[:, None]
        n = mk.shape[0]
    return pt, bx, mk, n


def low_res_scale(embedding, img_size: int, low_res_size: int) -> np.ndarray:
    """(2,) float64: low-resolution mask pixels per image pixel along (rows, cols).

    Parameters
    ----------
    embedding : ImageEmbedding
        Anything with ``original_size`` and ``input_size`` (rows, cols).
    img_size, low_res_size : int
        Model input side S and low-resolution side 4E.
    """
    return low_res_size / img_size * np.array(embedding.input_size) / np.array(
        embedding.original_size)


def upsample_logits(logits: torch.Tensor, embedding, img_size: int) -> torch.Tensor:
    """Low-resolution logits (..., 4E, 4E) -> float32 logits (..., H, W) at image size.

    Same steps as Meta's ``Sam.postprocess_masks``: bilinear to the model input size, crop
    the padding, bilinear to the original size (each skipped where the size is already
    right: bilinear to the same size is the identity). Threshold the result for masks.

    Parameters
    ----------
    logits : torch.Tensor (..., 4E, 4E)
    embedding : ImageEmbedding
        Anything with ``original_size`` and ``input_size`` (rows, cols).
    img_size : int
        The model's square input side S.
    """
    import torch.nn.functional as F

    lead = logits.shape[:-2]
    x = logits.reshape(-1, 1, *logits.shape[-2:]).float()
    if tuple(x.shape[-2:]) != (img_size, img_size):
        x = F.interpolate(x, (img_size, img_size), mode="bilinear", align_corners=False)
    h, w = embedding.input_size
    x = x[..., :h, :w]
    if tuple(embedding.original_size) != (h, w):
        x = F.interpolate(x, tuple(embedding.original_size), mode="bilinear", align_corners=False)
    return x.reshape(*lead, *embedding.original_size)


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
    import torch
    import torch.nn.functional as F

    m = torch.as_tensor(np.asarray(mask) if not _is_tensor(mask) else mask)
    lead = m.shape[:-2]
    x = m.reshape(-1, 1, *m.shape[-2:]).float()
    h, w = input_size
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, (h, w), mode="bilinear", align_corners=False)
    x = F.pad(x, (0, img_size - w, 0, img_size - h))
    x = F.interpolate(x, (low_res_size, low_res_size), mode="area")
    x = (x * 2 - 1) * MASK_PROMPT_LOGIT
    return x.reshape(*lead, low_res_size, low_res_size)


# ------------------------------------------------------------------------------ batching
class PromptKind(NamedTuple):
    """Which prompts one object has; objects of one kind are decoded in one call."""

    points: bool
    box: bool
    mask: bool
    multimask: bool  # three candidates: only for an ambiguous single click

    @classmethod
    def of(cls, n_points: int, has_box: bool, has_mask: bool) -> PromptKind:
        """The kind of an object with ``n_points`` points, a box or not, a mask or not.

        A single click (one point, no box, no mask) is ambiguous: it asks for three
        candidate masks.
        """
        single_click = n_points == 1 and not has_box and not has_mask
        return cls(n_points > 0, bool(has_box), bool(has_mask), single_click)


def group_by_kind(entries: Iterable[tuple[PromptKind, T]]) -> dict[PromptKind, list[T]]:
    """``(kind, item)`` pairs grouped by kind, in order of first appearance, items in order."""
    groups: dict[PromptKind, list[T]] = {}
    for kind, item in entries:
        groups.setdefault(kind, []).append(item)
    return groups


def pad_points(
    points: Sequence[np.ndarray], labels: Sequence[np.ndarray], dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts of N objects as one batch.

    Parameters
    ----------
    points : sequence of N array-like (P_i, 2)
        (row, col) of each object.
    labels : sequence of N array-like (P_i,)
    dtype : numpy dtype
        Of the returned points.

    Returns
    -------
    points : numpy.ndarray (N, max P_i, 2) ``dtype``
        Zero where padded.
    labels : numpy.ndarray (N, max P_i) int64
        -1 where padded (the decoder ignores those points).
    """
    p = max(len(x) for x in points)
    pts = np.zeros((len(points), p, 2), dtype)
    lab = np.full((len(points), p), -1, np.int64)
    for i, (x, lb) in enumerate(zip(points, labels)):
        pts[i, : len(x)] = x
        lab[i, : len(x)] = lb
    return pts, lab


def stack_prompts(kind: PromptKind, points, labels, boxes, dtype=np.float64) -> dict:
    """Point and box prompts of N objects of one kind as ``predict_batch`` keyword arguments.

    Parameters
    ----------
    kind : PromptKind
        Which of ``points`` / ``boxes`` are used.
    points, labels : sequence of N array-like (P_i, 2) and (P_i,)
        See :func:`pad_points`.
    boxes : sequence of N array-like (4,)
        (row0, col0, row1, col1).
    dtype : numpy dtype
        Of the returned points and boxes.

    Returns
    -------
    dict
        ``points`` (N, P, 2) and ``labels`` (N, P) where ``kind.points``, ``boxes`` (N, 4)
        where ``kind.box``. Mask prompts are the caller's (they come as logits or masks).
    """
    kw = {}
    if kind.points:
        kw["points"], kw["labels"] = pad_points(points, labels, dtype)
    if kind.box:
        kw["boxes"] = np.stack(boxes).astype(dtype, copy=False)
    return kw
