"""The parameters of segment everything: validation of the user's arguments into one frozen
:class:`AutomaticParams`, the point grids (``points_per_side="auto"``), the crop boxes and the
recommended filtering thresholds of a model."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import product

import numpy as np


@dataclass(frozen=True)
class AutomaticParams:
    """The validated arguments of :func:`~napari_sam.automatic.segment_everything` that
    steer the 2D pipeline (see its docstring for each one); made by :func:`make_params`."""

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
    rescue_margin: float = 0.1

    def for_slices(self, n_slices: int) -> AutomaticParams:
        """These parameters for a slice of a stack of ``n_slices`` slices: stacks of several
        slices never rescue masks (:func:`rescue_margin_for`)."""
        return replace(self, rescue_margin=rescue_margin_for(self.rescue_margin, n_slices))

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


def rescue_margin_for(margin: float, n_slices: int) -> float:
    """The rescue margin a slice of a stack of ``n_slices`` slices uses: ``margin`` for a
    single image, 0 for stacks of several slices. Rescued masks help single images; in stacks
    linking and propagation fill in what one slice misses, and the rescued fragments became
    false objects (validation 3D F1 0.761 -> 0.712, the real stack 0.636 -> 0.483;
    docs/benchmarks.md, "Rescued masks"). The one home of that rule (``segment_stack`` and the
    batch ``auto`` job's slices)."""
    return float(margin) if int(n_slices) <= 1 else 0.0


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


def check_int(name, value, minimum):
    """``value`` as an int, or a ValueError naming ``name`` unless it is an integer (not a
    bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_unit(name, value):
    """``value`` as a float, or a ValueError naming ``name`` unless it is a number in [0, 1]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return v


def make_params(
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
    rescue_margin=0.1,
) -> AutomaticParams:
    """Validate the arguments of ``segment_everything`` into :class:`AutomaticParams`
    (ValueError naming the first bad one)."""
    if (points_per_side is None) == (point_grids is None):
        raise ValueError("give exactly one of points_per_side or point_grids")
    if points_per_side is not None and not (isinstance(points_per_side, str)
                                            and points_per_side == "auto"):
        if isinstance(points_per_side, str):
            raise ValueError(
                f"points_per_side must be an integer >= 1 or 'auto', got {points_per_side!r}"
            )
        points_per_side = check_int("points_per_side", points_per_side, 1)
    crop_n_layers = check_int("crop_n_layers", crop_n_layers, 0)
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
    area = check_int("min_mask_region_area", min_mask_region_area, 0)
    return AutomaticParams(
        points_per_side=points_per_side,
        points_per_batch=(None if points_per_batch is None
                          else check_int("points_per_batch", points_per_batch, 1)),
        pred_iou_thresh=check_unit("pred_iou_thresh", pred_iou_thresh),
        stability_score_thresh=check_unit("stability_score_thresh", stability_score_thresh),
        stability_score_offset=offset,
        box_nms_thresh=check_unit("box_nms_thresh", box_nms_thresh),
        crop_n_layers=crop_n_layers,
        crop_nms_thresh=check_unit("crop_nms_thresh", crop_nms_thresh),
        crop_overlap_ratio=overlap,
        crop_n_points_downscale_factor=check_int(
            "crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1
        ),
        min_mask_region_area=area,
        point_grids=point_grids,
        fast_decoder=bool(fast_decoder),
        min_visible_fraction=check_unit("min_visible_fraction", min_visible_fraction),
        fill_gaps=bool(fill_gaps),
        rescue_margin=check_unit("rescue_margin", rescue_margin),
    )


# ============================================================================ grids and crops


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) points (row, col) evenly spaced in [0, 1], centred in their cells.

    Same points and order as Meta's ``build_point_grid`` (which returns (x, y)).
    """
    n = check_int("points per side", n_per_side, 1)
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


# ============================================================================ thresholds


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
