"""Segment everything on a 2D image larger than the model input, window by window
(:class:`~napari_sam.tiling.Tiling`): each window is segmented as an ordinary image at full
resolution, each mask is kept by one window only, duplicates across window borders are
removed, and one label image of the whole image is painted.

How an object on a window border is kept once:

1. **The core rule.** A window keeps a mask only when the mask's centre of mass lies in the
   window's core grown by :data:`CORE_MARGIN` of the halo (the cores partition the image).
   An object smaller than the halo whose centre is in a core is whole in that core's window,
   so it is found there at full size. The small growth lets the neighbouring window keep an
   object that the core's own window missed; the duplicates it creates go in step 2.
2. **De-duplication across windows.** Two kept masks from different windows are the same
   object when their IoU is at least :data:`DUPLICATE_IOU`, or when at least
   :data:`DUPLICATE_COVER` of the smaller lies in the larger and the smaller is cut by its
   window's edge (a part of an object that crosses the window). Of a duplicate pair the
   one kept is: a mask not cut by its window's edge (not touching an edge that is not an
   image border) over a cut one; then the one from the window whose core holds its centre;
   then the higher predicted IoU; then the lower window index.
3. **Painting.** The survivors, in the image frame, are painted with the 2D pipeline's rules
   (:func:`~napari_sam.automatic.painting.paint_labels`: smaller on top, mostly covered masks
   hidden, ids ``1..N``).

Memory is bounded by the windows: a window's embedding lives while the window is segmented
(when this module encodes them), and each mask is kept cropped to its bounding box; the only
image-sized array is the int32 label image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from napari_sam.automatic.crops import CropEngine
from napari_sam.automatic.foreground import auto_foreground, is_constant
from napari_sam.automatic.image2d import segment_2d
from napari_sam.automatic.painting import paint_labels
from napari_sam.automatic.results import AutomaticResult, MaskRecord, new_stats

#: a window keeps masks whose centre lies in its core grown by this fraction of the halo
CORE_MARGIN = 0.25
#: masks of different windows with at least this IoU are one object
DUPLICATE_IOU = 0.5
#: a mask cut by its window's edge with at least this fraction inside another is a duplicate
DUPLICATE_COVER = 0.8


class WindowSource:
    """The embedding and the RGB image of each window of one 2D image.

    Parameters
    ----------
    tiling : Tiling
        The windows.
    predictor : Predictor
        Encodes the windows when ``tiled`` is None.
    image : array-like (Y, X) or (Y, X, 3|4), optional
        The image; needed without ``tiled`` (the windows are encoded from it), for the gap
        pass's blobs, for crop layers and for ``foreground="auto"``.
    contrast_limits : (float, float), optional
        The intensity mapping of every window (default: percentiles of the whole image).
    tiled : TiledEmbedding, optional
        Ready window embeddings (nothing is encoded).
    batch_size : int
        Windows encoded per encoder call (the following windows of the same shape).
    """

    def __init__(self, tiling, predictor, image=None, contrast_limits=None, tiled=None,
                 batch_size: int = 4):
        from napari_sam.preprocess import intensity_limits

        if tiled is None and image is None:
            raise ValueError("tiled segment everything needs the image or its TiledEmbedding")
        self.tiling, self.pred, self.image, self.tiled = tiling, predictor, image, tiled
        if image is not None and contrast_limits is None:
            contrast_limits = intensity_limits(image)
        self.contrast_limits = contrast_limits
        self.batch_size = max(1, int(batch_size))
        self._cache: dict[int, object] = {}

    def crop(self, win) -> np.ndarray | None:
        """The window's pixels of the image (None without the image)."""
        return None if self.image is None else np.asarray(self.image[win.slices])

    def rgb(self, win) -> np.ndarray:
        """The window's (y, x, 3) uint8 RGB, mapped like every other window."""
        from napari_sam.preprocess import to_uint8_rgb

        return to_uint8_rgb(self.crop(win), self.contrast_limits)

    def embedding(self, win):
        """The window's ImageEmbedding (encoded here, with the next windows of its shape,
        when there is no TiledEmbedding; each is dropped once handed out)."""
        if self.tiled is not None:
            return self.tiled.embeddings[win.index]
        if win.index not in self._cache:
            wins = self.tiling.windows
            batch = [w for w in wins[win.index:] if w.shape == win.shape][:self.batch_size]
            for w, e in zip(batch, self.pred.encode_rgb([self.rgb(w) for w in batch])):
                self._cache[w.index] = e
        return self._cache.pop(win.index)


