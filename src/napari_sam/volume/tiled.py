"""Propagation through a tiled stack (:class:`napari_sam.tiled_stack.TiledStackEmbeddings`).

Each object is propagated in one window: the window whose core holds the anchor of the
object's first prompt (its lowest annotated slice: the mean of its positive points, else the
centre of its box, else the centroid of its mask; :meth:`napari_sam.tiling.Tiling.owner`),
or in a zoomed-out view of its slices when its first prompts are larger than a window holds
whole (:func:`frame_of`) or its first points or box are decoded zoomed out on their slice, as
their preview is (:func:`decoded_frame`).
The objects of a window are propagated together by the ordinary propagation, on the
window's sub-stack (:meth:`~napari_sam.tiled_stack.TiledStackEmbeddings.window_stack`) with
their prompts shifted into the window's frame; an object smaller than the halo whose anchor
is in a core is whole in that window. The accepted masks of every window are then shifted
back and composed into the whole stack's labels by the usual rule
(:func:`napari_sam.volume.records.compose_labels`: the mask fewer slices from its annotated
slice, then the highest logit, ...), so objects of different windows never overwrite each
other's pixels by arrival order; the claimed rule runs within each window.

Prompts of an object that reach beyond its window are fitted into it: points outside the
window are dropped, boxes clipped to it and masks cropped; a slice left with nothing is no
longer annotated for that object (its first annotated slice always keeps its anchor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from napari_sam.progress import IncreasingProgress
from napari_sam.tiling import Window, zoom_view
from napari_sam.volume.annotations import Annotation, ObjectPrompts
from napari_sam.volume.records import Record, compose_labels
from napari_sam.volume.result import VolumeResult, build_result

__all__ = ["anchor", "decoded_frame", "frame_of", "is_tiled", "segment_tiled", "window_prompts"]


def is_tiled(emb) -> bool:
    """Whether ``emb`` is the tiled embeddings of a stack (has a tiling and window stacks)."""
    return hasattr(emb, "tiling") and hasattr(emb, "window_stack")


def anchor(obj: ObjectPrompts) -> tuple[float, float]:
    """(row, col) of an object's first prompt: on its lowest annotated slice, the mean of its
    positive points, else the centre of its box, else the centroid of its mask."""
    a = obj.annotations[min(obj.annotations)]
    if a.points is not None and a.labels.any():
        r, c = a.points[a.labels > 0].mean(0)
    elif a.box is not None:
        r, c = (a.box[0] + a.box[2]) / 2, (a.box[1] + a.box[3]) / 2
    elif a.mask is not None:
        rr, cc = np.nonzero(a.mask)
        r, c = rr.mean(), cc.mean()
    else:  # only negative points with nothing else is no annotation (normalize_prompts)
        r, c = a.points.mean(0)
    return float(r), float(c)


def frame_of(tiling, obj: ObjectPrompts) -> Window:
    """The window an object is propagated in: the window whose core holds its anchor, or,
    when its first prompts are larger than a window holds whole (positive points, box or
    mask spanning more than the window less its two halos), a zoomed-out view that shows
    them (:func:`napari_sam.tiling.zoom_view`, 2.5 times their extent, shrunk to the model
    input): an object larger than a window was cut to one window's sliver."""
    a = obj.annotations[min(obj.annotations)]
    rows: list[float] = []
    cols: list[float] = []
    if a.points is not None and a.labels.any():
        pos = a.points[a.labels > 0]
        rows += [float(pos[:, 0].min()), float(pos[:, 0].max())]
        cols += [float(pos[:, 1].min()), float(pos[:, 1].max())]
    if a.box is not None:
        rows += [float(a.box[0]), float(a.box[2])]
        cols += [float(a.box[1]), float(a.box[3])]
    if a.mask is not None and a.mask.any():
        rr, cc = np.nonzero(a.mask)
        rows += [float(rr.min()), float(rr.max())]
        cols += [float(cc.min()), float(cc.max())]
    extent = max(np.ptp(rows), np.ptp(cols)) + 1 if rows else 0.0
    if extent > tiling.window - 2 * tiling.halo:
        return zoom_view(tiling, rows, cols)
    return tiling.owner(*anchor(obj))


