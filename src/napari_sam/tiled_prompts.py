"""Point, box and mask prompts on a tiled image: route the prompt to the windows that hold it,
decode it there, and stitch the windows' masks into the whole image's frame.

A tiled image (:mod:`napari_sam.tiling`) is embedded in overlapping windows at native scale.
:func:`decode_tiled` decodes one object's prompt in every window that holds all of it and
stitches the masks by depth: each pixel comes from the decoded window it lies deepest in
(:meth:`napari_sam.tiling.Tiling.depth`), so a small object lying across a core border is whole.
A prompt larger than a window (a box over a large object, positive points farther apart than a
window) and a mask that reaches the outer edge of the windows around its prompt are decoded in
a zoomed-out **view** instead (:func:`napari_sam.tiling.zoom_view`), twice as large each time
the mask still reaches its edge, up to the whole image.

Coordinates are napari order, in pixels of the whole image: points (row, col), boxes
(row0, col0, row1, col1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from napari_sam.preprocess import ResizeSpec
from napari_sam.prompts import check_box, check_mask_input, check_points, mask_to_logits
from napari_sam.tiling import TiledEmbedding, Tiling, Window, zoom_view

__all__ = ["TiledPrediction", "decode_tiled", "prompted_pieces", "shift_logits"]


@dataclass
class TiledPrediction:
    """The masks of one object's prompt on a tiled image.

    Attributes
    ----------
    masks : numpy.ndarray (C, H, W) bool
        Candidate masks over the whole image (C = 3 with ``multimask``, else 1); candidate
        ``c`` is stitched from candidate ``c`` of every decoded window.
    scores : numpy.ndarray (C,) float32
        Predicted IoU of the primary window's candidates.
    logits : numpy.ndarray (C, 4E, 4E) float32
        Low-resolution logits of the primary window, in that window's frame: pass
        ``logits[i]`` back as ``mask_input`` together with ``mask_window=window``.
    window : int
        Index of the primary window (``tiling.windows[window]``).
    windows : list of int
        The windows decoded (the primary one among them); empty when decoded in a ``view``.
    cut : bool
        The highest-scoring candidate reaches the outer edge of the decoded windows (an
        edge that is not the image border): the object may go on beyond them. With
        :attr:`~napari_sam.tiling.TiledEmbedding.can_zoom_out` such a prompt is decoded in a
        view too, and ``cut`` stays True where the windows' masks scored higher (or where the
        view's mask still reaches the edge of a view that is not the whole image).
    cuts : numpy.ndarray (C,) bool
        The same for every candidate.
    spread : bool
        Positive prompts lie farther apart than a window: a positive point (or the box
        centre) lies outside every window holding the anchor. The windows holding each are
        decoded too, each with the prompts inside it, so the mask between them may be
        missing; ``cut`` and ``cuts`` are then True (add a click in the missing part, which
        decodes the windows there too, or turn tiling off for objects this large). A view
        is decoded too where the tiled embedding can zoom out; this is the windows' result,
        kept because it scored higher.
    view : Window, optional
        The zoomed-out view (:func:`napari_sam.tiling.zoom_view`) the prompt was decoded in
        instead of windows: masks, scores and logits come from it (logits in its frame: pass
        ``mask_window=view`` with them). None when decoded in windows.
    zoom_pending : bool
        Decoded with ``zoom=False`` where a zoomed-out view would also be decoded: call
        again with ``zoom=True`` (encodes the view: long with a large model on a CPU).
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    window: int
    windows: list[int]
    cut: bool = False
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    spread: bool = False
    view: Window | None = None
    zoom_pending: bool = False

    @property
    def frame(self) -> Window | int:
        """What ``logits`` are in: the view, else the primary window's index (pass it back as
        ``mask_window``)."""
        return self.view if self.view is not None else self.window