@dataclass
class _Kept:
    """A mask kept by a window, in the image frame."""

    record: MaskRecord
    window: int
    cut: bool  # touches an edge of its window that is not an image border
    own_core: bool  # its centre lies in its window's core


def segment_tiled(pred, source: WindowSource, params, foreground, keep_masks,
                  progress: Callable[[int, int], None] | None = None) -> AutomaticResult:
    """Segment everything on a tiled 2D image (see the module docstring).

    Parameters
    ----------
    pred : Predictor
        Decodes every window (one :class:`CropEngine` for all windows).
    source : WindowSource
        The windows' embeddings and pixels.
    params : AutomaticParams
        As for the untiled pipeline; ``points_per_side`` is per window.
    foreground : None, "auto" or (Y, X) bool array
        ``"auto"`` is computed on each window as if it were its own image.
    keep_masks : bool
        Keep each record's mask (cropped to its bbox).
    progress : callable(done, total), optional
        Called after each window (``total`` is the number of windows); raising from it
        stops the run (that is how the GUI cancels).

    Returns
    -------
    AutomaticResult
        ``labels`` (Y, X) int32 of the whole image, records in the image frame; ``stats``
        adds ``windows``, ``outside_core`` (masks left to another window) and
        ``border_duplicates`` (masks removed by the de-duplication).
    """
    engine = CropEngine(pred, params)
    stats = new_stats()
    stats["fast_decoder"] = engine.fast
    with torch.inference_mode():
        labels, records = segment_tiled_2d(engine, source, foreground, stats, keep_masks,
                                           progress)
    visible = [r for r in records if r.id > 0]
    stats["objects"] = len(visible)
    return AutomaticResult(labels, visible, stats, hidden=records[len(visible):])


def segment_tiled_2d(engine: CropEngine, source: WindowSource, foreground, stats,
                     keep_masks=True, progress=None):
    """The tiled 2D step, with an engine shared by the windows (and by the slices of a
    stack): returns the (Y, X) int32 labels and the records of
    :func:`~napari_sam.automatic.painting.paint_labels` (visible first, then hidden ones with
    id 0), in the image frame; ``stats`` is updated in place."""
    tiling = source.tiling
    wins = tiling.windows
    kept: list[_Kept] = []
    stats.setdefault("windows", 0)
    stats.setdefault("outside_core", 0)
    stats.setdefault("border_duplicates", 0)
    for win in wins:
        kept.extend(_window_masks(engine, source, win, foreground, stats))
        stats["windows"] += 1
        if progress is not None:
            progress(win.index + 1, len(wins))
    drop = duplicates(kept, tiling)
    stats["border_duplicates"] += len(drop)
    kept = [k for i, k in enumerate(kept) if i not in drop]
    return _paint(tiling.image_shape, [k.record for k in kept], keep_masks,
                  engine.p.min_visible_fraction)


