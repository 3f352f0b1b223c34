"""Segment everything on a stack: every slice with the 2D pipeline (one engine for all),
the 2D objects linked across slices, then each linked object propagated through the stack
from its largest mask, and one :class:`~napari_sam.automatic.ObjectRecord` per 3D object."""

from __future__ import annotations

import numpy as np
import torch

from napari_sam.automatic.crops import CropEngine
from napari_sam.automatic.foreground import auto_foreground, is_constant
from napari_sam.automatic.image2d import segment_2d
from napari_sam.automatic.linking import link_slices, split_at_necks
from napari_sam.automatic.params import AutomaticParams
from napari_sam.automatic.results import (
    AutomaticResult,
    MaskRecord,
    ObjectRecord,
    finite_mean,
    new_stats,
)
from napari_sam.progress import IncreasingProgress


def _stack_foreground(foreground, shape) -> np.ndarray | None:
    """A user's foreground mask (Y, X) or (Z, Y, X) as a (Z, Y, X) bool array (None for no
    mask or ``"auto"``, which is computed per slice)."""
    if foreground is None or isinstance(foreground, str):
        return None
    zdim, h, w = shape
    fg_all = np.asarray(foreground).astype(bool)
    if fg_all.shape == (h, w):
        fg_all = np.broadcast_to(fg_all, (zdim, h, w))
    if fg_all.shape != (zdim, h, w):
        raise ValueError(
            f"foreground must have shape (Y, X) or {(zdim, h, w)}, got {fg_all.shape}"
        )
    return fg_all


def segment_stack(emb, params: AutomaticParams, foreground, link_iou, max_gap, min_z_extent,
                  keep_masks, progress, propagate=True, axis_kind="z", trace=False,
                  images=None) -> AutomaticResult:
    """Segment everything on the stack embeddings ``emb`` (see
    :func:`~napari_sam.automatic.segment_everything` for the arguments).

    ``emb`` is :class:`~napari_sam.StackEmbeddings`, or anything with a ``tiling`` (tiled
    stack embeddings whose ``emb[z]`` is a :class:`~napari_sam.tiling.TiledEmbedding`, or
    :class:`~napari_sam.automatic.tiled.TiledSlices`): then every slice is segmented window
    by window (:func:`~napari_sam.automatic.tiled.segment_tiled_2d`). ``images``, the
    (Z, Y, X[, C]) stack, is read for the slices' pixels when ``emb`` has no ``slice_image``
    (default: the stack tiled stack embeddings keep, ``emb.stack``). ``trace`` (with
    ``propagate``): the result's ``trace`` is the propagation's
    (:func:`napari_sam.trace.automatic_trace`).
    """
    if images is None:
        images = getattr(emb, "stack", None)
    zdim, h, w = emb.shape
    params = params.for_slices(zdim)  # stacks of several slices never rescue masks
    fg_all = _stack_foreground(foreground, (zdim, h, w))
    engine = CropEngine(emb.predictor, params)
    stats = new_stats()
    stats["fast_decoder"] = engine.fast
    tiling = getattr(emb, "tiling", None)
    unit = 1 if tiling is None else len(tiling)  # progress steps per slice
    total = unit * zdim * (2 if propagate else 1)  # propagation counts as much as the slices
    report = None if progress is None else IncreasingProgress(progress, total)  # no repeats
    per_slice, slice_records = _segment_slices(
        emb, engine, fg_all, foreground, stats, keep_masks, images, report, unit,
    )
    labels, mapping = link_slices(
        per_slice, iou_threshold=link_iou, max_gap=max_gap,
        min_z_extent=1 if propagate else min_z_extent,
    )
    scores, found = None, {}
    if propagate and labels.max() > 0:
        part = None if report is None else report.part(unit * zdim, unit * zdim)
        det = {(z, mapping[(z, i)]): r.predicted_iou for (z, i), r in slice_records.items()
               if mapping.get((z, i))}
        labels, final_id, scores, stats["propagation"] = propagate_objects(
            emb, labels, min_z_extent, axis_kind, part,
            lambda z, oid: det.get((z, oid), float("nan")), trace=found,
        )
        mapping = {(z, i): final_id(z, oid) for (z, i), oid in mapping.items()}
    if report is not None:
        report.finish()  # (total, total), also when there was nothing to propagate
    records = _object_records(labels, mapping, slice_records, scores)
    stats["objects"] = len(records)
    result = AutomaticResult(labels, records, stats)
    if trace and propagate:  # what `napari-sam auto` records in its output's sidecar
        from napari_sam.trace import automatic_trace

        result.trace = automatic_trace(labels, images, scores or {}, found)
    return result