def shift_logits(logits: np.ndarray, rows: float, cols: float) -> np.ndarray:
    """Low-resolution logits (..., n, n) moved by (``rows``, ``cols``) low-resolution pixels
    (bilinear; what enters from outside is the lowest logit of the input)."""
    logits = np.asarray(logits, np.float32)
    if rows == 0 and cols == 0:
        return logits.copy()
    fill = float(min(logits.min(), 0.0))
    shift = (0,) * (logits.ndim - 2) + (float(rows), float(cols))
    return ndimage.shift(logits, shift, order=1, mode="constant", cval=fill).astype(np.float32)


def _low_res_per_pixel(predictor, win: Window) -> float:
    """Low-resolution pixels per image pixel in ``win`` (windows are resized like any image
    to the model input: by 1 when the window has the model input's size)."""
    return predictor.img_size / max(win.shape) * predictor.low_res_size / predictor.img_size


def _anchor(tiling: Tiling, pts, lab, box, mask, mask_window, predictor) -> tuple[float, float]:
    """The position that picks the primary window: the first positive point, else the box
    centre, else the centre of mass of the mask prompt's positive logits (in the frame of
    ``mask_window``), else the first (negative) point."""
    if pts is not None and (lab == 1).any():
        return tuple(pts[int(np.argmax(lab == 1))])
    if box is not None:
        return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    if mask is None or mask_window is None:
        return tuple(pts[0])
    win = mask_window if isinstance(mask_window, Window) else tiling.windows[mask_window]
    s = _low_res_per_pixel(predictor, win)
    pos = mask > 0
    if not pos.any():
        r0, c0, r1, c1 = win.core
        return (r0 + r1 - 1) / 2, (c0 + c1 - 1) / 2
    rr, cc = np.nonzero(pos)
    return win.offset[0] + (rr.mean() + 0.5) / s - 0.5, win.offset[1] + (cc.mean() + 0.5) / s - 0.5


def _route(tiling: Tiling, pts, lab, box, anchor) -> tuple[list[Window], bool, bool]:
    """The windows to decode: every window holding all points and the whole box (a box larger
    than a window: its centre). If none holds them all (the prompts are spread wider than a
    window): the windows holding the anchor, and those holding a positive point or the box
    centre where no window of the anchor does, so no positive prompt is left out. Returns
    the windows, whether the box is clipped per window and whether positive prompts were
    spread beyond the anchor's windows."""
    wins = tiling.windows
    rows, cols = [], []
    if pts is not None:
        rows += list(pts[:, 0])
        cols += list(pts[:, 1])
    clip = box is not None and (box[2] - box[0] >= tiling.window
                                or box[3] - box[1] >= tiling.window)
    if clip:  # no window holds the box: its centre
        rows.append((box[0] + box[2]) / 2)
        cols.append((box[1] + box[3]) / 2)
    elif box is not None:
        rows += [box[0], box[2]]
        cols += [box[1], box[3]]
    chosen = [w for w in wins if w.contains(rows, cols).all()]
    if chosen:
        return chosen, clip, False
    places = []
    if pts is not None:
        places += [tuple(p) for p in pts[lab == 1]]
    if box is not None:
        places.append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    home = [w for w in wins if bool(w.contains(*anchor))]
    far = [p for p in places if not any(bool(w.contains(*p)) for w in home)]
    if not far:  # only negative points lie elsewhere: outside the windows is background
        return home, box is not None, False
    prr, pcc = np.array(far, float).T
    chosen = [w for w in wins if w in home or w.contains(prr, pcc).any()]
    return chosen, box is not None, True