def decoded_frame(emb, obj: ObjectPrompts, predictor=None, slices: dict | None = None
                  ) -> Window | None:
    """The zoomed-out view an object's first points or box are decoded in on their slice, as
    a click's or a box's preview decodes them (:func:`napari_sam.tiled_prompts.decode_tiled`:
    when the windows' mask is cut, a view, if the model scores it higher), else None (the
    object goes to its window; a mask prompt keeps :func:`frame_of`'s choice).

    An object previewed whole in a view was propagated in the window of its prompt, where
    the model sees it cut (a 150 px nucleus in 256 px windows: 3D IoU 0.14 against 0.67).
    Reads only the windows that hold the prompt and the view, of that slice (a view
    already encoded, by the preview or another object, is not encoded again).

    Parameters
    ----------
    emb : TiledStackEmbeddings
    obj : ObjectPrompts
        In the whole stack's frame.
    predictor : Predictor, optional
        What decodes (default: the embeddings' own).
    slices : dict, optional
        {z: ``emb.slice_on_demand(z)``} kept between the objects of one propagation.
    """
    from napari_sam.tiled_prompts import decode_tiled

    z = min(obj.annotations)
    a = obj.annotations[z]
    if a.mask is not None:
        return None
    slices = {} if slices is None else slices
    if z not in slices:
        slices[z] = emb.slice_on_demand(z)
    res = decode_tiled(predictor or emb.predictor, slices[z], a.points, a.labels, a.box)
    return res.view


def _points_in(points: np.ndarray, win: Window) -> tuple[np.ndarray, np.ndarray]:
    """Points shifted into the window's frame and which of them lie in it."""
    h, w = win.shape
    p = points - np.asarray(win.offset, np.float64)
    keep = (p[:, 0] >= -0.5) & (p[:, 0] <= h - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] <= w - 0.5)
    return p, keep


def _shift_annotation(a: Annotation, win: Window) -> Annotation | None:
    """The annotation in the window's frame (points outside dropped, box clipped, mask
    cropped), or None when nothing of it lies in the window."""
    h, w = win.shape
    r0, c0 = win.offset
    pts = lab = box = mask = None
    if a.points is not None:
        p, keep = _points_in(a.points, win)
        if keep.any():
            pts, lab = p[keep], a.labels[keep]
    if a.box is not None:
        b = a.box - np.array([r0, c0, r0, c0], np.float64)
        if not (b[2] < 0 or b[3] < 0 or b[0] > h - 1 or b[1] > w - 1):
            box = np.clip(b, 0, [h - 1, w - 1, h - 1, w - 1])
    if a.mask is not None:
        m = a.mask[win.slices]
        mask = m if m.any() else None
    if box is None and mask is None and (lab is None or not lab.any()):
        return None  # nothing positive left in the window
    return Annotation(pts, lab, box, mask, a.candidate)


def window_prompts(obj: ObjectPrompts, win: Window) -> ObjectPrompts:
    """The object's prompts in the window's frame (see the module docstring)."""
    annotations = {}
    for z, a in obj.annotations.items():
        shifted = _shift_annotation(a, win)
        if shifted is not None:
            annotations[z] = shifted
    if not annotations:  # the anchor is in the window; keep the first slice's points there
        raise ValueError(f"object {obj.id}: none of its prompts lies in its window {win.outer}")
    negatives = {}
    for z, pts in obj.negatives.items():
        p, keep = _points_in(pts, win)
        if keep.any():
            negatives[z] = p[keep]
    return ObjectPrompts(obj.id, annotations, list(obj.stops), negatives)


