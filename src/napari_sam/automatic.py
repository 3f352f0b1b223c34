"""Segment everything: automatic instance segmentation of images and stacks.

``segment_everything(image_or_embeddings, model)`` prompts a regular grid of points, keeps the
masks the model is confident about, removes duplicates and returns a label image without
overlaps plus one record per object. It follows Meta's ``SamAutomaticMaskGenerator`` (same
parameter names, defaults and filtering rules, and on identical weights the same masks) but is
organised for speed:

* **Decoding.** SAM's mask decoder is rewritten for the case "many single-point prompts on one
  image" (:class:`GridDecoder`). Every prompt-independent product (the image tokens'
  projections in every layer) is computed once per image; what a prompt adds to the image
  tokens is a low-rank term (attention of every pixel over a handful of tokens), so the image
  tokens of a prompt are carried as ``alpha * shared + L @ R + c`` and layer norms are applied
  in closed form. The algebra is exact: only floating-point rounding differs from the plain
  decoder. The expensive upscaling head runs only for prompts with at least one candidate
  above ``pred_iou_thresh`` (the IoU head does not need it).
* **Filtering on low-resolution logits.** Meta upsamples every candidate to full resolution to
  compute its stability score and box. Bilinear upsampling is a convex combination of at most
  3x3 low-resolution logits per output pixel, so whole blocks of output pixels are known to be
  above or below a threshold from block minima and maxima; only blocks that straddle a
  threshold are evaluated exactly (:func:`mask_statistics`). Counts, stability scores and
  boxes equal the full-resolution ones (up to float rounding at the threshold).
* **Upsampling only what is kept.** Only masks that survive NMS are upsampled, in chunks.
* Boxes and NMS (:func:`batched_nms`, our own, no torchvision) are tensor operations; there is
  no per-mask Python loop in the hot path (the only per-mask loops are the optional
  ``min_mask_region_area`` clean-up and copying the final masks into records).

Overlaps. The label image is painted in order of decreasing mask area, so where masks overlap
the smaller one stays on top: every pixel gets the id of the smallest kept mask covering it.
A mask left with less than ``min_visible_fraction`` (default half) of its area visible is
dropped and the others painted again, so the remains of masks that mostly duplicate smaller
ones do not become fragment objects; a dropped mask, or one left with no visible pixel, gets
no id (it is listed in ``AutomaticResult.hidden``).
Ids are ``1..N`` in painting order.

Stacks. A (Z, Y, X) stack (or :class:`~napari_sam.embeddings.StackEmbeddings`) is segmented
slice by slice, reusing the stack embeddings, then 2D objects are linked across slices by
overlap into 3D objects (:func:`link_slices`): ``link_iou`` and gap closing over up to
``max_gap`` missing slices. With ``propagate`` (the default) every linked object is then
segmented again by :func:`napari_sam.segment_volume` from its 2D mask on the slice where it is
largest, so objects that the grid found on only some of their slices get their full extent.
Objects spanning fewer than ``min_z_extent`` slices are dropped last.

Coordinates are napari order: points (row, col), boxes (row0, col0, row1, col1) with the end
exclusive (slices ``[row0:row1, col0:col1]``).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "AutomaticResult",
    "GridDecoder",
    "MaskRecord",
    "ObjectRecord",
    "batched_nms",
    "box_iou",
    "build_point_grid",
    "generate_crop_boxes",
    "link_slices",
    "mask_statistics",
    "masks_to_boxes",
    "match_by_iou",
    "recommended_thresholds",
    "remove_small_regions",
    "segment_everything",
    "stability_score",
]


# ============================================================================ results


@dataclass
class MaskRecord:
    """One object of a 2D segmentation (or one slice of a 3D object).

    Attributes
    ----------
    id : int
        Label value in :attr:`AutomaticResult.labels` (0 while not painted).
    bbox : (int, int, int, int)
        (row0, col0, row1, col1) of the mask, end exclusive.
    area : int
        Pixels of the mask (before overlaps with other masks are resolved).
    visible_area : int
        Pixels carrying this id in the label image.
    predicted_iou : float
        The model's own quality estimate (filtered by ``pred_iou_thresh``).
    stability_score : float
        IoU of the masks thresholded at ``+/- stability_score_offset``.
    point_coords : (float, float)
        (row, col) of the prompt that produced the mask, in image pixels.
    crop_box : (int, int, int, int)
        (row0, col0, row1, col1) of the image crop it was predicted in.
    segmentation : numpy.ndarray of bool or None
        The full mask cropped to ``bbox`` (before overlap resolution).
    z : int or None
        Slice index for masks of a stack.
    """

    id: int
    bbox: tuple[int, int, int, int]
    area: int
    predicted_iou: float
    stability_score: float
    point_coords: tuple[float, float]
    crop_box: tuple[int, int, int, int]
    segmentation: np.ndarray | None = field(default=None, repr=False)
    visible_area: int = 0
    z: int | None = None

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The full (Y, X) boolean mask."""
        out = np.zeros(shape, bool)
        r0, c0, r1, c1 = self.bbox
        if self.segmentation is not None:
            out[r0:r1, c0:c1] = self.segmentation
        return out


@dataclass
class ObjectRecord:
    """One 3D object of a stack segmentation.

    Attributes
    ----------
    id : int
        Label value in the (Z, Y, X) label image.
    bbox : (int, int, int, int, int, int)
        (z0, row0, col0, z1, row1, col1), ends exclusive.
    volume : int
        Voxels with this id.
    z_extent : int
        ``z1 - z0``.
    predicted_iou : float
        Mean predicted IoU over the object's slices: of the propagated masks, and of the 2D
        detection on the slice propagation started from (``propagate=True``); of the linked
        2D masks otherwise.
    stability_score : float
        Mean over the linked 2D masks.
    slices : list of MaskRecord
        The 2D masks that were linked into this object (``z`` set).
    """

    id: int
    bbox: tuple[int, int, int, int, int, int]
    volume: int
    z_extent: int
    predicted_iou: float
    stability_score: float
    slices: list[MaskRecord] = field(default_factory=list, repr=False)


@dataclass
class AutomaticResult:
    """What :func:`segment_everything` returns.

    Attributes
    ----------
    labels : numpy.ndarray int32
        (Y, X) or (Z, Y, X); 0 is background, objects are ``1..N`` without overlaps.
    records : list of MaskRecord (2D) or ObjectRecord (3D)
        ``records[i].id == i + 1``.
    stats : dict
        Counts along the pipeline (points decoded, candidates after each filter, ...).
    hidden : list of MaskRecord
        2D only: masks the generator kept that smaller masks cover entirely, or all but
        less than ``min_visible_fraction`` of their area, so they have no pixel in ``labels``
        (``id`` 0). ``records + hidden`` is the full set Meta's generator would return.
    """

    labels: np.ndarray
    records: list
    stats: dict = field(default_factory=dict)
    hidden: list = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def n_objects(self) -> int:
        return len(self.records)


# ============================================================================ parameters


@dataclass(frozen=True)
class _Params:
    points_per_side: int | None
    points_per_batch: int | None
    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float
    box_nms_thresh: float
    crop_n_layers: int
    crop_nms_thresh: float
    crop_overlap_ratio: float
    crop_n_points_downscale_factor: int
    min_mask_region_area: int
    point_grids: tuple | None
    fast_decoder: bool
    min_visible_fraction: float
    fill_gaps: bool = True

    def grids(self, image_size=None) -> list[np.ndarray]:
        """One (n, 2) grid of (row, col) in [0, 1] per crop layer; ``points_per_side="auto"``
        is resolved for ``image_size`` (see :func:`auto_points_per_side`)."""
        if self.point_grids is not None:
            return [np.asarray(g, np.float64) for g in self.point_grids]
        n = self.points_per_side
        if n == "auto":
            if image_size is None:
                raise ValueError("points_per_side='auto' needs the image size")
            n = auto_points_per_side(image_size)
        return [
            build_point_grid(max(1, int(n / (self.crop_n_points_downscale_factor**i))))
            for i in range(self.crop_n_layers + 1)
        ]


#: Grid spacing of ``points_per_side="auto"`` in image pixels, and its bounds per side.
AUTO_GRID_SPACING = 16
AUTO_GRID_SIDE = (8, 32)