def decode_tiled(
    predictor,
    tiled: TiledEmbedding,
    points=None,
    labels=None,
    box=None,
    mask_input=None,
    multimask: bool = True,
    *,
    mask_window: int | Window | None = None,
    zoom: bool = True,
) -> TiledPrediction:
    """Masks for one object from points, a box and/or a mask prompt on a tiled image.

    The **primary window** is ``tiled.tiling.owner(anchor)``, the anchor being the first
    positive point, else the box centre, else the centre of mass of the mask prompt (with
    ``mask_window``), else the first (negative) point. The
    prompt is decoded in every window whose (outer) box holds all the points and the whole
    box, with coordinates shifted into the window; each pixel of the image takes the mask of
    the decoded window it lies deepest in (:meth:`Tiling.depth`), pixels outside all decoded
    windows are background. Candidate choice and scores come from the primary window (if the
    owner of the anchor does not hold all the prompts, the decoded window the anchor lies
    deepest in). A box larger than a window goes to the windows that hold its centre and the
    points, clipped to each. Prompts spread wider than a window: the windows holding the
    anchor are decoded, and those holding any positive point or the box centre that lies
    outside them (``spread`` and ``cut`` are then True), each with the points inside it
    and the box where it overlaps: every positive prompt is decoded where it lies.

    **Zooming out** (when ``tiled.can_zoom_out``: it holds the image's pixels, as from
    :func:`~napari_sam.tiling.encode_tiled`): for a box larger than a window, and when the
    windows' result is ``cut`` (positive prompts spread wider than a window, or a best mask
    that reaches the outer edge of the windows decoded), the prompt is also decoded in a view that
    shows all the prompts and that mask (:func:`~napari_sam.tiling.zoom_view`: at least two
    windows wide, 2.5 times their extent, shrunk to the model input), doubled while the best
    mask reaches the view's edge inside the image, up to the whole image. The result with the
    highest predicted IoU is returned (a thin object can vanish when shrunk; a large one cut
    to windows is a sliver); the result's ``view`` says when it is a view's (its masks are
    coarser than a window's, but whole).

    Parameters
    ----------
    predictor : Predictor
        Decodes each window (``predictor.predict_batch``; the torch decoder, also when the
        predictor's backend is ONNX).
    tiled : TiledEmbedding
        The image's window embeddings (from :func:`napari_sam.tiling.encode_tiled` or
        ``Predictor.set_image``).
    points : array-like (P, 2), optional
        (row, col) in pixels of the whole image; every point must lie in the image.
    labels : array-like (P,), optional
        1 positive, 0 negative; default all positive.
    box : array-like (4,), optional
        (row0, col0, row1, col1) in pixels of the whole image.
    mask_input : array-like (4E, 4E) or (1, 4E, 4E), optional
        Low-resolution logits in the frame of window ``mask_window`` (default: the primary
        window), e.g. ``logits[i]`` of a previous :class:`TiledPrediction` with
        ``mask_window=prediction.frame``; moved into each decoded window's frame (in a view's
        frame: decoded in that view).
    multimask : bool
        3 candidates instead of 1.
    mask_window : int or Window, optional
        The window (index) or zoomed-out view (:attr:`TiledPrediction.view`) whose
        low-resolution frame ``mask_input`` is in.
    zoom : bool
        False: decode in the windows only and set ``zoom_pending`` where a view would be
        decoded too (nothing is encoded: a GUI shows this at once and zooms out in a job).

    Returns
    -------
    TiledPrediction
    """
    tiling = tiled.tiling
    if isinstance(mask_window, Window) and mask_window.index >= 0:
        mask_window = mask_window.index  # a window of the tiling, not a view
    if isinstance(mask_window, Window) and mask_input is None:
        mask_window = None  # a view without a mask prompt: nothing lies in its frame
    pts, lab, bx, mask, view = _checked_prompt(predictor, tiled, points, labels, box,
                                               mask_input, mask_window)
    anchor = _anchor(tiling, pts, lab, bx, mask, mask_window, predictor)
    frame = view if view is not None else tiling.windows[
        tiling.owner(*anchor).index if mask_window is None else int(mask_window)]
    if view is not None and not zoom:  # a view's frame: nothing to show before it is encoded
        res = _decode_in_windows(predictor, tiled, [tiling.owner(*anchor)], False, False,
                                 anchor, pts, lab, bx, None, None, multimask)
        res.zoom_pending = True
        return res
    if view is not None:  # the mask prompt is in a view's frame: decode in that view,
        pos = pts[lab == 1] if pts is not None else np.zeros((0, 2))
        if bx is not None:
            pos = np.concatenate([pos, bx.reshape(2, 2)])
        if len(pos) and not view.contains(pos[:, 0], pos[:, 1]).all():
            # or in one that also shows the prompts beyond it (the mask moved into it)
            r0, c0, r1, c1 = view.outer
            view = zoom_view(tiling, [r0, r1 - 1, *pos[:, 0]], [c0, c1 - 1, *pos[:, 1]])
        return _decode_zoomed(predictor, tiled, view, anchor, pts, lab, bx, mask, frame,
                              multimask)
    chosen, clip, spread = _route(tiling, pts, lab, bx, anchor)
    res = _decode_in_windows(predictor, tiled, chosen, clip, spread, anchor, pts, lab, bx, mask,
                             mask_window, multimask)
    if not (tiled.can_zoom_out and (res.cut or clip)):
        return res
    if not zoom:
        res.zoom_pending = True
        return res
    # the prompt or its mask reaches beyond the windows: see all of it, zoomed out; the
    # model's own predicted IoU says which it segments better (a thin object shrunk in a
    # view can vanish, a large one cut to windows is a sliver)
    rows, cols = _prompt_positions(pts, bx)
    rr, cc = np.nonzero(res.masks[int(np.argmax(res.scores))])
    if not (clip or spread) and len(rr):  # what the mask covers so far, too
        rows, cols = rows + [rr.min(), rr.max()], cols + [cc.min(), cc.max()]
    zoomed = _decode_zoomed(predictor, tiled, zoom_view(tiling, rows, cols), anchor, pts, lab,
                            bx, mask, frame, multimask)
    return zoomed if zoomed.scores.max() > res.scores.max() else res