def _window_progress(counter: IncreasingProgress | None, start: int, span: int):
    """The progress of one window's run, counted in the whole run's (done, Z x objects):
    its objects' ``span`` object-slices from ``start`` (those of the windows before it)."""
    return None if counter is None else counter.part(start, span)


def segment_tiled(emb, objects: list[ObjectPrompts], run: Callable, progress=None,
                  predictor=None, warn_lost: bool = True) -> VolumeResult:
    """Propagate ``objects`` (whole-stack frame) through the tiled embeddings ``emb``.

    Parameters
    ----------
    emb : TiledStackEmbeddings
    objects : list of ObjectPrompts
        Validated against the whole stack (:func:`normalize_prompts`).
    run : callable(window_embeddings, objects, progress) -> (Propagator, up, down)
        The ordinary propagation of objects through one window's sub-stack (provided by
        :func:`napari_sam.segment_volume` with its settings).
    progress : callable(done, total), optional
        Called as the objects are carried through the slices (total Z x objects: each
        window used moves it over its objects' share, see ``Propagator.report_progress``),
        and with (0, total) after each object's frame is chosen (:func:`decoded_frame` may encode a view:
        a GUI can cancel between them).
    predictor : Predictor, optional
        What decodes the first prompts that choose the frames (default: ``emb``'s own).

    Returns
    -------
    VolumeResult
        In the whole stack's frame: labels (Z, Y, X), per-object scores, slice ranges, stop
        reasons, chains; decoder calls summed over the windows.
    """
    tiling = emb.tiling
    groups: dict[tuple, list[int]] = {}
    frames: dict[tuple, Window] = {}
    slices: dict = {}  # {z: the slice's windows and views, encoded as decoding reads them}
    for k, obj in enumerate(objects):
        frame = frame_of(tiling, obj)
        if frame.index >= 0:
            frame = decoded_frame(emb, obj, predictor, slices) or frame
            if progress is not None:
                progress(0, int(emb.shape[0]) * len(objects))
        key = (frame.index, frame.outer)  # windows by index, views by their place
        frames[key] = frame
        groups.setdefault(key, []).append(k)
    n_slices = int(emb.shape[0])
    counter = None if progress is None else IncreasingProgress(progress,
                                                               n_slices * len(objects))
    records: dict[tuple[int, int], Record] = {}
    distance: dict[tuple[int, int], int] = {}
    up_all, down_all, kept = [], [], list(objects)
    calls = np.zeros(n_slices, np.int64)
    decoder_calls = 0
    counted = 0  # object-slices of the windows run before
    for key, ks in sorted(groups.items()):
        win = frames[key]
        sub = [window_prompts(objects[k], win) for k in ks]
        stack = emb.window_stack(win.index) if win.index >= 0 else emb.view_stack(win)
        prop, up, down = run(stack, sub, _window_progress(counter, counted, n_slices * len(ks)))
        counted += n_slices * len(ks)
        r0, c0 = win.offset
        for (j, z), rec in prop.records.items():
            records[(ks[j], z)] = Record(rec.r0 + r0, rec.c0 + c0, rec.logits, rec.score)
            distance[(ks[j], z)] = prop.distance.get((j, z), 0)
        up_all += [replace(c, k=ks[c.k], partner=None) for c in up]
        down_all += [replace(c, k=ks[c.k], partner=None) for c in down]
        for j, k in enumerate(ks):  # the annotated slices the window kept
            kept[k] = replace(objects[k], annotations={
                z: objects[k].annotations[z] for z in sub[j].annotations})
        calls += np.asarray(prop.calls_per_slice, np.int64)
        decoder_calls += int(prop.decoder_calls)
    labels = compose_labels(records, distance, [o.id for o in objects], tuple(emb.shape))
    return build_result(labels, records, kept, up_all, down_all, decoder_calls, calls,
                        warn=warn_lost)