def _window_masks(engine, source: WindowSource, win, foreground, stats) -> list[_Kept]:
    """Segment one window as its own image and keep the masks whose centre lies in its
    (grown) core, moved to the image frame."""
    crop = source.crop(win)
    if crop is not None and is_constant(crop):
        return []
    if foreground is None:
        fg = None
    elif isinstance(foreground, str):
        if crop is None:
            raise ValueError("foreground='auto' needs the image; pass image= or a boolean array")
        fg = auto_foreground(crop)
    else:
        fg = np.asarray(foreground[win.slices], bool)
    rgb_fn = None if crop is None else (lambda: source.rgb(win))
    _, recs = segment_2d(engine, source.embedding(win), rgb_fn, win.shape, fg, stats, True)
    tiling = source.tiling
    grow = CORE_MARGIN * tiling.halo
    r0, c0, r1, c1 = win.core
    h, w = tiling.image_shape
    dr, dc = win.offset
    out = []
    for rec in recs:
        cr, cc = _centre(rec)
        cr, cc = cr + dr, cc + dc
        if not (r0 - grow <= cr < r1 + grow and c0 - grow <= cc < c1 + grow):
            stats["outside_core"] += 1
            continue
        rec = _moved(rec, dr, dc)
        out.append(_Kept(rec, win.index, _cut(rec.bbox, win.outer, (h, w)),
                         bool(win.contains(cr, cc, core=True))))
    return out