def _checked_prompt(predictor, tiled, points, labels, box, mask_input, mask_window):
    """The prompt checked against the tiled image: (points (P, 2) or None, labels (P,) or
    None, box (4,) or None, mask (4E, 4E) or None, the view ``mask_window`` names or None)."""
    tiling = tiled.tiling
    size = tiling.image_shape
    if points is None and labels is not None:
        raise ValueError("labels were given without points")
    if points is None and box is None and mask_input is None:
        raise ValueError("give at least one prompt: points, a box or a mask_input")
    if getattr(predictor, "sam2", None) is not None:
        raise ValueError("tiled images are not supported with SAM 2.1 models; set the image "
                         "with tiling=None (or use a SAM 1 model)")
    if len(tiled.embeddings) != len(tiling):
        raise ValueError(f"the tiled embedding has {len(tiled.embeddings)} window embeddings "
                         f"for {len(tiling)} windows; recompute it with encode_tiled")
    pts = lab = bx = mask = view = None
    if points is not None:
        pts, lab = check_points(points, labels, size)
        # a click on the image's outer half pixel (-0.5 < row < 0) is valid; no window holds
        # negative positions, so it goes to the border pixel's windows
        pts = np.maximum(pts, 0.0)
    if box is not None:
        bx = check_box(box, size)
    if mask_input is not None:
        mask = check_mask_input(mask_input, predictor.low_res_size)
        if mask_window is None and pts is None and bx is None:
            raise ValueError("a mask_input alone does not say where it lies in a tiled image: "
                             "pass mask_window= (the window of the prediction its logits came "
                             "from) or a point")
    if isinstance(mask_window, Window):
        r0, c0, r1, c1 = mask_window.outer
        if not (0 <= r0 < r1 <= size[0] and 0 <= c0 < c1 <= size[1]):
            raise ValueError(f"mask_window {mask_window.outer} does not lie in the image of "
                             f"shape {size}")
        if not tiled.can_zoom_out:
            raise ValueError("the mask_input is in a zoomed-out view's frame, but this tiled "
                             "embedding has no pixels to encode views from")
        view = mask_window
    if mask_window is not None and view is None and not 0 <= int(mask_window) < len(tiling):
        raise ValueError(f"mask_window {mask_window} is not a window of this tiling "
                         f"(0..{len(tiling) - 1})")
    return pts, lab, bx, mask, view