def _segment_slices(emb, engine, fg_all, foreground, stats, keep_masks, images, progress,
                    unit):
    """Every slice with the 2D step (tiled when ``emb`` has a tiling): the (Z, Y, X) int32
    per-slice labels and the visible records by (z, id); ``progress(done)`` counts ``unit``
    steps per slice."""
    from napari_sam.automatic.tiled import WindowSource, segment_tiled_2d
    from napari_sam.preprocess import to_uint8_rgb

    zdim, h, w = emb.shape
    tiling = getattr(emb, "tiling", None)
    per_slice = np.zeros((zdim, h, w), np.int32)
    slice_records: dict[tuple[int, int], MaskRecord] = {}
    with torch.inference_mode():
        for z in range(zdim):
            img = emb.slice_image(z) if hasattr(emb, "slice_image") else _slice(images, z)
            if is_constant(img):
                if progress is not None:
                    progress(unit * (z + 1))
                continue
            if tiling is not None:
                src = WindowSource(tiling, emb.predictor, image=img,
                                   contrast_limits=emb.contrast_limits, tiled=emb[z])
                fg = fg_all[z] if fg_all is not None else foreground  # "auto": per window
                step = None if progress is None else (
                    lambda d, t, z=z: progress(unit * z + d))
                lab, recs = segment_tiled_2d(engine, src, fg, stats, keep_masks, step)
            else:
                fg = (
                    fg_all[z]
                    if fg_all is not None
                    else (auto_foreground(img) if isinstance(foreground, str) else None)
                )
                rgb_fn = lambda img=img: to_uint8_rgb(img, emb.contrast_limits)  # noqa: E731
                lab, recs = segment_2d(engine, emb[z], rgb_fn, (h, w), fg, stats, keep_masks)
            per_slice[z] = lab
            for r in (r for r in recs if r.id > 0):
                r.z = z
                slice_records[(z, r.id)] = r
            if progress is not None:
                progress(unit * (z + 1))
    return per_slice, slice_records


def _slice(images, z: int) -> np.ndarray:
    """Slice ``z`` of the (Z, Y, X[, C]) ``images`` ((Y, X, 1) as (Y, X))."""
    if images is None:
        raise ValueError("tiled stack embeddings without slice_image need the stack's images")
    arr = np.asarray(images[z])
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr


