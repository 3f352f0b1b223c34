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

The package, one concept per module: :mod:`~napari_sam.volume.annotations` (prompts per
object and slice, validation, :func:`prompts_from_labels`), :mod:`~napari_sam.volume.mask_prompts`
(prompts derived from a mask), :mod:`~napari_sam.volume.stop_rules` (why a chain ends; the
contrast measure), :mod:`~napari_sam.volume.chains`, :mod:`~napari_sam.volume.propagator` (a
sweep and the per-slice step), :mod:`~napari_sam.volume.sweeps` (the up and down sweeps at
once), :mod:`~napari_sam.volume.claims` (the claimed rule),
:mod:`~napari_sam.volume.records` (composing the labels), :mod:`~napari_sam.volume.result` and
:mod:`~napari_sam.volume.segment` (:func:`segment_volume`). Prompt primitives shared with the
predictor (:func:`mask_to_logits`, upsampling, batching by kind) are in :mod:`napari_sam.prompts`.
"""

from napari_sam.prompts import mask_to_logits
from napari_sam.volume.annotations import SlicePrompt, prompts_from_labels
from napari_sam.volume.mask_prompts import box_from_mask, center_from_mask, points_from_mask
from napari_sam.volume.result import VolumeResult
from napari_sam.volume.segment import AXIS_KINDS, MODES, segment_volume  # noqa: F401
from napari_sam.volume.stop_rules import STOP_REASONS, mask_contrast, stop_reason

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