def _prompt_positions(pts, bx) -> tuple[list[float], list[float]]:
    """Rows and columns of every point and of the box's corners (what a view must show)."""
    rows, cols = [], []
    if pts is not None:
        rows += [float(v) for v in pts[:, 0]]
        cols += [float(v) for v in pts[:, 1]]
    if bx is not None:
        rows += [float(bx[0]), float(bx[2])]
        cols += [float(bx[1]), float(bx[3])]
    return rows, cols


def _decode_in_windows(predictor, tiled, chosen, clip, spread, anchor, pts, lab, bx, mask,
                       mask_window, multimask) -> TiledPrediction:
    """Decode the prompt in the windows ``chosen`` and stitch their masks by depth."""
    tiling = tiled.tiling
    primary = tiling.owner(*anchor)
    if primary.index not in [w.index for w in chosen]:
        primary = max(chosen, key=lambda w: _depth_at(tiling, w, anchor))
    frame = tiling.windows[primary.index if mask_window is None else int(mask_window)]
    results = {}
    for win in chosen:
        results[win.index] = _decode_window(predictor, tiled, win, pts, lab, bx, clip, mask,
                                            frame, multimask)
    logits, scores, _ = results[primary.index]
    _check_finite(scores, logits)
    masks = _stitch(tiling, chosen, [results[w.index][2] for w in chosen])
    cuts = _cuts(tiling, chosen, masks)
    cuts = cuts | spread  # parts decoded apart: the mask between them may be missing
    best = int(np.argmax(scores))
    return TiledPrediction(masks=masks, scores=scores, logits=logits, window=primary.index,
                           windows=[w.index for w in chosen], cut=bool(cuts[best]), cuts=cuts,
                           spread=spread)


def _check_finite(scores, logits) -> None:
    if not (np.isfinite(scores).all() and np.isfinite(logits).all()):
        raise FloatingPointError("the mask decoder returned NaN or inf scores: check the model "
                                 "and use precision='fp32'")


def _decode_zoomed(predictor, tiled, view, anchor, pts, lab, bx, mask, frame, multimask
                   ) -> TiledPrediction:
    """Decode the prompt in ``view`` (shrunk to the model input), and while the best mask
    reaches the view's edge inside the image, in a view twice as large (up to the whole
    image); the result with the highest predicted IoU (the finer view on ties). A mask
    prompt (logits in ``frame``, a window or a view) is moved into each view's frame."""
    tiling = tiled.tiling
    h, w = tiling.image_shape
    best = None
    while True:
        m = None if mask is None else _mask_in_view(predictor, mask, frame, view)
        res = _decode_view(predictor, tiled, view, anchor, pts, lab, bx, m, multimask)
        if best is None or res.scores.max() > best.scores.max():
            best = res
        r0, c0, r1, c1 = view.outer
        if not res.cut or (r0, c0, r1, c1) == (0, 0, h, w):
            return best
        side = 2 * max(r1 - r0, c1 - c0)
        view = zoom_view(tiling, [r0, r1 - 1], [c0, c1 - 1], side=side)


def _mask_in_view(predictor, mask, frame: Window, view: Window) -> np.ndarray:
    """(4E, 4E) logits in ``frame``'s low-resolution frame moved into ``view``'s (through
    the mask at image pixels: frames of different scales)."""
    if frame.outer == view.outer:
        return np.asarray(mask, np.float32)
    s = _low_res_per_pixel(predictor, frame)
    fh, fw = frame.shape
    up = ndimage.zoom((np.asarray(mask) > 0).astype(np.float32), 1.0 / s, order=1)
    pix = np.zeros((fh, fw), bool)
    pix[:min(fh, up.shape[0]), :min(fw, up.shape[1])] = up[:fh, :fw] > 0.5
    canvas = np.zeros(view.shape, bool)
    r0, c0 = max(frame.outer[0], view.outer[0]), max(frame.outer[1], view.outer[1])
    r1, c1 = min(frame.outer[2], view.outer[2]), min(frame.outer[3], view.outer[3])
    if r1 > r0 and c1 > c0:
        canvas[r0 - view.outer[0]:r1 - view.outer[0], c0 - view.outer[1]:c1 - view.outer[1]] = \
            pix[r0 - frame.outer[0]:r1 - frame.outer[0], c0 - frame.outer[1]:c1 - frame.outer[1]]
    spec = ResizeSpec.for_image(view.shape, predictor.img_size)
    return mask_to_logits(canvas, spec.original_size, spec.input_size, predictor.img_size,
                          predictor.low_res_size).numpy()