def propagate_objects(emb, linked, min_z_extent, axis_kind, progress, seed_score,
                      trace: dict | None = None):
    """Re-segment every linked object by propagating its largest 2D mask through the stack.

    Linked objects are first split where their area along z narrows to a neck
    (:func:`~napari_sam.automatic.linking.split_at_necks`: nuclei stacked along z that the
    linking chained; each part is propagated on its own). ``seed_score(z, id)``: the
    predicted IoU of the 2D detection object ``id`` of ``linked`` has on slice ``z`` (nan
    where the linking filled the slice in). In a time series (``axis_kind`` "t") the
    detections the propagation left out and no object covers are kept
    (:func:`keep_uncovered_detections`: a dividing cell). Returns the new labels (ids ``1..N`` by first
    slice, objects spanning fewer than ``min_z_extent`` slices dropped), ``final_id(z, id)``:
    the new id of linked object ``id``'s mask on slice ``z`` (0: dropped), each object's
    per-slice predicted IoU ``{new id: {z: iou}}`` and a stats dict (``split_at_necks``:
    the parts split off). ``trace``, a dict, receives what a propagation trace
    (:func:`napari_sam.trace.propagation_trace`) needs besides labels and scores, under the
    new ids: ``"stop_reasons"`` ``{id: {"up"|"down": reason}}`` (``{}`` for an object made
    of detections kept as they were found, not propagated) and ``"seeds"`` ``{id: [slice]}``
    (the slice its propagation started from).
    """
    from napari_sam.volume import prompts_from_labels, segment_volume

    linked, moved = split_at_necks(linked)  # objects stacked along z, chained by the linking
    origin = {new: old for (_, old), new in moved.items()}
    prompts = prompts_from_labels(linked)  # each object on the slice where it is largest
    res = segment_volume(emb, prompts, axis_kind=axis_kind, progress=progress)
    vol = np.asarray(res.labels)
    ranges = dict(res.slice_range)
    # a time series only: through a volume, the detections past a propagated nucleus's end
    # are mostly its blur or a neighbour's (F1@0.5 on the README's sample 0.49 -> 0.45, on
    # the real development stack 0.72 -> 0.57 when kept); a cell persists from frame to frame
    kept: dict[tuple[int, int], int] = {}
    if axis_kind == "t":  # (labelled in place: a copy of the volume for a time series only)
        vol = np.array(vol)
        kept = keep_uncovered_detections(linked, vol, ranges, min_z_extent)
    kept_into: dict[int, list[tuple[int, int]]] = {}  # id -> (slice, linked id) put back
    for (z, linked_id), into in kept.items():
        kept_into.setdefault(into, []).append((z, linked_id))
    first = {oid: z0 for oid, (z0, z1) in ranges.items() if z1 - z0 + 1 >= min_z_extent}
    order = sorted(first, key=lambda oid: (first[oid], oid))
    lut = np.zeros(max(int(linked.max()), int(vol.max())) + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    scores = {}
    for oid in order:
        per = dict(res.scores.get(oid, {}))
        if oid in prompts:  # its mask was taken as is (score 1.0): the detection's own
            z = prompts[oid][0].slice
            per[z] = float(seed_score(z, origin.get(oid, oid)))
        for z, linked_id in kept_into.get(oid, ()):  # detections kept as they were found
            per[z] = float(seed_score(z, origin.get(linked_id, linked_id)))
        scores[int(lut[oid])] = per
    reasons: dict[str, int] = {}
    for both in res.stop_reasons.values():
        for r in both.values():
            reasons[r] = reasons.get(r, 0) + 1
    stats = {"seeds": len(prompts), "kept": len(order), "decoder_calls": int(res.decoder_calls),
             "stop_reasons": reasons, "split_at_necks": len(origin),
             "detections_kept_past_stops": len(kept)}

    if trace is not None:
        new = {oid: int(lut[oid]) for oid in order}
        trace["stop_reasons"] = {new[o]: dict(res.stop_reasons.get(o, {})) for o in order}
        trace["seeds"] = {new[o]: [int(prompts[o][0].slice)] for o in order if o in prompts}

    def final_id(z: int, oid: int) -> int:  # of the linked object ``oid``'s mask on slice z
        oid = moved.get((z, oid), oid)
        return int(lut[kept.get((z, oid), oid)])

    return lut[vol], final_id, scores, stats


def keep_uncovered_detections(linked: np.ndarray, vol: np.ndarray,
                              ranges: dict[int, tuple[int, int]],
                              min_z_extent: int) -> dict[tuple[int, int], int]:
    """Put back the 2D detections of each linked object that its propagation left out and no
    propagated object covers, in place in ``vol`` (for a time series).

    Propagation stops where a rule fires (a dividing cell in a time series, a faint end of a
    nucleus); the per-slice detections the linking chained past that stop were dropped, so
    ``auto`` lost cells that ``--no-propagate`` kept (a daughter cell gone for 6 frames,
    session 33). A run of consecutive such slices (its detection at most half covered by
    propagated objects) next to the object's propagated slices extends it; a run apart
    from them becomes a new object when it spans ``min_z_extent`` slices. Only the pixels no
    propagated object holds are labelled.

    Parameters
    ----------
    linked : (Z, Y, X) int array
        The linked 2D detections, ids as propagated.
    vol : (Z, Y, X) int array
        The propagated labels; changed in place.
    ranges : dict
        ``{id: (first slice, last slice)}`` of the propagated objects; updated in place
        (new objects get ids above both arrays' largest).

    Returns
    -------
    dict
        ``{(z, linked id): id in vol}`` of each detection put back.
    """
    from scipy import ndimage as ndi

    put: dict[tuple[int, int], int] = {}
    next_id = max(int(linked.max()), int(vol.max())) + 1
    for lid, box in enumerate(ndi.find_objects(linked), start=1):
        if box is None:
            continue
        z0, z1 = ranges.get(lid, (None, None))
        runs: list[list[int]] = []
        for z in range(box[0].start, box[0].stop):
            det = linked[z] == lid
            if not det.any() or (z0 is not None and z0 <= z <= z1) or (
                    vol[z][det] > 0).mean() > 0.5:
                continue
            if runs and runs[-1][-1] == z - 1:
                runs[-1].append(z)
            else:
                runs.append([z])
        for run in runs:
            touches = z0 is not None and (run[0] == z1 + 1 or run[-1] == z0 - 1)
            if not touches and len(run) < min_z_extent:
                continue
            into = lid if touches else next_id
            next_id += 0 if touches else 1
            for z in run:
                free = (linked[z] == lid) & (vol[z] == 0)
                vol[z][free] = into
                put[(z, lid)] = into
            lo, hi = ranges.get(into, (run[0], run[-1]))
            ranges[into] = (min(lo, run[0]), max(hi, run[-1]))
            if touches:
                z0, z1 = ranges[into]
    return put


def _object_records(labels, mapping, slice_records, scores=None) -> list[ObjectRecord]:
    """One ObjectRecord per 3D id of ``labels``, with the 2D records ``mapping`` links to it."""
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