def auto_points_per_side(image_size) -> int:
    """Points per side of the grid for an image of ``image_size`` (rows, cols).

    One point every :data:`AUTO_GRID_SPACING` pixels along the short side, between
    :data:`AUTO_GRID_SIDE` points. A fixed 32 x 32 grid samples a 128 px slice every 4
    pixels (16 times the prompts a 16-pixel object needs); the second pass of
    ``fill_gaps`` prompts what the grid left uncovered.
    """
    lo, hi = AUTO_GRID_SIDE
    return int(np.clip(round(min(int(v) for v in image_size) / AUTO_GRID_SPACING), lo, hi))


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_unit(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return v


def _make_params(
    points_per_side,
    points_per_batch,
    pred_iou_thresh,
    stability_score_thresh,
    stability_score_offset,
    box_nms_thresh,
    crop_n_layers,
    crop_nms_thresh,
    crop_overlap_ratio,
    crop_n_points_downscale_factor,
    min_mask_region_area,
    point_grids,
    fast_decoder,
    min_visible_fraction,
    fill_gaps=True,
) -> _Params:
    if (points_per_side is None) == (point_grids is None):
        raise ValueError("give exactly one of points_per_side or point_grids")
    if points_per_side is not None and not (isinstance(points_per_side, str)
                                            and points_per_side == "auto"):
        if isinstance(points_per_side, str):
            raise ValueError(
                f"points_per_side must be an integer >= 1 or 'auto', got {points_per_side!r}"
            )
        points_per_side = _check_int("points_per_side", points_per_side, 1)
    crop_n_layers = _check_int("crop_n_layers", crop_n_layers, 0)
    if point_grids is not None:
        grids = []
        for g in point_grids:
            g = np.asarray(g, np.float64)
            if g.ndim != 2 or g.shape[1] != 2 or not np.isfinite(g).all():
                raise ValueError("each point grid must be an (n, 2) array of (row, col) in [0, 1]")
            if g.size and (g.min() < 0 or g.max() > 1):
                raise ValueError("point grid coordinates must be normalised to [0, 1]")
            grids.append(g)
        if len(grids) != crop_n_layers + 1:
            raise ValueError(
                f"point_grids must have crop_n_layers + 1 = {crop_n_layers + 1} grids, got {len(grids)}"
            )
        point_grids = tuple(grids)
    offset = float(stability_score_offset)
    if not math.isfinite(offset) or offset < 0:
        raise ValueError(f"stability_score_offset must be a finite number >= 0, got {offset}")
    overlap = float(crop_overlap_ratio)
    if not (0.0 <= overlap < 1.0):
        raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {crop_overlap_ratio}")
    area = _check_int("min_mask_region_area", min_mask_region_area, 0)
    return _Params(
        points_per_side=points_per_side,
        points_per_batch=(None if points_per_batch is None
                          else _check_int("points_per_batch", points_per_batch, 1)),
        pred_iou_thresh=_check_unit("pred_iou_thresh", pred_iou_thresh),
        stability_score_thresh=_check_unit("stability_score_thresh", stability_score_thresh),
        stability_score_offset=offset,
        box_nms_thresh=_check_unit("box_nms_thresh", box_nms_thresh),
        crop_n_layers=crop_n_layers,
        crop_nms_thresh=_check_unit("crop_nms_thresh", crop_nms_thresh),
        crop_overlap_ratio=overlap,
        crop_n_points_downscale_factor=_check_int(
            "crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1
        ),
        min_mask_region_area=area,
        point_grids=point_grids,
        fast_decoder=bool(fast_decoder),
        min_visible_fraction=_check_unit("min_visible_fraction", min_visible_fraction),
        fill_gaps=bool(fill_gaps),
    )


# ============================================================================ grids and crops


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) points (row, col) evenly spaced in [0, 1], centred in their cells.

    Same points and order as Meta's ``build_point_grid`` (which returns (x, y)).
    """
    n = _check_int("points per side", n_per_side, 1)
    offset = 1 / (2 * n)
    side = np.linspace(offset, 1 - offset, n)
    rows = np.repeat(side, n)
    cols = np.tile(side, n)
    return np.stack([rows, cols], axis=-1)


def generate_crop_boxes(
    size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[tuple[int, int, int, int]], list[int]]:
    """Crop boxes (row0, col0, row1, col1) and their layer index, as Meta's generator makes them.

    Layer 0 is the whole image; layer i has (2**i)**2 overlapping crops.
    """
    im_h, im_w = (int(v) for v in size)
    short = min(im_h, im_w)
    boxes = [(0, 0, im_h, im_w)]
    layers = [0]

    def crop_len(orig, n, overlap):
        return int(math.ceil((overlap * (n - 1) + orig) / n))

    for i in range(n_layers):
        n = 2 ** (i + 1)
        overlap = int(overlap_ratio * short * (2 / n))
        cw, ch = crop_len(im_w, n, overlap), crop_len(im_h, n, overlap)
        x0s = [int((cw - overlap) * j) for j in range(n)]
        y0s = [int((ch - overlap) * j) for j in range(n)]
        for x0, y0 in product(x0s, y0s):  # Meta's order: x outer, y inner
            boxes.append((y0, x0, min(y0 + ch, im_h), min(x0 + cw, im_w)))
            layers.append(i + 1)
    return boxes, layers


# ============================================================================ boxes and NMS


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Boxes around boolean masks (..., H, W) -> (..., 4) (row0, col0, row1, col1), inclusive.

    An empty mask gets (0, 0, 0, 0), like Meta's ``batched_mask_to_box``.
    """
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)
    rows = masks.any(-1)
    cols = masks.any(-2)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    r0 = torch.where(rows, ar_h, h).amin(-1)
    r1 = torch.where(rows, ar_h, -1).amax(-1)
    c0 = torch.where(cols, ar_w, w).amin(-1)
    c1 = torch.where(cols, ar_w, -1).amax(-1)
    out = torch.stack([r0, c0, r1, c1], -1)
    empty = ~rows.any(-1)
    return torch.where(empty[..., None], torch.zeros_like(out), out)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (Na, Nb) of boxes (row0, col0, row1, col1) with torchvision's area rule.

    Areas are ``(row1 - row0) * (col1 - col0)`` (no +1), exactly what Meta's generator feeds
    torchvision's NMS; a zero union gives NaN, which suppresses nothing.
    """
    a = a.float()
    b = b.float()
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    categories: torch.Tensor | None = None,
    block: int = 2048,
) -> torch.Tensor:
    """Greedy non-maximum suppression on tensors; indices kept, by decreasing score.

    Same result as ``torchvision.ops.batched_nms``: boxes are visited by decreasing score
    (ties in index order) and a box is dropped when its IoU with an already kept box of the
    same category is greater than ``iou_threshold``.

    The greedy recursion is solved as a fixed point without a Python loop over boxes: with
    ``S[j, i]`` = "higher-ranked box j would suppress box i", ``keep = ~any_j(keep[j] & S[j, i])``
    has exactly one solution (the greedy one), reached by iterating from ``keep = all``; the
    number of iterations is the length of the longest suppression chain (a few in practice).
    Boxes are processed in blocks of ``block`` by rank to bound memory.
    """
    n = boxes.shape[0]
    dev = boxes.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=dev)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float()
    cat = None if categories is None else categories.to(dev)[order]
    keep = torch.ones(n, dtype=torch.bool, device=dev)
    for s in range(0, n, block):
        e = min(s + block, n)
        blk = b[s:e]
        if s > 0:  # suppression by already decided higher-ranked boxes
            sup = box_iou(b[:s][keep[:s]], blk) > iou_threshold
            if cat is not None:
                sup &= cat[:s][keep[:s]][:, None] == cat[s:e][None, :]
            keep[s:e] &= ~sup.any(0)
        m = box_iou(blk, blk) > iou_threshold
        if cat is not None:
            m &= cat[s:e][:, None] == cat[s:e][None, :]
        m = torch.triu(m, diagonal=1)
        alive = keep[s:e].clone()
        cur = alive.clone()
        while True:
            new = alive & ~(m & cur[:, None]).any(0)
            if torch.equal(new, cur):
                break
            cur = new
        keep[s:e] = cur
    return order[keep]


# ============================================================================ upsampling geometry


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's bilinear interpolation (align_corners=False)."""
    scale = n_in / n_out
    dst = np.arange(n_out)
    src = np.maximum(scale * (dst + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (dst, i0), 1.0 - l1)
    np.add.at(m, (dst, i1), l1)
    return m


@dataclass
class _AxisMap:
    """One axis of the low-res -> full-res upsampling, grouped into classes of output pixels
    that depend on the same low-res support interval."""

    start: np.ndarray  # (A,) support start in low-res pixels
    length: np.ndarray  # (A,) support length
    first: np.ndarray  # (A,) first output pixel of the class
    count: np.ndarray  # (A,) output pixels in the class
    weights: np.ndarray  # (A, MY, ML) float32 per output pixel of the class, per support offset
    n_out: int

    @classmethod
    def build(cls, n_low: int, img_size: int, n_input: int, n_out: int) -> _AxisMap:
        m1 = _interp_matrix(n_low, img_size)[:n_input]
        m2 = np.eye(n_out) if n_input == n_out else _interp_matrix(n_input, n_out)
        comp = m2 @ m1  # (n_out, n_low)
        nz = comp > 0
        s = nz.argmax(1)
        e = n_low - 1 - nz[:, ::-1].argmax(1)
        ln = e - s + 1
        change = np.ones(n_out, bool)
        change[1:] = (s[1:] != s[:-1]) | (ln[1:] != ln[:-1])
        first = np.flatnonzero(change)
        count = np.diff(np.append(first, n_out))
        start, length = s[first], ln[first]
        my, ml = int(count.max()), int(length.max())
        w = np.zeros((len(first), my, ml), np.float32)
        for a, (f, c, st) in enumerate(zip(first, count, start)):  # setup only, O(n_out)
            blk = comp[f : f + c, st : st + ml]
            w[a, :c, : blk.shape[1]] = blk
        return cls(start, length, first, count, w, n_out)


class _Geometry:
    """Upsampling geometry of one crop: low-res (L, L) logits -> (H, W) masks, as in
    ``Sam.postprocess_masks`` (bilinear to the model input, crop the padding, bilinear to the
    crop size)."""

    def __init__(self, n_low: int, img_size: int, input_size, out_size, device):
        self.n_low = n_low
        self.img_size = img_size
        self.input_size = tuple(int(v) for v in input_size)
        self.out_size = tuple(int(v) for v in out_size)
        self.y = _AxisMap.build(n_low, img_size, self.input_size[0], self.out_size[0])
        self.x = _AxisMap.build(n_low, img_size, self.input_size[1], self.out_size[1])
        self.device = device
        t = lambda a, dt=torch.int64: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
        ml_y, ml_x = self.y.weights.shape[2], self.x.weights.shape[2]
        self.idx_y = t(np.minimum(self.y.start[:, None] + np.arange(ml_y), n_low - 1))
        self.idx_x = t(np.minimum(self.x.start[:, None] + np.arange(ml_x), n_low - 1))
        self.start_y, self.start_x = t(self.y.start), t(self.x.start)
        self.first_y, self.first_x = t(self.y.first), t(self.x.first)
        self.last_y = t(self.y.first + self.y.count - 1)
        self.last_x = t(self.x.first + self.x.count - 1)
        self.count_y = t(self.y.count)
        self.count_x = t(self.x.count, torch.float32)
        self.w_y, self.w_x = t(self.y.weights, torch.float32), t(self.x.weights, torch.float32)
        self.valid_y = t(
            np.arange(self.y.weights.shape[1])[None] < self.y.count[:, None], torch.bool
        )
        self.valid_x = t(
            np.arange(self.x.weights.shape[1])[None] < self.x.count[:, None], torch.bool
        )

    def upsample(self, logits: torch.Tensor) -> torch.Tensor:
        """(K, L, L) logits -> (K, H, W) float logits, exactly Meta's op sequence."""
        x = logits[:, None].float()
        x = F.interpolate(x, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        x = x[..., : self.input_size[0], : self.input_size[1]]
        x = F.interpolate(x, self.out_size, mode="bilinear", align_corners=False)
        return x[:, 0]


def mask_statistics(
    logits: torch.Tensor, geom: _Geometry, thresholds: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel counts above each threshold and the box above ``thresholds[1]``, of the
    full-resolution upsampled logits, computed from the low-resolution logits.

    Parameters
    ----------
    logits : (K, L, L) float tensor
    geom : upsampling geometry of the crop
    thresholds : three increasing floats (low, mask threshold, high)

    Returns
    -------
    counts : (K, 3) int64
        Output pixels ``> t`` for each threshold.
    boxes : (K, 4) int64
        (row0, col0, row1, col1) inclusive of the pixels above the middle threshold;
        (0, 0, 0, 0) for an empty mask.

    How: each output pixel is a convex combination of the low-res logits in its support
    rectangle; output pixels are grouped into classes per axis (same support), so the block
    minimum / maximum over the support decides whole blocks, and only blocks that straddle a
    threshold are evaluated exactly with the composite interpolation weights.
    """
    k = logits.shape[0]
    dev = logits.device
    ts = [float(t) for t in thresholds]
    if k == 0:
        return (
            torch.zeros(0, 3, dtype=torch.int64, device=dev),
            torch.zeros(0, 4, dtype=torch.int64, device=dev),
        )
    g = geom
    # block minima / maxima: rows first (K, A, L), then columns (K, A, B)
    rmin = logits[:, g.idx_y[:, 0], :]
    rmax = rmin
    for p in range(1, g.idx_y.shape[1]):
        r = logits[:, g.idx_y[:, p], :]
        rmin, rmax = torch.minimum(rmin, r), torch.maximum(rmax, r)
    cmin = rmin[:, :, g.idx_x[:, 0]]
    cmax = rmax[:, :, g.idx_x[:, 0]]
    for p in range(1, g.idx_x.shape[1]):
        cmin = torch.minimum(cmin, rmin[:, :, g.idx_x[:, p]])
        cmax = torch.maximum(cmax, rmax[:, :, g.idx_x[:, p]])
    del rmin, rmax

    counts = []
    unsure = torch.zeros_like(cmin, dtype=torch.bool)
    for t in ts:
        sure = cmin > t
        per_row = (sure.float() @ g.count_x).round().long()  # exact: a row has <= W pixels
        counts.append((per_row * g.count_y).sum(1))
        unsure |= (cmin <= t) & (cmax > t)
    counts = torch.stack(counts, 1)  # (K, 3)
    n_unsure = int(unsure.sum())
    if n_unsure * g.w_y.shape[1] * g.w_x.shape[1] * 2 > k * g.y.n_out * g.x.n_out:
        # ragged masks: most blocks straddle a threshold, direct evaluation is cheaper
        del cmin, cmax, unsure
        return _direct_statistics(logits, geom, ts)

    # box from the sure blocks of the middle threshold
    sure0 = cmin > ts[1]
    big = max(g.y.n_out, g.x.n_out) + 1
    rows_any, cols_any = sure0.any(2), sure0.any(1)
    r0 = torch.where(rows_any, g.first_y, big).amin(1)
    r1 = torch.where(rows_any, g.last_y, -1).amax(1)
    c0 = torch.where(cols_any, g.first_x, big).amin(1)
    c1 = torch.where(cols_any, g.last_x, -1).amax(1)
    del sure0

    idx = unsure.nonzero()
    if idx.shape[0]:
        kk, aa, bb = idx[:, 0], idx[:, 1], idx[:, 2]
        bmin = cmin[kk, aa, bb]  # blocks already counted as sure for a threshold are skipped
        rows = g.idx_y[aa]  # (U, MLy)
        cols = g.idx_x[bb]  # (U, MLx)
        patch = logits[kk[:, None, None], rows[:, :, None], cols[:, None, :]]
        vals = torch.bmm(torch.bmm(g.w_y[aa], patch), g.w_x[bb].transpose(1, 2))  # (U, MY, MX)
        valid = g.valid_y[aa][:, :, None] & g.valid_x[bb][:, None, :]
        extra = torch.stack([((vals > t) & valid).sum((1, 2)) * (bmin <= t) for t in ts], 1)
        counts.index_add_(0, kk, extra)
        pos = (vals > ts[1]) & valid
        my, mx = pos.shape[1:]
        prow, pcol = pos.any(2), pos.any(1)
        ry = g.first_y[aa][:, None] + torch.arange(my, device=dev)
        rx = g.first_x[bb][:, None] + torch.arange(mx, device=dev)
        r0 = r0.scatter_reduce(0, kk, torch.where(prow, ry, big).amin(1), "amin")
        r1 = r1.scatter_reduce(0, kk, torch.where(prow, ry, -1).amax(1), "amax")
        c0 = c0.scatter_reduce(0, kk, torch.where(pcol, rx, big).amin(1), "amin")
        c1 = c1.scatter_reduce(0, kk, torch.where(pcol, rx, -1).amax(1), "amax")
    boxes = torch.stack([r0, c0, r1, c1], 1)
    boxes = torch.where((counts[:, 1] > 0)[:, None], boxes, torch.zeros_like(boxes))
    return counts, boxes


def _direct_statistics(logits, geom: _Geometry, ts) -> tuple[torch.Tensor, torch.Tensor]:
    """``mask_statistics`` by upsampling to full resolution (in chunks)."""
    chunk = max(1, int(2**24 // max(1, geom.y.n_out * geom.x.n_out)))
    counts, boxes = [], []
    for i in range(0, logits.shape[0], chunk):
        up = geom.upsample(logits[i : i + chunk])
        if up.device.type == "cpu":  # numpy's count_nonzero is ~10x faster than a bool sum
            a = up.numpy()
            cnt = [[np.count_nonzero(m) for m in a > t] for t in ts]
            counts.append(torch.as_tensor(cnt, dtype=torch.int64).T)
        else:
            counts.append(torch.stack([(up > t).sum((1, 2)) for t in ts], 1))
        boxes.append(masks_to_boxes(up > ts[1]))
    return torch.cat(counts), torch.cat(boxes)


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks ``logits > t + offset`` and ``logits > t - offset`` (any shape (..., H, W)).

    The reference definition, on full-resolution logits; :func:`segment_everything` gets the
    same numbers from low-resolution logits with :func:`mask_statistics`.
    """
    inter = (logits > mask_threshold + offset).sum((-1, -2), dtype=torch.int64)
    union = (logits > mask_threshold - offset).sum((-1, -2), dtype=torch.int64)
    return inter.float() / union.float()


# ============================================================================ fast decoder


#: GridDecoder arithmetic that ``precision="auto"`` (or "bf16" / "fp16") selects on a CUDA
#: device; "fp32" there keeps exact float32. See docs/benchmarks.md, "On a GPU".
GRID_PRECISION_CUDA = "tf32"
#: Whether GridDecoder fuses its upscaling head's add, scale, layer norm and GELU into one
#: Triton kernel on CUDA (when Triton is installed). Opt-in (``NAPARI_SAM_TRITON=1``):
#: importing Triton loads its own LLVM, which crashes napari on Mesa displays (VMs, Xvfb, X
#: forwarding), so a plain run never imports it.
GRID_FUSED_HEAD_CUDA = os.environ.get("NAPARI_SAM_TRITON", "0") == "1"


@contextlib.contextmanager
def _tf32_matmuls():
    """Allow TF32 in CUDA matrix products and convolutions, restoring the settings after."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def grid_precision(device: torch.device, dtype: torch.dtype) -> str:
    """GridDecoder precision for a predictor's device and compute dtype: float32 on the CPU
    and for ``precision="fp32"``; :data:`GRID_PRECISION_CUDA` for reduced precision on CUDA."""
    if device.type != "cuda" or dtype == torch.float32:
        return "fp32"
    return GRID_PRECISION_CUDA


class GridDecoder:
    """SAM's mask decoder specialised for many single positive points on one image.

    Mathematically identical to ``model.mask_decoder`` (with ``multimask_output=True``) for
    prompts made of one positive point; only floating-point rounding differs. Works for any
    decoder depth and width with Meta's module structure (ViT models and the demo model).

    How. Before the first image->token attention the image tokens are the same for every
    prompt. Each image->token attention adds, per pixel, a mix of ``H * T`` token vectors
    (H heads, T tokens), i.e. a low-rank term, and each layer norm rescales every pixel. So
    the image tokens of prompt n are carried exactly as
    ``K_n = alpha_n * (Sh + Lt_n.T @ R_n) + c`` with ``Sh`` (HW, D) and ``c`` (D,) shared by
    all prompts, ``alpha_n`` (HW,) per-pixel scales and ``Lt_n`` (r, HW), ``R_n`` (r, D) of
    rank r = depth * (H * T + 1). Projections of ``Sh`` are computed once per image, layer
    norms in closed form (mean and variance of ``K_n`` from small Gram matrices), attention
    scores as shared GEMMs plus rank-r corrections. The upscaling head runs only for the
    prompts asked for (those with a candidate above ``pred_iou_thresh``).

    >>> dec = GridDecoder(model)
    >>> shared = dec.prepare(embedding.features)          # once per image
    >>> state = dec.tokens(shared, points_xy)               # (N, 2) x, y in the model input frame
    >>> state.iou                                          # (N, 3) predicted IoU, cheap
    >>> logits = dec.masks(shared, state, index)           # (n, 3, 4E, 4E) for chosen prompts

    ``precision``: "fp32" exact float32; "tf32" float32 storage with TF32 matrix products on
    CUDA (float32 on the CPU). Logits are float32 either way. ``segment_everything`` uses
    float32 on the CPU and, for ``precision="auto"`` on a GPU, :data:`GRID_PRECISION_CUDA`
    (see :func:`grid_precision`). On CUDA, where Triton is installed, the upscaling head's
    add, scale, layer norm and GELU run as one fused kernel (:mod:`napari_sam.kernels`;
    ``fused_head``).
    """

    PRECISIONS = ("fp32", "tf32")

    @staticmethod
    def supports(model) -> bool:
        """Whether ``model`` has the module structure this decoder relies on."""
        try:
            dec = model.mask_decoder
            tf = dec.transformer
            if len(tf.layers) == 0:
                return False
            for layer in tf.layers:
                for name in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
                    a = getattr(layer, name)
                    a.q_proj, a.k_proj, a.v_proj, a.out_proj, a.num_heads  # noqa: B018
                layer.norm1, layer.norm2, layer.norm3, layer.norm4, layer.mlp  # noqa: B018
                if not isinstance(layer.norm4, torch.nn.LayerNorm):
                    return False
            tf.final_attn_token_to_image.q_proj, tf.norm_final_attn  # noqa: B018
            up = dec.output_upscaling
            model.prompt_encoder.no_mask_embed  # noqa: B018
            return bool(
                len(up) == 5
                and isinstance(up[0], torch.nn.ConvTranspose2d)
                and isinstance(up[3], torch.nn.ConvTranspose2d)
                and tuple(up[0].kernel_size) == (2, 2)
                and tuple(up[0].stride) == (2, 2)
                and tuple(up[3].kernel_size) == (2, 2)
                and tuple(up[3].stride) == (2, 2)
                and hasattr(up[1], "eps")
                and dec.num_mask_tokens > 1
            )
        except (AttributeError, TypeError, IndexError):
            return False

    def __init__(self, model, chunk: int | None = None, pixel_tile: int | None = None,
                 mask_chunk: int | None = None, precision: str = "fp32",
                 fused_head: bool | None = None):
        if precision not in self.PRECISIONS:
            raise ValueError(
                f"GridDecoder precision must be one of {', '.join(self.PRECISIONS)}, "
                f"not {precision!r}"
            )
        self.model = model
        self.precision = precision
        # None: the fused Triton kernel on CUDA where it compiles and runs (same numbers as
        # the PyTorch ops up to summation order); True: on any device where it runs (the CPU
        # under TRITON_INTERPRET=1); False: never. See kernels.fused_kernels_work.
        self.fused_head = fused_head
        # Work sizes (None: by device). On the CPU small steps keep intermediates in cache; on
        # a GPU each step is a few kernel launches, so steps are as large as memory allows.
        self.pixel_tile = None if pixel_tile is None else int(pixel_tile)
        self.mask_chunk = None if mask_chunk is None else int(mask_chunk)
        self.pe = model.prompt_encoder
        self.dec = model.mask_decoder
        self.tf = self.dec.transformer
        self.num_mask_tokens = int(self.dec.num_mask_tokens)
        # prompts per token-path step (CPU default: 16384 image tokens per step, i.e. 4 prompts
        # for a 64 x 64 embedding; GPU: 2**20, 256 prompts)
        self.chunk = None if chunk is None else int(chunk)

    def _math(self, dev: torch.device):
        """TF32 matrix products for the duration of a call (CUDA, precision tf32)."""
        if dev.type != "cuda" or self.precision == "fp32":
            return contextlib.nullcontext()
        return _tf32_matmuls()

    # ------------------------------------------------------------------ shared per image
    @torch.inference_mode()
    def prepare(self, features: torch.Tensor) -> dict:
        """Prompt-independent tensors for one image embedding (D, E, E)."""
        dev = self.dec.iou_token.weight.device
        feats = features.to(dev).float()
        dm = feats.shape[0]
        pe = self.pe.get_dense_pe()[0].float()
        dense = self.pe.no_mask_embed.weight[0].float()
        sh = (feats + dense[:, None, None]).flatten(1).T.contiguous()  # (HW, D)
        pos = pe.flatten(1).T.contiguous()
        hw = sh.shape[0]
        c = torch.zeros(dm, device=dev)

        def heads_t(x, h):  # (HW, Di) -> (h, d, HW) contiguous
            return x.T.reshape(h, -1, hw).contiguous()

        layers = []
        # Every row of R is (token value of one head) @ (that head's out-projection rows), then
        # centred and scaled by later layer norms: a shared (d, D) matrix per head. ``blocks``
        # holds these matrices, ``consts`` the constant rows added by each layer norm.
        blocks: list[torch.Tensor] = []
        consts: list[torch.Tensor] = []
        for layer in self.tf.layers:
            st = {"t2i": self._kv(layer.cross_attn_token_to_image, sh, pos, c)}
            i2t = layer.cross_attn_image_to_token
            h = i2t.num_heads
            wq, bq = i2t.q_proj.weight, i2t.q_proj.bias
            st["q1"] = heads_t(sh @ wq.T, h)
            st["q2"] = heads_t(pos @ wq.T + (c @ wq.T + bq), h)
            # layer norm (norm4) of keys + attention output: the prompt-independent parts
            c_res = c + i2t.out_proj.bias
            shc = sh - sh.mean(1, keepdim=True)
            cc = c_res - c_res.mean()
            wo = i2t.out_proj.weight  # (D, Di)
            blocks.append(wo.T.reshape(h, -1, dm))  # (h, d, D)
            st["sx"] = [torch.matmul(b, shc.T) for b in blocks]  # (h, d, HW) each
            st["sxc"] = [shc @ v for v in consts]  # (HW,) each
            st["shc_n2"] = (shc * shc).sum(1)
            st["shc_cc"] = shc @ cc
            st["cc"] = cc
            st["cc_n2"] = cc @ cc
            st["norm"] = layer.norm4
            layers.append(st)
            g = layer.norm4.weight
            blocks = [(b - b.mean(-1, keepdim=True)) * g for b in blocks]
            consts = [(v - v.mean()) * g for v in consts] + [cc * g]
            sh = shc * g
            c = layer.norm4.bias.float().clone()
        final = self._kv(self.tf.final_attn_token_to_image, sh, pos, c)
        up = self.dec.output_upscaling
        w1 = up[0].weight  # (D, D4, 2, 2)
        d4 = w1.shape[1]
        wf = w1.permute(0, 2, 3, 1).reshape(dm, 4 * d4)  # columns (a, b, o)
        b1 = up[0].bias.repeat(4)
        w2 = up[3].weight  # (D4, D8, 2, 2)
        d8 = w2.shape[1]
        rank = sum(ly.cross_attn_image_to_token.num_heads for ly in self.tf.layers)
        return {
            "layers": layers,
            "final": final,
            "wf": wf,
            "shw": sh @ wf,  # (HW, 4*D4)
            "cw": c @ wf + b1,
            "w2f": w2.permute(0, 2, 3, 1).reshape(d4, 4 * d8),  # columns (a2, b2, o2)
            "b2": up[3].bias.repeat(4),
            "side": int(features.shape[-1]),
            "hw": hw,
            "heads_total": rank,
        }

    @staticmethod
    def _kv(attn, sh, pos, c) -> dict:
        h = attn.num_heads
        hw = sh.shape[0]
        wk, bk = attn.k_proj.weight, attn.k_proj.bias
        wv, bv = attn.v_proj.weight, attn.v_proj.bias
        return {
            "attn": attn,
            "k1": (sh @ wk.T).T.reshape(h, -1, hw).contiguous(),  # (h, d, HW)
            "k2": (pos @ wk.T + (c @ wk.T + bk)).T.reshape(h, -1, hw).contiguous(),
            "v1": (sh @ wv.T).reshape(hw, h, -1).permute(1, 0, 2).contiguous(),  # (h, HW, d)
            "v2": c @ wv.T + bv,
        }

    # ------------------------------------------------------------------ token path
    @torch.inference_mode()
    def tokens(self, shared: dict, points_xy: torch.Tensor) -> _DecoderState:
        """Two-way transformer and IoU head for N single-point prompts.

        points_xy : (N, 2) float, (x, y) in the model input frame.
        """
        dev = self.dec.iou_token.weight.device
        pts = torch.as_tensor(points_xy, device=dev).float()
        step = self.chunk or max(1, (16384 if dev.type == "cpu" else 2**20) // shared["hw"])
        with self._math(dev):
            parts = [self._tokens(shared, pts[i : i + step]) for i in range(0, len(pts), step)]
        if len(parts) == 1:
            return parts[0]
        return _DecoderState(*(torch.cat(x, 0) for x in zip(*(p.astuple() for p in parts))))

    def _tokens(self, shared: dict, pts: torch.Tensor) -> _DecoderState:
        dev = pts.device
        n = pts.shape[0]
        labels = torch.ones(n, 1, dtype=torch.int64, device=dev)
        sparse, _ = self.pe(points=(pts[:, None, :], labels), boxes=None, masks=None)
        out_tok = torch.cat([self.dec.iou_token.weight, self.dec.mask_tokens.weight], 0)
        tokens = torch.cat([out_tok[None].expand(n, -1, -1), sparse.float()], 1)
        t = tokens.shape[1]
        dm = tokens.shape[2]
        hw = shared["hw"]
        r_max = sum(ly.cross_attn_image_to_token.num_heads * t + 1 for ly in self.tf.layers)
        lt = torch.empty(n, r_max, hw, device=dev)  # scaled low-rank factors, (n, r, HW)
        rm = torch.empty(n, r_max, dm, device=dev)
        state = {"alpha": None, "r": 0, "lt": lt, "rm": rm, "vt": []}
        qpe = tokens
        queries = tokens
        for layer, st in zip(self.tf.layers, shared["layers"]):
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries, k=queries, v=queries)
            else:
                q = queries + qpe
                queries = queries + layer.self_attn(q=q, k=q, v=queries)
            queries = layer.norm1(queries)
            queries = layer.norm2(queries + self._token_to_image(st["t2i"], queries + qpe, state))
            queries = layer.norm3(queries + layer.mlp(queries))
            self._image_to_token(layer.cross_attn_image_to_token, st, queries, qpe, state)
        att = self._token_to_image(shared["final"], queries + qpe, state)
        queries = self.tf.norm_final_attn(queries + att)
        iou = self.dec.iou_prediction_head(queries[:, 0])
        hyper = torch.stack(
            [
                self.dec.output_hypernetworks_mlps[i](queries[:, i + 1])
                for i in range(1, self.num_mask_tokens)
            ],
            1,
        )
        r = state["r"]
        return _DecoderState(iou[:, 1:].float(), hyper, state["alpha"], lt[:, :r], rm[:, :r])

    @staticmethod
    def _token_to_image(st, q_in, state):
        """Cross-attention of the prompt tokens (n, T, D) to the image tokens of each prompt."""
        attn = st["attn"]
        n, t, _ = q_in.shape
        h = attn.num_heads
        hw = st["k1"].shape[-1]
        q = F.linear(q_in, attn.q_proj.weight, attn.q_proj.bias)
        di = q.shape[-1]
        d = di // h
        qh = q.view(n, t, h, d) * (1.0 / math.sqrt(d))
        qs = qh.permute(2, 0, 1, 3).reshape(h, n * t, d)
        alpha, r = state["alpha"], state["r"]
        s = torch.bmm(qs, st["k1"])  # (h, n*t, hw)
        s4 = s.view(h, n, t, hw)
        if r:
            lt, rm = state["lt"][:, :r], state["rm"][:, :r]
            qk = (rm @ attn.k_proj.weight.T).view(n, r, h, d)
            g = torch.einsum("nthd,nrhd->nhtr", qh, qk).reshape(n, h * t, r)
            s4 += torch.bmm(g, lt).view(n, h, t, hw).permute(1, 0, 2, 3)
        if alpha is not None:
            s4 *= alpha[None, :, None, :]
        s.baddbmm_(qs, st["k2"])
        p = torch.softmax(s, dim=-1)
        if alpha is not None:
            p.view(h, n, t, hw).mul_(alpha[None, :, None, :])
        o = torch.bmm(p, st["v1"]).view(h, n, t, d)
        if r:
            pn = p.view(h, n, t, hw).permute(1, 0, 2, 3).reshape(n, h * t, hw)
            pl = torch.bmm(pn, lt.transpose(1, 2)).view(n, h, t, r)
            qv = (rm @ attn.v_proj.weight.T).view(n, r, h, d)
            o = o + torch.einsum("nhtr,nrhd->hntd", pl, qv)
        out = o.permute(1, 2, 0, 3).reshape(n, t, di) + st["v2"]
        return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)

    @staticmethod
    def _image_to_token(attn, st, queries, qpe, state):
        """Image->token attention, residual and layer norm, updating the low-rank state."""
        n, t, dm = queries.shape
        h = attn.num_heads
        hw = st["q1"].shape[-1]
        kt = F.linear(queries + qpe, attn.k_proj.weight, attn.k_proj.bias)
        vt = F.linear(queries, attn.v_proj.weight, attn.v_proj.bias)
        di = kt.shape[-1]
        d = di // h
        khd = kt.view(n, t, h, d) * (1.0 / math.sqrt(d))
        kk = khd.permute(2, 0, 1, 3).reshape(h, n * t, d)
        alpha, r, lt, rm = state["alpha"], state["r"], state["lt"], state["rm"]
        s = torch.bmm(kk, st["q1"])  # (h, n*t, hw)
        s4 = s.view(h, n, t, hw)
        if r:
            qq = (rm[:, :r] @ attn.q_proj.weight.T).view(n, r, h, d)
            w3 = torch.einsum("nrhd,nthd->nhtr", qq, khd).reshape(n, h * t, r)
            s4 += torch.bmm(w3, lt[:, :r]).view(n, h, t, hw).permute(1, 0, 2, 3)
        if alpha is not None:
            s4 *= alpha[None, :, None, :]
        s.baddbmm_(kk, st["q2"])
        a = torch.softmax(s4, dim=2)  # over the tokens, (h, n, t, hw)
        r1 = r + h * t
        dst = lt[:, r:r1].view(n, h, t, hw)
        if alpha is None:
            dst.copy_(a.permute(1, 0, 2, 3))
        else:
            torch.div(a.permute(1, 0, 2, 3), alpha[:, None, None, :], out=dst)
        wo = attn.out_proj.weight  # (D, Di)
        rm[:, r:r1] = torch.einsum(
            "nthd,ehd->nhte", vt.view(n, t, h, d), wo.view(dm, h, d)
        ).reshape(n, h * t, dm)
        # layer norm of alpha * (shc + Lt.T R) + c_res, in closed form
        norm = st["norm"]
        ltr, rr = lt[:, :r1], rm[:, :r1]
        rc = rr - rr.mean(-1, keepdim=True)
        # m = 2 * (R @ shc.T) from the shared per-head products (shc rows are centred)
        state["vt"].append(vt.view(n, t, h, d))
        m = torch.empty(n, r1, hw, device=lt.device)
        row = 0
        for i, (vtb, sx) in enumerate(zip(state["vt"], st["sx"])):
            hb = sx.shape[0]
            vv = (2 * vtb).permute(2, 0, 1, 3).reshape(hb, n * t, -1)
            prod = torch.bmm(vv, sx).view(hb, n, t, hw)
            m[:, row : row + hb * t].view(n, hb, t, hw).copy_(prod.permute(1, 0, 2, 3))
            row += hb * t
            if i < len(st["sxc"]):
                m[:, row] = 2 * st["sxc"][i]
                row += 1
        m.baddbmm_(rc @ rc.transpose(1, 2), ltr)
        quad = m.mul_(ltr).sum(1)  # (n, hw)
        lin = torch.bmm((rc @ st["cc"])[:, None, :], ltr)[:, 0]  # (n, hw)
        if alpha is None:
            var = st["shc_n2"] + quad + 2 * (st["shc_cc"] + lin) + st["cc_n2"]
        else:
            var = alpha * alpha * (st["shc_n2"] + quad) + 2 * alpha * (st["shc_cc"] + lin)
            var += st["cc_n2"]
        rstd = torch.rsqrt(var.div_(dm).clamp_min_(0) + norm.eps)  # (n, hw)
        g = norm.weight
        lt[:, r1] = 1.0 if alpha is None else 1.0 / alpha
        rm[:, :r1] = rc * g
        rm[:, r1] = st["cc"] * g
        state["alpha"] = rstd if alpha is None else rstd * alpha
        state["r"] = r1 + 1

    # ------------------------------------------------------------------ mask path
    @torch.inference_mode()
    def masks(self, shared: dict, state: _DecoderState, index: torch.Tensor) -> torch.Tensor:
        """Low-resolution mask logits (n, C, 4E, 4E) of the prompts ``index`` of ``state``."""
        index = torch.as_tensor(index, device=state.iou.device).reshape(-1)
        step = self.mask_chunk or (16 if index.device.type == "cpu" else 64)
        with self._math(index.device):
            parts = [self._masks(shared, state, index[i : i + step])
                     for i in range(0, len(index), step)]
        if not parts:
            e = 4 * shared["side"]
            return state.iou.new_zeros(0, state.iou.shape[1], e, e)
        return parts[0] if len(parts) == 1 else torch.cat(parts, 0)

    def _use_fused_head(self, dev: torch.device) -> bool:
        from napari_sam import kernels

        up = self.dec.output_upscaling
        exact_gelu = isinstance(up[2], torch.nn.GELU) and up[2].approximate == "none"
        if self.fused_head is False or not exact_gelu:
            return False
        if self.fused_head is None and (dev.type != "cuda" or not GRID_FUSED_HEAD_CUDA):
            return False
        return kernels.fused_kernels_work(str(dev))

    def _masks(self, shared, state, index):
        up = self.dec.output_upscaling
        alpha, lt, rm = state.alpha[index], state.lt[index], state.rm[index]
        hyper = state.hyper[index]  # (n, C, D8)
        n, _, hw = lt.shape
        rw = rm @ shared["wf"]  # (n, r, 4*D4)
        shw, cw, w2f, b2 = shared["shw"], shared["cw"], shared["w2f"], shared["b2"]
        d4 = shw.shape[-1] // 4
        d8 = w2f.shape[-1] // 4
        c = hyper.shape[1]
        ln = up[1]
        ln_w, ln_b = ln.weight, ln.bias
        out = torch.empty(n, c, hw, 16, device=lt.device)
        fused = self._use_fused_head(lt.device) and shw.dtype == ln_w.dtype == torch.float32
        if fused:
            from napari_sam.kernels import affine_layernorm_gelu_

            alpha, ln_w, ln_b = alpha.contiguous(), ln_w.contiguous(), ln_b.contiguous()
        # Pixel tiles keep the (n, tile, 4*D4) and (n, tile, 16*D8) intermediates in cache;
        # every output pixel depends on its own embedding pixel only.
        pixels = self.pixel_tile or (1024 if lt.device.type == "cpu" else 2**18)
        tile = max(16, pixels // max(n, 1))
        for p0 in range(0, hw, tile):
            p1 = min(p0 + tile, hw)
            k = p1 - p0
            y = torch.bmm(lt[:, :, p0:p1].transpose(1, 2), rw)  # (n, k, 4*D4)
            if fused:  # the four steps below in one pass over y
                y = affine_layernorm_gelu_(y, shw, alpha, cw, ln_w, ln_b, ln.eps, p0)
            else:
                y += shw[p0:p1]
                y = torch.addcmul(cw, alpha[:, p0:p1, None], y, out=y)
                y = F.layer_norm(y.view(n, k * 4, d4), (d4,), ln_w, ln_b, ln.eps)
                y = up[2](y)
            z = torch.addmm(b2, y.view(-1, d4), w2f)  # (n*k*4, 4*D8)
            z = up[4](z).view(n, k * 16, d8)
            out[:, :, p0:p1] = torch.bmm(hyper, z.transpose(1, 2)).view(n, c, k, 16)
        e = shared["side"]
        # ``out`` (n, C, pixel (iy, ix), (a, b, a2, b2)): (a, b) from the first and (a2, b2)
        # from the second transposed convolution; output pixel (4 iy + 2 a + a2, 4 ix + 2 b + b2)
        m = out.view(n, c, e, e, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
        return m.reshape(n, c, 4 * e, 4 * e)


@dataclass
class _DecoderState:
    """Per-prompt output of :meth:`GridDecoder.tokens`."""

    iou: torch.Tensor  # (N, C) predicted IoU of the multimask outputs
    hyper: torch.Tensor  # (N, C, D8) hypernetwork outputs
    alpha: torch.Tensor  # (N, HW)
    lt: torch.Tensor  # (N, r, HW)
    rm: torch.Tensor  # (N, r, D)

    def astuple(self):
        return (self.iou, self.hyper, self.alpha, self.lt, self.rm)


# ============================================================================ small regions


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or remove islands (``mode="islands"``) smaller than
    ``area_thresh`` in a 2D boolean mask; returns the mask and whether it changed.

    Same rule as Meta's ``remove_small_regions`` (8-connected components; when every island
    is small, the largest is kept), with scipy instead of OpenCV.
    """
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    work = ~mask if holes else mask
    regions, n = ndimage.label(work, structure=np.ones((3, 3), bool))
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return mask | np.isin(regions, small), True
    keep = np.setdiff1d(np.arange(1, n + 1), small)
    if len(keep) == 0:
        keep = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, keep), True


def _clean_mask(mask: np.ndarray, area: int) -> tuple[np.ndarray, bool]:
    a, c1 = remove_small_regions(mask, area, "holes")
    b, c2 = remove_small_regions(a, area, "islands")
    return b, (c1 or c2)


# ============================================================================ per-crop processing


@dataclass
class _Candidates:
    """Masks that passed the filters in one crop (tensors on the device)."""

    logits: torch.Tensor  # (K, L, L) low-res logits
    iou: torch.Tensor  # (K,)
    stability: torch.Tensor  # (K,)
    boxes: torch.Tensor  # (K, 4) inclusive, crop frame
    area: torch.Tensor  # (K,)
    points: torch.Tensor  # (K, 2) (row, col) crop frame

    @classmethod
    def cat(cls, parts: list[_Candidates]) -> _Candidates:
        return cls(*(torch.cat(x, 0) for x in zip(*(p.astuple() for p in parts))))

    def astuple(self):
        return (self.logits, self.iou, self.stability, self.boxes, self.area, self.points)

    def take(self, idx: torch.Tensor) -> _Candidates:
        return _Candidates(*(x[idx] for x in self.astuple()))

    def __len__(self) -> int:
        return int(self.iou.shape[0])


def _box_near_crop_edge(boxes, crop_box, orig_box, atol: float = 20.0) -> torch.Tensor:
    """Meta's ``is_box_near_crop_edge`` in (row0, col0, row1, col1): boxes already uncropped."""
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    b = boxes.float()
    near_crop = torch.isclose(b, crop[None], atol=atol, rtol=0)
    near_img = torch.isclose(b, orig[None], atol=atol, rtol=0)
    return (near_crop & ~near_img).any(1)


class _Engine:
    """Runs the grid on one embedding (one crop): decode, filter, NMS."""

    def __init__(self, predictor, params: _Params):
        self.pred = predictor
        self.model = predictor.model
        self.p = params
        self.fast = params.fast_decoder and GridDecoder.supports(self.model)
        self.decoder = (
            GridDecoder(self.model, precision=grid_precision(predictor.device, predictor.dtype))
            if self.fast
            else None
        )
        self.n_low = 4 * int(self.model.embedding_size)
        self.threshold = float(self.model.mask_threshold)
        # every slice of a stack has the same geometry: build it once per size (building the
        # interpolation tables took 0.07 s, as long as decoding a 128 px slice's grid)
        self._geometries: dict[tuple, _Geometry] = {}
        self._shared: tuple[torch.Tensor | None, dict | None] = (None, None)

    def geometry(self, emb) -> _Geometry:
        key = (tuple(int(v) for v in emb.input_size), tuple(int(v) for v in emb.original_size))
        if key not in self._geometries:
            self._geometries[key] = _Geometry(
                self.n_low, self.pred.img_size, *key, self.pred.device
            )
        return self._geometries[key]

    def shared(self, emb) -> dict:
        """The grid decoder's prompt-independent tensors of ``emb`` (kept for the embedding
        last asked for: the second pass of ``fill_gaps`` reuses them)."""
        features, shared = self._shared
        if features is not emb.features:
            shared = self.decoder.prepare(emb.features)
            self._shared = (emb.features, shared)
        return shared

    @torch.inference_mode()
    def process_crop(self, emb, crop_box, image_size, points_rc, stats) -> _Candidates:
        """Candidates of one crop, after IoU / stability / edge filters and NMS, by decreasing IoU.

        ``points_rc`` are (row, col) in crop pixels; boxes and points are returned in the
        image frame.
        """
        from napari_sam.preprocess import points_to_model

        p = self.p
        dev = self.pred.device
        geom = self.geometry(emb)
        spec = emb.spec(self.pred.img_size)
        th = self.threshold
        thresholds = (th - p.stability_score_offset, th, th + p.stability_score_offset)
        full = tuple(crop_box) == (0, 0, *image_size)
        orig_box = (0, 0, *image_size)
        shared = self.shared(emb) if self.fast else None
        parts: list[_Candidates] = []
        pts_all = torch.as_tensor(np.asarray(points_rc, np.float32), device=dev)
        batch = p.points_per_batch or (64 if dev.type == "cpu" else 256)
        for b0 in range(0, len(points_rc), batch):
            pts = np.asarray(points_rc[b0 : b0 + batch], np.float64)
            n = len(pts)
            stats["points"] += n
            if self.fast:
                xy = torch.as_tensor(points_to_model(pts, spec), device=dev)
                state = self.decoder.tokens(shared, xy)
                iou = state.iou
                keep = (
                    iou > p.pred_iou_thresh
                    if p.pred_iou_thresh > 0
                    else torch.ones_like(iou, dtype=torch.bool)
                )
                rows = keep.any(1).nonzero()[:, 0]
                stats["decoded_masks"] += int(rows.numel())
                logits = self.decoder.masks(shared, state, rows)  # (nr, C, L, L)
                keep = keep[rows]
                prompt = rows
            else:
                out = self.pred.predict_batch(
                    emb,
                    points=pts[:, None, :],
                    labels=np.ones((n, 1), np.int64),
                    multimask=True,
                    upsample=False,
                )
                logits, iou = out.logits, out.scores
                keep = (
                    iou > p.pred_iou_thresh
                    if p.pred_iou_thresh > 0
                    else torch.ones_like(iou, dtype=torch.bool)
                )
                prompt = torch.arange(n, device=dev)
                stats["decoded_masks"] += n
            sel = keep.nonzero()
            if sel.shape[0] == 0:
                continue
            lg = logits[sel[:, 0], sel[:, 1]]
            sc = iou[prompt[sel[:, 0]], sel[:, 1]] if self.fast else iou[sel[:, 0], sel[:, 1]]
            pt = pts_all[b0 + prompt[sel[:, 0]]]
            stats["after_iou"] += int(sel.shape[0])
            counts, boxes = mask_statistics(lg, geom, thresholds)
            stab = counts[:, 2].float() / counts[:, 0].float()
            ok = counts[:, 1] > 0
            if p.stability_score_thresh > 0:
                ok &= stab >= p.stability_score_thresh
            off = torch.as_tensor([crop_box[0], crop_box[1]] * 2, device=dev)
            boxes = boxes + off
            if not full:
                ok &= ~_box_near_crop_edge(boxes, crop_box, orig_box)
            idx = ok.nonzero()[:, 0]
            stats["after_stability"] += int(idx.numel())
            parts.append(
                _Candidates(
                    lg[idx],
                    sc[idx],
                    stab[idx],
                    boxes[idx],
                    counts[idx, 1],
                    pt[idx] + off[:2].to(pt.dtype),
                )
            )
        if not parts:
            return _empty_candidates(self.n_low, dev)
        cand = _Candidates.cat(parts)
        keep = batched_nms(cand.boxes, cand.iou, p.box_nms_thresh)
        return cand.take(keep)


def _empty_candidates(n_low, dev) -> _Candidates:
    z = torch.zeros(0, device=dev)
    return _Candidates(
        torch.zeros(0, n_low, n_low, device=dev),
        z,
        z,
        torch.zeros(0, 4, dtype=torch.int64, device=dev),
        torch.zeros(0, dtype=torch.int64, device=dev),
        torch.zeros(0, 2, dtype=torch.float32, device=dev),
    )


# ============================================================================ 2D pipeline


def auto_foreground(image: np.ndarray) -> np.ndarray:
    """Bright-object foreground: Otsu threshold of the log of the smoothed grey image
    (above its minimum), dilated. The log keeps dim objects next to bright ones: a plain
    Otsu threshold falls between the bright objects and everything else."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    arr = np.asarray(image, np.float32)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(-1)
    arr = np.nan_to_num(arr, nan=float(np.nanmin(arr)) if np.isfinite(arr).any() else 0.0)
    sm = ndimage.gaussian_filter(arr, 2.0)
    if sm.max() <= sm.min():
        return np.zeros(arr.shape, bool)
    lg = np.log1p(sm - sm.min())
    fg = lg > threshold_otsu(lg)
    grow = max(2, int(round(0.01 * max(arr.shape))))
    return ndimage.binary_dilation(fg, iterations=grow)


def is_constant(image: np.ndarray) -> bool:
    arr = np.asarray(image)
    if arr.dtype.kind == "f":
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            return True
    return bool(arr.max() == arr.min())


def _select_points(points_rc: np.ndarray, crop_box, fg: np.ndarray | None) -> np.ndarray:
    if fg is None or len(points_rc) == 0:
        return points_rc
    h, w = fg.shape
    r = np.clip(np.floor(points_rc[:, 0] + crop_box[0]).astype(np.int64), 0, h - 1)
    c = np.clip(np.floor(points_rc[:, 1] + crop_box[1]).astype(np.int64), 0, w - 1)
    return points_rc[fg[r, c]]


def _gap_points(free: np.ndarray, spacing: float) -> np.ndarray:
    """(n, 2) (row, col) points in the middle of the ``free`` pixels (foreground no mask
    covers): local maxima, at least ``spacing / 2`` apart, of the distance to the nearest
    pixel that is not free, where that distance is at least ``spacing / 4``."""
    from scipy import ndimage
    from skimage.feature import peak_local_max

    if not free.any():
        return np.zeros((0, 2), np.float64)
    dist = ndimage.distance_transform_edt(np.pad(free, 1))[1:-1, 1:-1]
    reach = max(1.0, spacing / 4.0)
    peaks = peak_local_max(dist, min_distance=max(1, int(spacing / 2)), threshold_abs=reach,
                           exclude_border=False)
    return peaks.astype(np.float64) + 0.5


def _blob_points(rgb: np.ndarray, free: np.ndarray, spacing: float) -> np.ndarray:
    """(n, 2) (row, col) points on blobs, bright or dark, that lie where ``free`` is True:
    local extrema of a difference of Gaussians at the grid's scale, at least ``spacing / 4``
    apart, stronger than 3 robust standard deviations of that filter over the image."""
    from scipy import ndimage
    from skimage.feature import peak_local_max

    grey = np.asarray(rgb, np.float32)
    grey = grey[..., :3].mean(-1) if grey.ndim == 3 else grey
    sigma = max(1.0, spacing / 6.0)
    dog = ndimage.gaussian_filter(grey, sigma) - ndimage.gaussian_filter(grey, 3.0 * sigma)
    mag = np.abs(dog)
    noise = 1.4826 * float(np.median(np.abs(dog - np.median(dog))))
    if not free.any() or noise <= 0:
        return np.zeros((0, 2), np.float64)
    peaks = peak_local_max(np.where(free, mag, 0.0), min_distance=max(1, int(spacing / 4)),
                           threshold_abs=3.0 * noise, exclude_border=False)
    return peaks.astype(np.float64) + 0.5


def _fill_gaps(engine: _Engine, emb, cand: _Candidates, image_size, fg, n_points: int,
               stats, rgb_fn=None) -> _Candidates:
    """Second pass of the grid on one (full-image) crop: prompt the middle of every part of
    the foreground (of the image without ``fg``) that no candidate covers, then NMS over both
    passes. Touching objects that one grid point missed come out as their own masks."""
    geom = engine.geometry(emb)
    covered = torch.zeros(image_size, dtype=torch.bool, device=engine.pred.device)
    for j in range(0, len(cand), 32):
        covered |= (geom.upsample(cand.logits[j : j + 32]) > engine.threshold).any(0)
    spacing = min(image_size) / max(1.0, math.sqrt(n_points))
    free = ~covered.cpu().numpy()
    if fg is not None:
        free &= fg
    pts = _gap_points(free, spacing)
    if rgb_fn is not None:
        blobs = _blob_points(rgb_fn(), free, spacing)
        pts = np.concatenate([pts, blobs]) if len(blobs) else pts
    stats["gap_points"] = stats.get("gap_points", 0) + len(pts)
    if len(pts) == 0:
        return cand
    more = engine.process_crop(emb, (0, 0, *image_size), image_size, pts, stats)
    if len(more) == 0:
        return cand
    both = _Candidates.cat([cand, more])
    keep = batched_nms(both.boxes, both.iou, engine.p.box_nms_thresh)
    return both.take(keep)


def _segment_2d(engine: _Engine, emb, rgb_fn, image_size, fg, stats, keep_masks=True):
    """One 2D image: crops -> candidates -> crop NMS -> full-res masks -> labels + records."""
    p = engine.p
    pred = engine.pred
    crop_boxes, layer_idxs = generate_crop_boxes(image_size, p.crop_n_layers, p.crop_overlap_ratio)
    grids = p.grids(image_size)
    embs = {0: emb}
    if len(crop_boxes) > 1:  # encode the crops, batching crops of equal size
        rgb = rgb_fn()
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, (r0, c0, r1, c1) in enumerate(crop_boxes[1:], start=1):
            by_size.setdefault((r1 - r0, c1 - c0), []).append(i)
        for idxs in by_size.values():
            for j in range(0, len(idxs), 4):
                grp = idxs[j : j + 4]
                crops = [
                    np.ascontiguousarray(rgb[b[0] : b[2], b[1] : b[3]])
                    for b in (crop_boxes[i] for i in grp)
                ]
                for i, e in zip(grp, pred.encode_rgb(crops)):
                    embs[i] = e
    parts, owner = [], []
    for ci, (box, layer) in enumerate(zip(crop_boxes, layer_idxs)):
        ch, cw = box[2] - box[0], box[3] - box[1]
        pts = grids[layer] * np.array([ch, cw], np.float64)
        pts = _select_points(pts, box, fg)
        if len(pts) == 0:
            continue
        cand = engine.process_crop(embs[ci], box, image_size, pts, stats)
        if ci == 0 and p.fill_gaps:
            cand = _fill_gaps(engine, embs[0], cand, image_size, fg, len(grids[0]), stats,
                              rgb_fn)
        stats["after_nms"] += len(cand)
        parts.append(cand)
        owner.append(torch.full((len(cand),), ci, dtype=torch.int64, device=pred.device))
    if not parts:
        return np.zeros(image_size, np.int32), []
    cand = _Candidates.cat(parts)
    crop_idx = torch.cat(owner)
    if len(crop_boxes) > 1:
        areas = torch.as_tensor(
            [(b[2] - b[0]) * (b[3] - b[1]) for b in crop_boxes], device=pred.device
        )
        keep = batched_nms(cand.boxes, 1.0 / areas[crop_idx], p.crop_nms_thresh)
        cand, crop_idx = cand.take(keep), crop_idx[keep]
    stats["after_crop_nms"] += len(cand)

    # full-resolution masks of the kept candidates, as bbox crops
    boxes = cand.boxes.cpu().numpy()
    owners = crop_idx.cpu().numpy()
    segs: list[np.ndarray | None] = [None] * len(cand)
    for ci in np.unique(owners):
        geom = engine.geometry(embs[int(ci)])
        rows = np.flatnonzero(owners == ci)
        r_off, c_off = crop_boxes[int(ci)][:2]
        for j in range(0, len(rows), 16):
            sel = rows[j : j + 16]
            up = geom.upsample(cand.logits[torch.as_tensor(sel, device=pred.device)])
            m = (up > engine.threshold).cpu().numpy()
            for k, i in enumerate(sel):  # copy each mask's bbox (output formatting)
                r0, c0, r1, c1 = boxes[i] - np.array([r_off, c_off, r_off, c_off])
                segs[i] = m[k, r0 : r1 + 1, c0 : c1 + 1].copy()
    areas = cand.area.cpu().numpy().astype(np.int64)
    ious = cand.iou.float().cpu().numpy()
    stabs = cand.stability.float().cpu().numpy()
    points = cand.points.cpu().numpy()

    if p.min_mask_region_area > 0 and len(segs):
        boxes, segs, areas, order = _postprocess_small_regions(
            boxes,
            segs,
            areas,
            image_size,
            p.min_mask_region_area,
            max(p.box_nms_thresh, p.crop_nms_thresh),
            pred.device,
        )
        ious, stabs, points, owners = ious[order], stabs[order], points[order], owners[order]

    return _paint(
        image_size,
        boxes,
        segs,
        areas,
        ious,
        stabs,
        points,
        [tuple(int(v) for v in crop_boxes[o]) for o in owners],
        keep_masks,
        p.min_visible_fraction,
    )


def _postprocess_small_regions(boxes, segs, areas, image_size, min_area, nms_thresh, device):
    """Meta's ``postprocess_small_regions``: fill small holes, drop small islands, re-run NMS
    preferring masks that did not change. Works on bbox crops (exactly like on full masks)."""
    h, w = image_size
    new_boxes, new_segs, new_areas, unchanged = [], [], [], []
    for (r0, c0, r1, c1), seg in zip(boxes, segs):  # per mask by nature (connected components)
        pr0, pc0, pr1, pc1 = max(r0 - 1, 0), max(c0 - 1, 0), min(r1 + 2, h), min(c1 + 2, w)
        if (pr0 == 0 and pr1 == h) or (pc0 == 0 and pc1 == w):
            full = np.zeros((h, w), bool)  # the outside of the box may not be connected
            full[r0 : r1 + 1, c0 : c1 + 1] = seg
            cleaned, changed = _clean_mask(full, min_area)
            off = (0, 0)
        else:
            crop = np.zeros((pr1 - pr0, pc1 - pc0), bool)
            crop[r0 - pr0 : r1 + 1 - pr0, c0 - pc0 : c1 + 1 - pc0] = seg
            sides = (pr0 < r0, pr1 > r1 + 1, pc0 < c0, pc1 > c1 + 1)
            cleaned, changed = _clean_crop(crop, min_area, h * w - crop.size, sides)
            off = (pr0, pc0)
        if changed:
            rr = np.flatnonzero(cleaned.any(1))
            cc = np.flatnonzero(cleaned.any(0))
            b = np.array([rr[0] + off[0], cc[0] + off[1], rr[-1] + off[0], cc[-1] + off[1]])
            seg = cleaned[rr[0] : rr[-1] + 1, cc[0] : cc[-1] + 1]
            new_boxes.append(b)
            new_areas.append(int(seg.sum()))
        else:
            new_boxes.append(np.array([r0, c0, r1, c1]))
            new_areas.append(int(areas[len(new_areas)]))
        new_segs.append(seg)
        unchanged.append(0.0 if changed else 1.0)
    bx = torch.as_tensor(np.stack(new_boxes), device=device)
    keep = batched_nms(bx, torch.as_tensor(unchanged, device=device), nms_thresh).cpu().numpy()
    return (
        np.stack(new_boxes)[keep],
        [new_segs[i] for i in keep],
        np.asarray(new_areas, np.int64)[keep],
        keep,
    )


def _clean_crop(crop: np.ndarray, min_area: int, outside: int, sides) -> tuple[np.ndarray, bool]:
    """``_clean_mask`` on a bbox crop padded by one pixel on the ``sides`` (top, bottom, left,
    right) where the image allows. The padding ring is background and continues outside the
    crop (``outside`` more pixels, connected when the box spans neither the full width nor the
    full height), so every region touching it is one region of the full image."""
    from scipy import ndimage

    st = np.ones((3, 3), bool)
    regions, n = ndimage.label(~crop, structure=st)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:].astype(np.int64)
    edges = (regions[0], regions[-1], regions[:, 0], regions[:, -1])
    ring = np.concatenate([e for e, padded in zip(edges, sides) if padded] or [np.zeros(0, int)])
    ring = np.unique(ring[ring > 0])
    if len(ring):
        sizes[ring - 1] = sizes[ring - 1].sum() + outside
    small = np.flatnonzero(sizes < min_area) + 1
    changed = len(small) > 0
    mask = crop | np.isin(regions, small) if changed else crop
    out, c2 = remove_small_regions(mask, min_area, "islands")
    return out, changed or c2


def _paint(image_size, boxes, segs, areas, ious, stabs, points, crop_boxes, keep_masks,
           min_visible_fraction):
    """Label image without overlaps: decreasing area, so smaller masks stay on top; masks
    left with less than ``min_visible_fraction`` of their area visible are dropped and the
    rest painted again (their pixels go to the masks underneath)."""
    n = len(segs)
    labels = np.zeros(image_size, np.int32)
    if n == 0:
        return labels, []
    order = np.lexsort((ious, -areas))  # larger first; among equal areas better IoU on top

    def paint(skip):
        labels[:] = 0
        for k, i in enumerate(order, start=1):
            if skip is None or not skip[k - 1]:
                r0, c0, r1, c1 = boxes[i]
                view = labels[r0 : r1 + 1, c0 : c1 + 1]
                view[segs[i]] = k
        return np.bincount(labels.ravel(), minlength=n + 1)

    visible = paint(None)
    if min_visible_fraction > 0:
        covered = visible[1:] < min_visible_fraction * np.asarray(areas, np.float64)[order]
        if covered.any():
            visible = paint(covered)
    alive = [k for k in range(1, n + 1) if visible[k] > 0]
    hidden = [k for k in range(1, n + 1) if visible[k] == 0]
    remap = np.zeros(n + 1, np.int32)
    remap[alive] = np.arange(1, len(alive) + 1, dtype=np.int32)
    labels = remap[labels]
    records = []
    for new_id, k in enumerate(alive + hidden, start=1):
        i = order[k - 1]
        r0, c0, r1, c1 = (int(v) for v in boxes[i])
        records.append(
            MaskRecord(
                id=new_id,
                bbox=(r0, c0, r1 + 1, c1 + 1),
                area=int(areas[i]),
                predicted_iou=float(ious[i]),
                stability_score=float(stabs[i]),
                point_coords=(float(points[i][0]), float(points[i][1])),
                crop_box=crop_boxes[i],
                segmentation=segs[i] if keep_masks else None,
                visible_area=int(visible[k]),
            )
        )
    for r in records[len(alive) :]:
        r.id = 0
    return labels, records


# ============================================================================ 3D linking


def match_by_iou(
    a: np.ndarray, b: np.ndarray, nb: int, area_a: np.ndarray, area_b: np.ndarray,
    iou_threshold: float, cand_a: np.ndarray | None = None, cand_b: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """One-to-one matches between the objects of two label slices, greedy by decreasing IoU.

    Parameters
    ----------
    a, b : (Y, X) integer arrays
        Label slices (0 is background); ``a`` holds ids ``1..na``, ``b`` ids ``1..nb``.
    nb : int
        Largest id in ``b``.
    area_a, area_b : (na + 1,), (nb + 1,) int arrays
        Pixel count of each id (``np.bincount``).
    iou_threshold : float
        Pairs with a lower IoU are never matched.
    cand_a, cand_b : (na + 1,), (nb + 1,) bool arrays, optional
        Only ids marked True take part (e.g. track ends and starts when closing gaps).

    Returns
    -------
    list of (int, int)
        ``(id in a, id in b)`` pairs, best IoU first; each id appears at most once.
    """
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    both = (a > 0) & (b > 0)
    if cand_a is not None:
        both &= cand_a[a] & cand_b[b]
    if not both.any():
        return []
    key = a[both].astype(np.int64) * (nb + 1) + b[both]
    uk, inter = np.unique(key, return_counts=True)
    ia, ib = uk // (nb + 1), uk % (nb + 1)
    iou = inter / (area_a[ia] + area_b[ib] - inter)
    order = np.argsort(-iou, kind="stable")
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for k in order:
        if iou[k] < iou_threshold:
            break
        if ia[k] in used_a or ib[k] in used_b:
            continue
        used_a.add(ia[k])
        used_b.add(ib[k])
        out.append((int(ia[k]), int(ib[k])))
    return out


def link_slices(
    slice_labels: np.ndarray,
    *,
    iou_threshold: float = 0.25,
    max_gap: int = 1,
    min_z_extent: int = 1,
    fill_gaps: bool = True,
) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """Link per-slice 2D labels (Z, Y, X) into 3D objects by overlap.

    Objects on consecutive slices are matched one-to-one (greedily by decreasing IoU) when
    their IoU is at least ``iou_threshold``. Gap closing: an object whose track ends on slice
    z is matched to one whose track starts on slice z + g + 1 (g <= ``max_gap`` slices
    without a match in between), and with ``fill_gaps`` the missing slices get the
    intersection of the two masks (on background pixels only). Objects spanning fewer than
    ``min_z_extent`` slices are dropped.

    Returns
    -------
    labels : (Z, Y, X) int32
        3D objects ``1..N`` (ordered by first slice, then 2D id).
    mapping : dict
        (z, 2D id) -> 3D id (0 when dropped).
    """
    lab = np.asarray(slice_labels)
    if lab.ndim != 3:
        raise ValueError(f"slice_labels must be (Z, Y, X), got shape {lab.shape}")
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    max_gap = _check_int("max_gap", max_gap, 0)
    min_z_extent = _check_int("min_z_extent", min_z_extent, 1)
    nz = lab.shape[0]
    n_per = [int(lab[z].max()) for z in range(nz)]
    offsets = np.concatenate([[0], np.cumsum(n_per)]).astype(np.int64)
    total = int(offsets[-1])
    parent = np.arange(total + 1)

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    areas = [np.bincount(lab[z].ravel(), minlength=n_per[z] + 1) for z in range(nz)]
    has_next = [np.zeros(n_per[z] + 1, bool) for z in range(nz)]
    has_prev = [np.zeros(n_per[z] + 1, bool) for z in range(nz)]
    gap_links = []

    def match(z0, z1, cand0=None, cand1=None):
        return match_by_iou(lab[z0], lab[z1], n_per[z1], areas[z0], areas[z1], iou_threshold,
                            cand0, cand1)

    for z in range(nz - 1):
        for i, j in match(z, z + 1):
            parent[find(offsets[z + 1] + j)] = find(offsets[z] + i)
            has_next[z][i] = True
            has_prev[z + 1][j] = True
    for g in range(1, max_gap + 1):
        for z in range(nz - 1 - g):
            z1 = z + g + 1
            ends = ~has_next[z]
            starts = ~has_prev[z1]
            ends[0] = starts[0] = False
            for i, j in match(z, z1, ends, starts):
                parent[find(offsets[z1] + j)] = find(offsets[z] + i)
                has_next[z][i] = True
                has_prev[z1][j] = True
                gap_links.append((z, i, z1, j))

    roots = np.array([find(a) for a in range(total + 1)])
    zmin = np.full(total + 1, nz)
    zmax = np.full(total + 1, -1)
    for z in range(nz):
        ids = np.arange(offsets[z] + 1, offsets[z + 1] + 1)
        present = areas[z][1:] > 0
        r = roots[ids[present]]
        np.minimum.at(zmin, r, z)
        np.maximum.at(zmax, r, z)
    extent = zmax - zmin + 1
    uniq = []
    seen = set()
    for a in range(1, total + 1):  # order of first appearance
        r = roots[a]
        if r not in seen and extent[r] >= min_z_extent and zmax[r] >= 0:
            seen.add(r)
            uniq.append(r)
    new_id = np.zeros(total + 1, np.int32)
    root_to_id = {r: k for k, r in enumerate(uniq, start=1)}
    for a in range(1, total + 1):
        new_id[a] = root_to_id.get(roots[a], 0)
    out = np.zeros(lab.shape, np.int32)
    mapping = {}
    for z in range(nz):
        lut = np.concatenate([[0], new_id[offsets[z] + 1 : offsets[z + 1] + 1]]).astype(np.int32)
        out[z] = lut[lab[z]]
        for i in range(1, n_per[z] + 1):
            mapping[(z, i)] = int(lut[i])
    if fill_gaps:
        for z0, i, z1, j in gap_links:
            oid = mapping[(z0, i)]
            if oid == 0:
                continue
            inter = (lab[z0] == i) & (lab[z1] == j)
            for z in range(z0 + 1, z1):
                out[z][inter & (out[z] == 0)] = oid
    return out, mapping


# ============================================================================ public entry point


#: SAM's automatic mask generator thresholds, used unless the call or the model says otherwise
SAM_THRESHOLDS = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95, "box_nms_thresh": 0.7}


def recommended_thresholds(model) -> dict[str, float]:
    """``pred_iou_thresh``, ``stability_score_thresh`` and ``box_nms_thresh`` for ``model``:
    SAM's defaults
    updated with the model's own recommendation (``model.automatic_defaults``, read from its
    checkpoint sidecar by ``load_model``). ``model`` may also be that mapping itself (the GUI
    reads it from a sidecar without loading the model)."""
    own = model if isinstance(model, dict) else getattr(model, "automatic_defaults", None)
    return {**SAM_THRESHOLDS, **(own or {})}


def segment_everything(
    image_or_embeddings,
    model=None,
    *,
    points_per_side: int | str | None = "auto",
    points_per_batch: int | None = None,
    pred_iou_thresh: float | None = None,
    stability_score_thresh: float | None = None,
    stability_score_offset: float = 1.0,
    box_nms_thresh: float | None = None,
    crop_n_layers: int = 0,
    crop_nms_thresh: float = 0.7,
    crop_overlap_ratio: float = 512 / 1500,
    crop_n_points_downscale_factor: int = 1,
    min_mask_region_area: int = 0,
    min_visible_fraction: float = 0.5,
    fill_gaps: bool = True,
    point_grids=None,
    foreground=None,
    contrast_limits: tuple[float, float] | None = None,
    image=None,
    link_iou: float = 0.25,
    max_gap: int = 1,
    min_z_extent: int = 1,
    propagate: bool = True,
    axis_kind: str = "z",
    device="auto",
    precision: str = "auto",
    fast_decoder: bool = True,
    keep_masks: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> AutomaticResult:
    """Automatic instance segmentation of a 2D image or a stack ("segment everything").

    Parameters
    ----------
    image_or_embeddings : array-like, ImageEmbedding or StackEmbeddings
        A 2D image (Y, X) or (Y, X, 3|4) of any dtype (its embedding is computed); an
        :class:`~napari_sam.ImageEmbedding` of a 2D image; a stack (Z, Y, X) or
        (Z, Y, X, 3|4); or :class:`~napari_sam.StackEmbeddings` (reused, nothing recomputed).
        A 3-dimensional array whose last axis has 3 or 4 entries is an RGB(A) image.
    model : Sam or str, optional
        The model (or a name for :func:`napari_sam.load_model`); optional for
        StackEmbeddings, which carry theirs.
    points_per_side : int or None
        Grid of ``points_per_side**2`` single-point prompts (crop layer i uses
        ``points_per_side / crop_n_points_downscale_factor**i``). Exclusive with ``point_grids``.
    points_per_batch : int or None
        Prompts decoded together (memory vs speed; the result does not depend on it).
        None: 64 (Meta's default) on the CPU, 256 on a GPU, where larger batches mean fewer
        kernel launches (0.31 s -> 0.21 s for a ViT-B 32 x 32 grid on an H100).
    pred_iou_thresh : float in [0, 1] or None
        Keep masks whose predicted IoU is greater (0 disables the filter). None: the model's
        recommendation (``model.automatic_defaults``, from its sidecar; the bundled demo
        model has one), else SAM's 0.88.
    stability_score_thresh : float in [0, 1] or None
        Keep masks whose stability score is at least this (0 disables the filter). None: the
        model's recommendation, else SAM's 0.95.
    stability_score_offset : float
        Logit offset of the stability score.
    box_nms_thresh : float in [0, 1] or None
        Box-IoU threshold of the NMS between masks of one crop. None: the model's
        recommendation, else SAM's 0.7.
    crop_n_layers : int
        Also segment (2**i)**2 zoomed crops for i = 1..crop_n_layers (needs the image).
    crop_nms_thresh : float in [0, 1]
        Box-IoU threshold of the NMS between crops (smaller crops win).
    crop_overlap_ratio : float
        Overlap of neighbouring crops as a fraction of the image's short side (layer 1).
    crop_n_points_downscale_factor : int
        Grid reduction per crop layer.
    min_mask_region_area : int
        Fill holes and remove islands smaller than this (pixels) in each kept mask, then
        re-run NMS preferring untouched masks, as Meta does (0: off).
    min_visible_fraction : float
        In the label image, drop a mask (it goes to ``hidden``) when smaller masks painted over
        it leave less than this fraction of its area visible; its pixels go to the masks
        underneath. Without it (0, Meta's behaviour) the visible remains of a mask that mostly
        duplicates others (a mask over two touching nuclei, under the two nuclei's own masks)
        become fragment objects. Default 0.5: F1@0.5 of the demo model on validation nuclei
        0.633 -> 0.756 (2D), 0.437 -> 0.474 (3D); see "Label image quality with the demo
        model" in docs/benchmarks.md.
    point_grids : list of (n, 2) arrays, optional
        Explicit grids of (row, col) in [0, 1], one per crop layer.
    foreground : None, "auto", or boolean array (Y, X) / (Z, Y, X)
        Grid points on False pixels are not prompted (faster on sparse images). ``"auto"``:
        pixels above the Otsu threshold of the log of the smoothed image (bright objects, dim
        ones included, on a dark background, e.g. fluorescence), dilated by 1 % of the image size.
    contrast_limits : (float, float), optional
        Intensity mapping for images (default: percentiles, volume-wide for stacks).
    image : array-like (Y, X) or (Y, X, 3|4), optional
        With an :class:`~napari_sam.ImageEmbedding`: the image it was made from (mapped with
        ``contrast_limits`` as the embedding was), so that ``fill_gaps`` can also prompt the
        blobs no mask covers. Without it only the middles of uncovered regions are prompted.
    link_iou, max_gap : float, int
        Stacks only: how the 2D masks of neighbouring slices are linked into objects (see
        :func:`link_slices`).
    min_z_extent : int
        Stacks only: drop objects spanning fewer slices (after propagation when
        ``propagate``).
    propagate : bool
        Stacks only: segment every linked object again by propagating its largest 2D mask up
        and down the stack with :func:`napari_sam.segment_volume` (all objects decoded together,
        its stopping rules, overlaps to the object propagated over fewer slices). Per-slice
        detection misses objects on some slices, so linked objects come out too short or
        split; propagation gives each object its full extent. Demo model, validation nuclei
        volumes: F1@0.5 0.536 -> 0.696 (see "Label image quality with the demo model" in
        docs/benchmarks.md). False: the linked 2D masks as they are.
    axis_kind : {"z", "t"}
        Stacks only: what the stack axis is, for propagation's defaults (see
        :func:`napari_sam.segment_volume`).
    device : str or torch.device
        See :class:`napari_sam.Predictor` (ignored for StackEmbeddings).
    precision : {"auto", "fp32", "bf16", "fp16"}
        See :class:`napari_sam.Predictor` ("auto": bf16 on CUDA, fp32 elsewhere; ignored for
        StackEmbeddings). On a GPU anything but "fp32" also runs :class:`GridDecoder` at
        :data:`GRID_PRECISION_CUDA` (TF32 matrix products); "fp32" keeps it exact.
    fast_decoder : bool
        Use :class:`GridDecoder` (same masks, much faster); False decodes with the model's
        own decoder.
    keep_masks : bool
        Store each mask (cropped to its bbox) in its record.
    progress : callable(done, total), optional
        Stacks only: called after each slice, then during propagation (``total`` is twice the
        number of slices when ``propagate``).

    Returns
    -------
    AutomaticResult
        ``labels`` without overlaps (every pixel gets the smallest mask covering it) and
        ``records``: :class:`MaskRecord` for images, :class:`ObjectRecord` for stacks.

    Raises
    ------
    ValueError
        For invalid parameters (e.g. ``points_per_side=0``, thresholds outside [0, 1]) or
        inputs. An empty (all-equal) image gives zero objects, not an error.
    """
    from napari_sam.embeddings import StackEmbeddings
    from napari_sam.predictor import ImageEmbedding, Predictor

    if isinstance(model, str):
        from napari_sam.models.registry import load_model

        model = load_model(model)
    owner = image_or_embeddings.model if isinstance(image_or_embeddings, StackEmbeddings) else model
    thresholds = recommended_thresholds(owner)
    if pred_iou_thresh is None:
        pred_iou_thresh = thresholds["pred_iou_thresh"]
    if stability_score_thresh is None:
        stability_score_thresh = thresholds["stability_score_thresh"]
    if box_nms_thresh is None:
        box_nms_thresh = thresholds["box_nms_thresh"]
    params = _make_params(
        points_per_side, points_per_batch, pred_iou_thresh, stability_score_thresh,
        stability_score_offset, box_nms_thresh, crop_n_layers, crop_nms_thresh,
        crop_overlap_ratio, crop_n_points_downscale_factor, min_mask_region_area, point_grids,
        fast_decoder, min_visible_fraction, fill_gaps,
    )  # fmt: skip
    if not 0 <= float(link_iou) <= 1:
        raise ValueError(f"link_iou must be in [0, 1], got {link_iou}")
    max_gap = _check_int("max_gap", max_gap, 0)
    min_z_extent = _check_int("min_z_extent", min_z_extent, 1)
    if axis_kind not in ("z", "t"):
        raise ValueError(f"axis_kind must be 'z' or 't', got {axis_kind!r}")
    if isinstance(foreground, str) and foreground != "auto":
        raise ValueError(f"foreground must be None, 'auto' or a boolean array, got {foreground!r}")

    x = image_or_embeddings
    if isinstance(x, StackEmbeddings):
        if (
            model is not None
            and model is not x.model
            and getattr(model, "model_id", None) != x.model.model_id
        ):
            raise ValueError("the stack embeddings were made with another model")
        return _segment_stack(
            x, params, foreground, link_iou, max_gap, min_z_extent, keep_masks, progress,
            bool(propagate), axis_kind,
        )
    if model is None:
        raise ValueError("a model is needed: segment_everything(image, model)")
    if isinstance(x, ImageEmbedding):
        if params.crop_n_layers > 0:
            raise ValueError("crop_n_layers > 0 needs the image, not only its embedding")
        if isinstance(foreground, str):
            raise ValueError("foreground='auto' needs the image; pass a boolean array instead")
        pred = Predictor(model, device=device, precision=precision)
        pred.check_embedding(x)
        fg = _check_fg(foreground, tuple(x.original_size))
        rgb_fn = None
        if image is not None:
            from napari_sam.preprocess import to_uint8_rgb, validate_image

            img = validate_image(np.asarray(image))
            if tuple(img.shape[:2]) != tuple(x.original_size):
                raise ValueError(f"image of shape {img.shape[:2]} is not the one embedded "
                                 f"({tuple(x.original_size)})")
            rgb_fn = lambda: to_uint8_rgb(img, contrast_limits)  # noqa: E731
        return _run_2d(pred, x, rgb_fn, tuple(x.original_size), params, fg, keep_masks)

    arr = x if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)
    shape = tuple(arr.shape)
    is_rgb = len(shape) == 3 and shape[-1] in (3, 4)
    if len(shape) == 2 or is_rgb or (len(shape) == 3 and shape[-1] == 1):
        from napari_sam.preprocess import to_uint8_rgb, validate_image

        img = validate_image(np.asarray(arr))
        size = tuple(img.shape[:2])
        fg = _check_fg(foreground, size, img)
        pred = Predictor(model, device=device, precision=precision)
        if is_constant(img):
            return empty_result(size, params)
        rgb = to_uint8_rgb(img, contrast_limits)
        emb = pred.encode_rgb([rgb])[0]
        return _run_2d(pred, emb, lambda: rgb, size, params, fg, keep_masks)
    if len(shape) in (3, 4):
        from napari_sam.embeddings import embed

        if 0 in shape:
            raise ValueError(f"the stack is empty (shape {shape})")
        emb = embed(arr, model, contrast_limits=contrast_limits, device=device,
                    precision=precision)
        return _segment_stack(
            emb, params, foreground, link_iou, max_gap, min_z_extent, keep_masks, progress,
            bool(propagate), axis_kind,
        )
    raise ValueError(
        f"expected an image (Y, X) or (Y, X, 3|4), a stack (Z, Y, X) or (Z, Y, X, 3|4), an "
        f"ImageEmbedding or StackEmbeddings; got shape {shape}"
    )


def _check_fg(foreground, size, image=None):
    if foreground is None:
        return None
    if isinstance(foreground, str):
        return auto_foreground(image)
    fg = np.asarray(foreground)
    if fg.shape != tuple(size):
        raise ValueError(f"foreground must have the image's shape {tuple(size)}, got {fg.shape}")
    return fg.astype(bool)


def empty_result(size, params, stats=None) -> AutomaticResult:
    return AutomaticResult(np.zeros(size, np.int32), [], stats or _new_stats())


def _new_stats() -> dict:
    keys = (
        "points",
        "decoded_masks",
        "after_iou",
        "after_stability",
        "after_nms",
        "after_crop_nms",
        "gap_points",
    )
    return dict.fromkeys(keys, 0)


def _run_2d(pred, emb, rgb_fn, size, params, fg, keep_masks) -> AutomaticResult:
    engine = _Engine(pred, params)
    stats = _new_stats()
    stats["fast_decoder"] = engine.fast
    with torch.inference_mode():
        labels, records = _segment_2d(engine, emb, rgb_fn, size, fg, stats, keep_masks)
    visible = [r for r in records if r.id > 0]
    stats["objects"] = len(visible)
    return AutomaticResult(labels, visible, stats, hidden=records[len(visible) :])


def _segment_stack(emb, params, foreground, link_iou, max_gap, min_z_extent, keep_masks, progress,
                   propagate=True, axis_kind="z"):
    from napari_sam.preprocess import to_uint8_rgb

    zdim, h, w = emb.shape
    if foreground is not None and not isinstance(foreground, str):
        fg_all = np.asarray(foreground).astype(bool)
        if fg_all.shape == (h, w):
            fg_all = np.broadcast_to(fg_all, (zdim, h, w))
        if fg_all.shape != (zdim, h, w):
            raise ValueError(
                f"foreground must have shape (Y, X) or {(zdim, h, w)}, got {fg_all.shape}"
            )
    else:
        fg_all = None
    engine = _Engine(emb.predictor, params)
    stats = _new_stats()
    stats["fast_decoder"] = engine.fast
    per_slice = np.zeros((zdim, h, w), np.int32)
    slice_records: dict[tuple[int, int], MaskRecord] = {}
    total = 2 * zdim if propagate else zdim  # propagation counts as much as the slices
    with torch.inference_mode():
        for z in range(zdim):
            img = emb.slice_image(z)
            if is_constant(img):
                if progress is not None:
                    progress(z + 1, total)
                continue
            fg = (
                fg_all[z]
                if fg_all is not None
                else (auto_foreground(img) if isinstance(foreground, str) else None)
            )
            rgb_fn = lambda img=img: to_uint8_rgb(img, emb.contrast_limits)  # noqa: E731
            lab, recs = _segment_2d(engine, emb[z], rgb_fn, (h, w), fg, stats, keep_masks)
            per_slice[z] = lab
            for r in (r for r in recs if r.id > 0):
                r.z = z
                slice_records[(z, r.id)] = r
            if progress is not None:
                progress(z + 1, total)
    labels, mapping = link_slices(
        per_slice, iou_threshold=link_iou, max_gap=max_gap,
        min_z_extent=1 if propagate else min_z_extent,
    )
    scores = None
    if propagate and labels.max() > 0:
        part = None if progress is None else (lambda d, t: progress(zdim + d * zdim // t, total))
        det = {(z, mapping[(z, i)]): r.predicted_iou for (z, i), r in slice_records.items()
               if mapping.get((z, i))}
        labels, lut, scores, stats["propagation"] = propagate_objects(
            emb, labels, min_z_extent, axis_kind, part,
            lambda z, oid: det.get((z, oid), float("nan")),
        )
        mapping = {key: int(lut[oid]) for key, oid in mapping.items()}
    elif propagate and progress is not None:
        progress(total, total)  # nothing to propagate
    records = _object_records(labels, mapping, slice_records, scores)
    stats["objects"] = len(records)
    return AutomaticResult(labels, records, stats)


def propagate_objects(emb, linked, min_z_extent, axis_kind, progress, seed_score):
    """Re-segment every linked object by propagating its largest 2D mask through the stack.

    ``seed_score(z, id)``: the predicted IoU of the 2D detection object ``id`` of ``linked``
    has on slice ``z`` (nan where the linking filled the slice in). Returns the new labels
    (ids ``1..N`` by first slice, objects spanning fewer than ``min_z_extent`` slices
    dropped), the map from ``linked`` ids to new ids (0: dropped), each object's per-slice
    predicted IoU ``{new id: {z: iou}}`` and a stats dict.
    """
    from napari_sam.volume import prompts_from_labels, segment_volume

    prompts = prompts_from_labels(linked)  # each object on the slice where it is largest
    res = segment_volume(emb, prompts, axis_kind=axis_kind, progress=progress)
    vol = np.asarray(res.labels)
    first = {oid: z0 for oid, (z0, z1) in res.slice_range.items() if z1 - z0 + 1 >= min_z_extent}
    order = sorted(first, key=lambda oid: (first[oid], oid))
    lut = np.zeros(max(int(linked.max()), int(vol.max())) + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    scores = {}
    for oid in order:
        per = dict(res.scores.get(oid, {}))
        z = prompts[oid][0].slice  # its mask was taken as is (score 1.0): the detection's own
        per[z] = float(seed_score(z, oid))
        scores[int(lut[oid])] = per
    reasons: dict[str, int] = {}
    for both in res.stop_reasons.values():
        for r in both.values():
            reasons[r] = reasons.get(r, 0) + 1
    stats = {"seeds": len(prompts), "kept": len(order), "decoder_calls": int(res.decoder_calls),
             "stop_reasons": reasons}
    return lut[vol], lut, scores, stats


def _object_records(labels, mapping, slice_records, scores=None) -> list[ObjectRecord]:
    from scipy import ndimage

    n = int(labels.max())
    if n == 0:
        return []
    volumes = np.bincount(labels.ravel(), minlength=n + 1)
    members: dict[int, list[MaskRecord]] = {}
    for key, oid in mapping.items():
        if oid and key in slice_records:
            members.setdefault(oid, []).append(slice_records[key])
    out = []
    for oid, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        mem = sorted(members.get(oid, []), key=lambda r: r.z)
        out.append(
            ObjectRecord(
                id=oid,
                bbox=(sl[0].start, sl[1].start, sl[2].start, sl[0].stop, sl[1].stop, sl[2].stop),
                volume=int(volumes[oid]),
                z_extent=int(sl[0].stop - sl[0].start),
                predicted_iou=finite_mean(scores[oid].values()) if scores is not None
                else finite_mean(r.predicted_iou for r in mem),
                stability_score=finite_mean(r.stability_score for r in mem),
                slices=mem,
            )
        )
    return out


def finite_mean(values) -> float:
    """Mean of the finite values (nan when there are none)."""
    v = np.asarray([float(x) for x in values], np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")