def _decode_view(predictor, tiled, view, anchor, pts, lab, bx, mask, multimask
                 ) -> TiledPrediction:
    """The prompt decoded in one view (``mask``: logits in its frame); masks over the whole
    image."""
    tiling = tiled.tiling
    emb = tiled.view_embedding(predictor, view)
    r0, c0 = view.offset
    h, w = view.shape
    b = m = None
    p, lb = _points_in(view, pts, lab)
    if bx is not None:
        b = np.clip(bx - [r0, c0, r0, c0], 0, [h - 1, w - 1, h - 1, w - 1])[None]
        b = b.astype(np.float32)
    if mask is not None:
        m = np.asarray(mask, np.float32)[None]
    out = predictor.predict_batch(embedding=emb, points=p, labels=lb, boxes=b, mask_inputs=m,
                                  multimask=multimask)
    logits = out.logits[0].float().cpu().numpy()
    scores = out.scores[0].float().cpu().numpy()
    _check_finite(scores, logits)
    small = np.stack([prompted_pieces(cand, p, lb, b) for cand in _to_numpy(out.masks[0])])
    masks = np.zeros((len(small), *tiling.image_shape), bool)
    masks[(slice(None),) + view.slices] = small
    cuts = _cuts(tiling, [view], masks)
    best = int(np.argmax(scores))
    return TiledPrediction(masks=masks, scores=scores, logits=logits,
                           window=tiling.owner(*anchor).index, windows=[],
                           cut=bool(cuts[best]), cuts=cuts, view=view)


def prompted_pieces(mask: np.ndarray, points, labels, box) -> np.ndarray:
    """The pieces (8-connected) of a view's mask that the prompt is about: those holding a
    positive point, else (a box alone) those lying mostly inside the box. A view shrinks the
    image, and its masks often take small separate blobs on other objects with them (a
    helper's walk-through: nuclei committed into a large neighbour's label). A mask with no
    such piece is kept as it is.

    Parameters
    ----------
    mask : numpy.ndarray (h, w) bool
        In the view's frame.
    points, labels : numpy.ndarray (1, P, 2) and (1, P), or None
        The prompt in the view's frame, as decoded.
    box : numpy.ndarray (1, 4) or None
        (row0, col0, row1, col1) in the view's frame.
    """
    pieces, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask
    keep = set()
    if points is not None:
        h, w = mask.shape
        for (r, c), lab in zip(points[0], labels[0]):
            if lab == 1:
                keep.add(int(pieces[min(max(int(round(r)), 0), h - 1),
                                    min(max(int(round(c)), 0), w - 1)]))
        keep.discard(0)
    if not keep and box is not None:
        r0, c0, r1, c1 = (int(round(v)) for v in box[0])
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)
        inside = np.bincount(pieces[r0:r1 + 1, c0:c1 + 1].ravel(), minlength=n + 1)
        keep = {i for i in range(1, n + 1) if inside[i] > sizes[i] / 2}
    if not keep:
        return mask
    return np.isin(pieces, sorted(keep))


def _depth_at(tiling: Tiling, win: Window, pos) -> float:
    r = int(np.clip(round(pos[0]) - win.outer[0], 0, win.shape[0] - 1))
    c = int(np.clip(round(pos[1]) - win.outer[1], 0, win.shape[1] - 1))
    return tiling.depth_at(win, r, c)


def _points_in(win: Window, pts, lab):
    """The points lying in ``win`` (a window or a view), in its frame, batched as the decoder
    takes them: ((1, P, 2) float32, (1, P)), or (None, None) when none does."""
    if pts is None:
        return None, None
    inside = win.contains(pts[:, 0], pts[:, 1])
    if not inside.any():
        return None, None
    return (pts[inside] - list(win.offset))[None].astype(np.float32), lab[inside][None]