def _centre(rec: MaskRecord) -> tuple[float, float]:
    """(row, col) centre of mass of a record's mask, in the record's frame."""
    rows, cols = np.nonzero(rec.segmentation)
    if rows.size == 0:
        r0, c0, r1, c1 = rec.bbox
        return (r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2
    return rec.bbox[0] + float(rows.mean()), rec.bbox[1] + float(cols.mean())


def _moved(rec: MaskRecord, dr: int, dc: int) -> MaskRecord:
    """The record moved by (dr, dc) pixels (bbox, prompt and crop box)."""
    r0, c0, r1, c1 = rec.bbox
    b0, b1, b2, b3 = rec.crop_box
    return MaskRecord(
        id=rec.id, bbox=(r0 + dr, c0 + dc, r1 + dr, c1 + dc), area=rec.area,
        predicted_iou=rec.predicted_iou, stability_score=rec.stability_score,
        point_coords=(rec.point_coords[0] + dr, rec.point_coords[1] + dc),
        crop_box=(b0 + dr, b1 + dc, b2 + dr, b3 + dc), segmentation=rec.segmentation,
        visible_area=rec.visible_area, z=rec.z,
    )


def _cut(bbox, outer, image_shape) -> bool:
    """Whether a bbox touches an edge of the window ``outer`` that is not an image border."""
    r0, c0, r1, c1 = bbox
    wr0, wc0, wr1, wc1 = outer
    h, w = image_shape
    return ((r0 <= wr0 and wr0 > 0) or (c0 <= wc0 and wc0 > 0)
            or (r1 >= wr1 and wr1 < h) or (c1 >= wc1 and wc1 < w))


def duplicates(kept: list[_Kept], tiling) -> set[int]:
    """Indices into ``kept`` of the masks that duplicate a mask of a neighbouring window
    (rules in the module docstring): masks are taken best first (:func:`_rank`) and one is
    dropped when a mask already taken is the same object."""
    by_win: dict[int, list[int]] = {}
    for i, k in enumerate(kept):
        by_win.setdefault(k.window, []).append(i)
    wins = tiling.windows
    same: dict[int, list[int]] = {}
    for a in sorted(by_win):
        for b in sorted(by_win):
            ga, gb = wins[a].grid, wins[b].grid
            if b <= a or abs(ga[0] - gb[0]) > 1 or abs(ga[1] - gb[1]) > 1:
                continue
            for i, j in _overlapping(kept, by_win[a], by_win[b]):
                if _same_object(kept[i], kept[j]):
                    same.setdefault(i, []).append(j)
                    same.setdefault(j, []).append(i)
    drop: set[int] = set()
    for i in sorted(same, key=lambda i: _rank(kept[i]), reverse=True):
        if any(j in same and j not in drop and _rank(kept[j]) > _rank(kept[i])
               for j in same[i]):
            drop.add(i)
    return drop


def _overlapping(kept, ia: list[int], ib: list[int]):
    """Pairs (i, j), i from ``ia`` and j from ``ib``, whose bboxes overlap."""
    ba = np.array([kept[i].record.bbox for i in ia]).reshape(-1, 4)
    bb = np.array([kept[j].record.bbox for j in ib]).reshape(-1, 4)
    hit = ((ba[:, None, 0] < bb[None, :, 2]) & (bb[None, :, 0] < ba[:, None, 2])
           & (ba[:, None, 1] < bb[None, :, 3]) & (bb[None, :, 1] < ba[:, None, 3]))
    return [(ia[x], ib[y]) for x, y in zip(*np.nonzero(hit))]


def _same_object(p: _Kept, q: _Kept) -> bool:
    """Whether two masks of different windows are one object (module docstring, step 2)."""
    a, b = p.record, q.record
    r0, c0 = max(a.bbox[0], b.bbox[0]), max(a.bbox[1], b.bbox[1])
    r1, c1 = min(a.bbox[2], b.bbox[2]), min(a.bbox[3], b.bbox[3])
    if r1 <= r0 or c1 <= c0:
        return False
    sa = a.segmentation[r0 - a.bbox[0]:r1 - a.bbox[0], c0 - a.bbox[1]:c1 - a.bbox[1]]
    sb = b.segmentation[r0 - b.bbox[0]:r1 - b.bbox[0], c0 - b.bbox[1]:c1 - b.bbox[1]]
    inter = int(np.count_nonzero(sa & sb))
    if inter == 0:
        return False
    if inter >= DUPLICATE_IOU * (a.area + b.area - inter):
        return True
    small = p if a.area <= b.area else q
    return small.cut and inter >= DUPLICATE_COVER * small.record.area


def _rank(k: _Kept) -> tuple:
    """Preference of a mask among duplicates: whole, centre in its own core, predicted IoU,
    lower window index (larger is better)."""
    return (not k.cut, k.own_core, k.record.predicted_iou, -k.window)


def _paint(image_shape, records: list[MaskRecord], keep_masks, min_visible_fraction):
    """The label image of ``records`` (image frame) with the 2D painting rules."""
    n = len(records)
    boxes = np.array([(r.bbox[0], r.bbox[1], r.bbox[2] - 1, r.bbox[3] - 1) for r in records],
                     np.int64).reshape(n, 4)
    labels, out = paint_labels(
        tuple(image_shape), boxes, [r.segmentation for r in records],
        np.array([r.area for r in records], np.int64),
        np.array([r.predicted_iou for r in records], np.float64),
        np.array([r.stability_score for r in records], np.float64),
        [r.point_coords for r in records], [r.crop_box for r in records], keep_masks,
        min_visible_fraction,
    )
    return labels, out


class TiledSlices:
    """A stack to be segmented window by window, slice by slice, without stack embeddings:
    what :func:`~napari_sam.automatic.stack.segment_stack` reads of stack embeddings
    (``shape``, ``predictor``, ``model``, ``contrast_limits``, ``tiling``,
    ``slice_image(z)``; ``self[z]`` is None: each slice's windows are encoded as they are
    segmented). Without embeddings a stack cannot be propagated (``propagate=False``).

    Parameters
    ----------
    stack : array-like (Z, Y, X) or (Z, Y, X, 3|4)
        Read one slice at a time.
    predictor : Predictor
        Encodes and decodes the windows.
    tiling : Tiling
        For the slices' (Y, X).
    contrast_limits : (float, float), optional
        Default: percentiles over the stack (as :func:`napari_sam.embed`).
    """

    def __init__(self, stack, predictor, tiling, contrast_limits=None):
        from napari_sam.embeddings import stack_intensity_limits

        self.stack, self.predictor, self.tiling = stack, predictor, tiling
        self.model = predictor.model
        shape = tuple(int(v) for v in np.shape(stack))
        self.shape = shape[:3]
        if contrast_limits is None:
            contrast_limits = stack_intensity_limits(stack)
        self.contrast_limits = contrast_limits

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, z: int):
        return None

    def slice_image(self, z: int) -> np.ndarray:
        arr = np.asarray(self.stack[z])
        return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr
