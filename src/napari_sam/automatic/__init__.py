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
``max_gap`` missing slices. With ``propagate`` (the default) a linked object whose area along
z narrows to a neck (at most half the largest area on each side, at least a fifth: two nuclei
stacked along z, chained by the linking) is split there (:func:`split_at_necks`), and every
object is then segmented again by :func:`napari_sam.segment_volume` from its 2D mask on the
slice where it is largest, so objects that the grid found on only some of their slices get
their full extent.
Objects spanning fewer than ``min_z_extent`` slices are dropped last.

Coordinates are napari order: points (row, col), boxes (row0, col0, row1, col1) with the end
exclusive (slices ``[row0:row1, col0:col1]``).

Modules: :mod:`.params` (arguments, grids, crop boxes, thresholds), :mod:`.grid_decoder`,
:mod:`.statistics` (upsampling geometry, counts, stability), :mod:`.boxes` (boxes, NMS),
:mod:`.crops` (per-crop decoding and filtering), :mod:`.gaps` (the ``fill_gaps`` pass),
:mod:`.regions` (``min_mask_region_area``), :mod:`.painting` (the label image),
:mod:`.foreground`, :mod:`.image2d` (the 2D pipeline), :mod:`.linking` (3D linking),
:mod:`.stack` (stacks and propagation), :mod:`.tiled` (images larger than the model input, window
by window), :mod:`.results`, :mod:`.segment` (the entry point).
"""

import importlib

#: the submodule of each public name: imported on first use (PEP 562), so that reading the
#: thresholds of a model (the dock's Model box) does not import torch
_HOMES = {
    "batched_nms": "boxes", "box_iou": "boxes", "masks_to_boxes": "boxes",
    "auto_foreground": "foreground", "constant_value": "foreground",
    "constant_words": "foreground", "is_constant": "foreground",
    "GRID_FUSED_HEAD_CUDA": "grid_decoder", "GRID_PRECISION_CUDA": "grid_decoder",
    "DecoderState": "grid_decoder", "GridDecoder": "grid_decoder",
    "grid_precision": "grid_decoder",
    "LinkPlan": "linking", "SliceLinker": "linking", "link_slices": "linking",
    "link_streamed": "linking", "match_by_iou": "linking", "split_at_necks": "linking",
    "AUTO_GRID_SIDE": "params", "AUTO_GRID_SPACING": "params", "SAM_THRESHOLDS": "params",
    "auto_points_per_side": "params", "build_point_grid": "params",
    "generate_crop_boxes": "params", "recommended_thresholds": "params",
    "rescue_margin_for": "params",
    "remove_small_regions": "regions",
    "AutomaticResult": "results", "MaskRecord": "results", "ObjectRecord": "results",
    "empty_result": "results", "finite_mean": "results",
    "segment_everything": "segment",
    "propagate_objects": "stack",
    "mask_statistics": "statistics", "stability_score": "statistics",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = [
    "AUTO_GRID_SIDE",
    "AUTO_GRID_SPACING",
    "AutomaticResult",
    "DecoderState",
    "GRID_FUSED_HEAD_CUDA",
    "GRID_PRECISION_CUDA",
    "GridDecoder",
    "LinkPlan",
    "MaskRecord",
    "ObjectRecord",
    "SAM_THRESHOLDS",
    "SliceLinker",
    "auto_foreground",
    "auto_points_per_side",
    "batched_nms",
    "box_iou",
    "build_point_grid",
    "constant_value",
    "constant_words",
    "empty_result",
    "finite_mean",
    "generate_crop_boxes",
    "grid_precision",
    "is_constant",
    "link_slices",
    "link_streamed",
    "mask_statistics",
    "masks_to_boxes",
    "match_by_iou",
    "propagate_objects",
    "recommended_thresholds",
    "remove_small_regions",
    "rescue_margin_for",
    "segment_everything",
    "split_at_necks",
    "stability_score",
]