def _decode_window(predictor, tiled, win, pts, lab, bx, clip, mask, frame, multimask):
    """Decode the prompt in one window. Returns (logits (C, 4E, 4E) float32, scores (C,)
    float32, masks (C, h, w) bool) in the window's frame."""
    r0, c0 = win.offset
    h, w = win.shape
    b = m = None
    p, lb = _points_in(win, pts, lab)
    if bx is not None:
        b = bx - [r0, c0, r0, c0]
        if clip and (b[2] < 0 or b[3] < 0 or b[0] > h - 1 or b[1] > w - 1):
            b = None  # the box does not reach this window (prompts spread wider than it)
        elif clip:
            b = np.clip(b, 0, [h - 1, w - 1, h - 1, w - 1])
        if b is not None:
            b = b[None].astype(np.float32)
    if mask is not None:
        s = _low_res_per_pixel(predictor, win)
        m = shift_logits(mask, (frame.offset[0] - r0) * s, (frame.offset[1] - c0) * s)[None]
    if p is None and b is None and m is None:  # nothing of the prompt lies here
        n = 3 if multimask else 1
        lr = predictor.low_res_size
        return (np.full((n, lr, lr), -20.0, np.float32), np.zeros(n, np.float32),
                np.zeros((n, h, w), bool))
    out = predictor.predict_batch(embedding=tiled.embeddings[win.index], points=p, labels=lb,
                                  boxes=b, mask_inputs=m, multimask=multimask)
    return (out.logits[0].float().cpu().numpy(), out.scores[0].float().cpu().numpy(),
            _to_numpy(out.masks[0]))


def _to_numpy(t) -> np.ndarray:
    return t.cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _stitch(tiling: Tiling, wins: list[Window], masks: list[np.ndarray]) -> np.ndarray:
    """(C, H, W) bool: each pixel from the window (of ``wins``) it lies deepest in."""
    h, w = tiling.image_shape
    out = np.zeros((masks[0].shape[0], h, w), bool)
    r0 = min(x.outer[0] for x in wins)
    c0 = min(x.outer[1] for x in wins)
    r1 = max(x.outer[2] for x in wins)
    c1 = max(x.outer[3] for x in wins)
    best = np.full((r1 - r0, c1 - c0), -1.0, np.float32)  # on the windows' bounding box
    for win, m in zip(wins, masks):
        sl = (slice(win.outer[0] - r0, win.outer[2] - r0),
              slice(win.outer[1] - c0, win.outer[3] - c0))
        d = tiling.depth(win)
        take = d > best[sl]
        best[sl][take] = d[take]
        out[(slice(None),) + win.slices][:, take] = m[:, take]
    return out


def _cuts(tiling: Tiling, wins: list[Window], masks: np.ndarray) -> np.ndarray:
    """(C,) bool: whether each mask touches the outer edge of the union of ``wins`` where that
    edge is not the image border."""
    h, w = tiling.image_shape
    r0 = min(x.outer[0] for x in wins)
    c0 = min(x.outer[1] for x in wins)
    r1 = max(x.outer[2] for x in wins)
    c1 = max(x.outer[3] for x in wins)
    # the union on its bounding box padded by one pixel; outside the image counts as inside
    union = np.zeros((r1 - r0 + 2, c1 - c0 + 2), bool)
    for x in wins:
        union[x.outer[0] - r0 + 1:x.outer[2] - r0 + 1, x.outer[1] - c0 + 1:x.outer[3] - c0 + 1] = True
    if r0 == 0:
        union[0] = True
    if c0 == 0:
        union[:, 0] = True
    if r1 == h:
        union[-1] = True
    if c1 == w:
        union[:, -1] = True
    inner = union.copy()
    inner[1:-1, 1:-1] &= (union[:-2, 1:-1] & union[2:, 1:-1] & union[1:-1, :-2]
                          & union[1:-1, 2:])
    edge = (union & ~inner)[1:-1, 1:-1]
    region = masks[:, r0:r1, c0:c1]
    return (region & edge[None]).reshape(len(masks), -1).any(1)
