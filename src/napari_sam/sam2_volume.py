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
(stop reason ``"absent"``). Where objects overlap, a pixel goes to the object with the
highest logit, and a slice's own prompts win over propagation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .models.registry import load_model, require_family
from .models.sam2.model import Sam2Model
from .models.sam2.propagation import Sam2Prompts, Sam2Tracker
from .preprocess import check_contrast_limits, intensity_limits
from .volume import SlicePrompt, VolumeResult
from .volume.records import label_dtype

__all__ = ["ABSENT_REASON", "segment_volume_sam2"]

ABSENT_REASON = "absent"  # "the model found the object absent on stop_after_absent slices"
_MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)


def _slice_reader(stack, size: int, limits: tuple[float, float]) -> Callable[[int], torch.Tensor]:
    """z -> (3, size, size) normalised float32 model input of slice z."""
    lo, hi = limits
    scale = 1.0 / (hi - lo) if hi > lo else 0.0

    def read(z: int) -> torch.Tensor:
        plane = np.asarray(stack[z], dtype=np.float64)
        plane = np.clip(np.nan_to_num((plane - lo) * scale, nan=0.0), 0.0, 1.0)
        t = torch.from_numpy(plane.astype(np.float32))[None, None]
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)[0]
        return (t.expand(3, -1, -1) - _MEAN) / _STD

    return read


def _object_prompts(prompts: list[SlicePrompt], shape: tuple[int, int, int],
                    size: int) -> Sam2Prompts:
    """Our (row, col) pixel prompts -> SAM 2's (x, y) input-frame points, boxes first."""
    z_len, h, w = shape
    scale = np.array([size / w, size / h])
    out = Sam2Prompts()
    for p in prompts:
        if not 0 <= p.slice < z_len:
            raise ValueError(f"a prompt is on slice {p.slice}, outside the stack's "
                             f"{z_len} slices (0..{z_len - 1})")
        coords, labels = [], []
        if p.box is not None:
            r0, c0, r1, c1 = np.asarray(p.box, dtype=np.float64)
            coords += [[c0, r0], [c1, r1]]
            labels += [2, 3]
        if p.points is not None:
            pts = np.asarray(p.points, dtype=np.float64).reshape(-1, 2)
            lab = np.ones(len(pts)) if p.labels is None else np.asarray(p.labels).reshape(-1)
            coords += pts[:, ::-1].tolist()
            labels += lab.astype(int).tolist()
        if coords:
            xy = torch.tensor(np.asarray(coords) * scale, dtype=torch.float32)
            out.points[p.slice] = (xy, torch.tensor(labels, dtype=torch.int32))
        elif p.mask is not None:
            m = torch.as_tensor(np.asarray(p.mask, dtype=np.float32))[None, None]
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
            out.masks[p.slice] = (m[0, 0] >= 0.5).float()
    return out


def _coerce(prompts: Mapping) -> dict[int, list[SlicePrompt]]:
    if not isinstance(prompts, Mapping) or not prompts:
        raise ValueError("prompts must be a non-empty {object_id: [SlicePrompt | dict, ...]}")
    out = {}
    for oid, items in prompts.items():
        if not isinstance(oid, (int, np.integer)) or oid <= 0:
            raise ValueError(f"object ids must be positive integers, got {oid!r}")
        items = items if isinstance(items, (list, tuple)) else [items]
        out[int(oid)] = [SlicePrompt.coerce(i) for i in items]
    return out


def segment_volume_sam2(
    stack,
    prompts: Mapping,
    model: Sam2Model,
    *,
    contrast_limits: tuple[float, float] | None = None,
    stop_after_absent: int | None = 2,
    progress: Callable[[int, int], None] | None = None,
) -> VolumeResult:
    """Segment objects through ``stack`` with SAM 2.1's memory propagation.

    Parameters
    ----------
    stack : array-like (Z, Y, X)
        Any real dtype; numpy, zarr or dask (slices are read one at a time).
    prompts : mapping
        ``{object_id: [SlicePrompt | dict, ...]}`` as for :func:`napari_sam.segment_volume`
        (points (row, col), labels, box (row0, col0, row1, col1), or a mask).
    model : Sam2Model, str or PathLike
        E.g. ``napari_sam.load_model("sam2.1_hiera_tiny")``, or the name or path to load.
    contrast_limits : (float, float), optional
        Intensity mapped to black and white; default: percentiles of the stack.
    stop_after_absent : int or None
        End an object's run in a direction after this many slices in a row on which the
        model finds it absent (None: track to the ends of the stack, as Meta's video
        predictor does).
    progress : callable, optional
        ``progress(done, total)`` after each tracked slice and object.

    Returns
    -------
    VolumeResult
        ``labels`` (Z, Y, X); ``scores[id][z]`` the predicted IoU; stop reasons
        ``"edge"`` or ``"absent"``; ``slice_range``.
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
    objects = _coerce(prompts)
    shape = tuple(int(s) for s in stack.shape)
    size = model.config.image_size
    limits = check_contrast_limits(contrast_limits) if contrast_limits is not None \
        else intensity_limits(stack)
    tracker = Sam2Tracker(model, _slice_reader(stack, size, limits), shape[0])
    wanted = {oid: _object_prompts(p, shape, size) for oid, p in objects.items()}
    best = np.full(shape, -np.inf, np.float32)  # winning logit per pixel
    labels = np.zeros(shape, label_dtype(max(wanted)))
    scores: dict[int, dict[int, float]] = {oid: {} for oid in wanted}
    total, done = len(wanted) * shape[0], 0
    with torch.inference_mode():
        for z, oid, out in tracker.propagate_all(wanted, stop_after_absent):
            logits = F.interpolate(out.low_res_masks.float(), size=shape[1:], mode="bilinear",
                                   align_corners=False)[0, 0].cpu().numpy()
            own = z in wanted[oid].slices
            _paint(labels[z], best[z], logits + (1e4 if own else 0.0), oid)
            scores[oid][z] = float(out.iou.max())
            done += 1
            if progress is not None:
                progress(min(done, total), total)
    return _result(labels, scores, tracker.stopped, wanted)


def _paint(labels: np.ndarray, best: np.ndarray, logits: np.ndarray, oid: int) -> None:
    """Give ``oid`` the pixels where its logit is positive and higher than any so far."""
    win = (logits > 0) & (logits > best)
    labels[win] = oid
    best[win] = logits[win]


def _result(labels, scores, stopped, wanted) -> VolumeResult:
    """Slice ranges, scores and stop reasons of the objects present in ``labels``."""
    present = {int(v) for v in np.unique(labels) if v}
    ranges, reasons, kept, lost = {}, {}, {}, {}
    for oid in wanted:
        if oid not in present:
            lost[oid] = "its masks went to other objects or it was found absent everywhere"
            continue
        zs = np.flatnonzero((labels == oid).any(axis=(1, 2)))
        ranges[oid] = (int(zs[0]), int(zs[-1]))
        kept[oid] = {z: s for z, s in scores[oid].items() if ranges[oid][0] <= z <= ranges[oid][1]}
        reasons[oid] = {d: (ABSENT_REASON if (oid, d) in stopped else "edge")
                        for d in ("up", "down")}
    return VolumeResult(labels=labels, scores=kept, stop_reasons=reasons, slice_range=ranges,
                        lost=lost)
