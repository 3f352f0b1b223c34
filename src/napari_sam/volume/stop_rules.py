"""Stop rules of volume propagation: when an object's chain of masks ends.

Owns :data:`STOP_REASONS` (every reason a chain can end with), :func:`stop_reason` (the
per-slice rules, vectorised over objects: vanished, area, iou, score, faded, rebounded),
the contrast measure the fade and rebound rules judge by (:func:`mask_contrast`) with its
noise measure (:func:`contrast_and_error`: the standard error from the pixels' own spread),
and the rules' defaults per kind of axis. The claimed rule, which compares objects after
propagation, lives in :mod:`napari_sam.volume.claims`.
"""

from __future__ import annotations

import numpy as np

from napari_sam.volume.mask_prompts import box_from_mask

__all__ = [
    "AUTO_FADE",
    "AUTO_REBOUND",
    "REBOUND_NOISE",
    "REBOUND_SLICES",
    "STOP_REASONS",
    "contrast_and_error",
    "mask_contrast",
    "stop_reason",
]

#: Why propagation of an object ended in one direction.
STOP_REASONS = {
    "edge": "reached the first or last slice of the stack",
    "stop_marker": "the next slice carries a stop marker for this object",
    "met": "met the propagation coming from the object's next annotated slice",
    "vanished": "the mask on the next slice was empty or smaller than min_area",
    "iou": "IoU with the previous slice's mask fell below iou_threshold",
    "area": "the area changed by more than area_factor from the previous slice",
    "score": "the predicted IoU fell below min_score",
    "max_slices": "propagated max_slices slices from the annotated slice",
    "faded": "the object's contrast with its surroundings fell below fade_fraction of its "
             "strongest contrast on its annotated slices",
    "rebounded": "the object's contrast fell from its peak and then rose again on two slices "
                 "in a row, both by more than rebound_fraction of its reference contrast and "
                 "by more than rebound_noise times the measurement noise of the contrasts "
                 "compared: the mask ran into another object above or below (it is cut back "
                 "to its dimmest slice)",
    "claimed": "most of the mask lay on another object that is fewer slices from its own "
               "annotated slice (claimed_fraction)",
}

# default fade rule per kind of axis: z ends of blurred objects; not t (bleaching)
AUTO_FADE = {"z": 0.5, "t": None}
# default rebound rule per kind of axis: a chain running into the next object along z; not t
AUTO_REBOUND = {"z": 0.05, "t": None}
# the rise must hold on this many slices in a row (one brighter slice is not another object)
REBOUND_SLICES = 2
# ... and both the dip and the rise must exceed this many standard errors of the difference
# of the two contrasts (from the pixels' own spread: a noisy object's wobble is not a rebound).
# 1 since session 36 (2 before): an object propagated alone, as the dock propagates the object
# clicked, runs less into the nucleus above or below (real development stack 0.609 -> 0.651,
# synthetic validation volumes +0.004 to +0.012), all objects at once and issue #3's test
# volumes unchanged (docs/benchmarks.md, "The rebound rule's noise bar, again")
REBOUND_NOISE = 1.0


def mask_contrast(image, masks, ring: int = 3) -> np.ndarray:
    """How much each mask stands out from its surroundings.

    Mean intensity inside the mask minus the mean of a ring of ``ring`` pixels around it
    (the mask dilated ``ring`` times, less the mask). Positive for bright objects on a darker
    surround, negative for dark ones. NaN and infinite pixels are left out of both means.

    Parameters
    ----------
    image : array-like (Y, X) or (Y, X, C)
        The slice; channels are averaged.
    masks : array-like (N, Y, X) or (Y, X) bool
    ring : int
        Width of the surrounding ring in pixels.

    Returns
    -------
    numpy.ndarray (N,) float64
        NaN for an empty mask or one with no pixels around it inside the image.
    """
    return contrast_and_error(image, masks, ring)[0]


def contrast_and_error(image, masks, ring: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mask_contrast` (N,) and its standard error (N,) from the pixels' own spread:
    sqrt(var_inside / n_inside + var_ring / n_ring); NaN where the contrast is. NaN and
    infinite pixels are left out (a few missing values made every contrast NaN, and a
    chain then never faded)."""
    from scipy import ndimage as ndi

    img = np.asarray(image, np.float32)
    if img.ndim == 3:
        img = img.mean(-1)
    m = np.asarray(masks, bool)
    if m.ndim == 2:
        m = m[None]
    if m.shape[1:] != img.shape:
        raise ValueError(f"masks of shape {m.shape[1:]} do not match the image {img.shape}")
    h, w = img.shape
    out = np.full(len(m), np.nan)
    err = np.full(len(m), np.nan)
    for i, mask in enumerate(m):
        box = box_from_mask(mask)
        if box is None:
            continue
        r0, c0 = max(0, int(box[0]) - ring), max(0, int(box[1]) - ring)
        r1, c1 = min(h, int(box[2]) + ring + 1), min(w, int(box[3]) + ring + 1)
        crop = mask[r0:r1, c0:c1]
        around = ndi.binary_dilation(crop, iterations=ring) & ~crop
        if around.any():
            sub = img[r0:r1, c0:c1]
            a, b = sub[crop].astype(np.float64), sub[around].astype(np.float64)
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]  # NaN / inf pixels: not measured
            if not (a.size and b.size):
                continue
            out[i] = float(a.mean()) - float(b.mean())
            err[i] = float(np.sqrt(a.var() / a.size + b.var() / b.size))
    return out, err


def stop_reason(
    area,
    prev_area,
    iou,
    score=None,
    *,
    min_area: int = 5,
    iou_threshold: float = 0.5,
    area_factor: float = 2.5,
    min_score: float = 0.0,
    contrast=None,
    ref_contrast=None,
    fade_fraction: float | None = None,
    peak_contrast=None,
    low_contrast=None,
    rebound_fraction: float | None = None,
    contrast_error=None,
    peak_error=None,
    low_error=None,
    rebound_noise: float | None = None,
) -> np.ndarray:
    """Which stopping rule (if any) rejects a propagated mask; vectorised over objects.

    Parameters
    ----------
    area, prev_area : array-like (N,)
        Pixel counts of the new mask and of the previous slice's mask.
    iou : array-like (N,)
        IoU of the new mask with the previous slice's mask.
    score : array-like (N,), optional
        Predicted IoU of the new mask.
    min_area, iou_threshold, area_factor, min_score, fade_fraction
        See :func:`segment_volume`.
    contrast, ref_contrast : array-like (N,), optional
        The new mask's contrast on its slice and the object's contrast on its annotated slice
        (:func:`mask_contrast`); NaN where unknown. With ``fade_fraction``, a mask whose
        contrast, in the sign of the reference, is below ``fade_fraction * |ref_contrast|``
        fails as "faded"; objects with a NaN reference are not tested.
    peak_contrast, low_contrast : array-like (N,), optional
        The highest contrast of the object's chain so far and the lowest since that peak, in
        the sign of ``ref_contrast`` (so larger means more contrast). With
        ``rebound_fraction``, a mask fails as "rebounded" where the chain had dimmed from its
        peak by more than ``rebound_fraction * |ref_contrast|`` and the new contrast rises
        above that low by more than the same amount: an object's contrast along z rises to its
        middle and falls to its ends once, so a second rise is another object
        (:func:`segment_volume` stops where this holds on two slices in a row).
    contrast_error, peak_error, low_error : array-like (N,), optional
        Standard errors of ``contrast``, ``peak_contrast`` and ``low_contrast``. With
        ``rebound_noise``, the dip must also exceed ``rebound_noise * hypot(peak_error,
        low_error)`` and the rise ``rebound_noise * hypot(contrast_error, low_error)``.

    Returns
    -------
    numpy.ndarray (N,) of str
        ``""`` where the mask is accepted, else the first rule that failed, in the order
        "vanished", "area", "iou", "score", "faded", "rebounded" (see :data:`STOP_REASONS`).
    """
    area = np.asarray(area, np.float64).reshape(-1)
    prev = np.asarray(prev_area, np.float64).reshape(-1)
    iou = np.asarray(iou, np.float64).reshape(-1)
    out = np.full(area.shape, "", dtype=object)
    vanished = (area < max(1, min_area)) | (area == 0)
    ratio = np.where(prev > 0, area / np.maximum(prev, 1), np.inf)
    jump = (ratio > area_factor) | (ratio < 1.0 / area_factor)
    low_iou = iou < iou_threshold
    rules = [("vanished", vanished), ("area", jump), ("iou", low_iou)]
    if score is not None:
        rules.append(("score", np.asarray(score, np.float64).reshape(-1) < min_score))
    if fade_fraction is not None and contrast is not None and ref_contrast is not None:
        rules.append(("faded", _faded(contrast, ref_contrast, fade_fraction)))
    if (rebound_fraction is not None and contrast is not None and ref_contrast is not None
            and peak_contrast is not None and low_contrast is not None):
        errors = (contrast_error, peak_error, low_error)
        rules.append(("rebounded", _rebounded(contrast, ref_contrast, peak_contrast, low_contrast,
                                              rebound_fraction, errors, rebound_noise)))
    for name, hit in reversed(rules):
        out[hit] = name
    return out.astype(str)


def _floats(values) -> np.ndarray:
    return np.asarray(values, np.float64).reshape(-1)


def _faded(contrast, ref_contrast, fade_fraction: float) -> np.ndarray:
    """(N,) bool: the fade rule (see :func:`stop_reason`)."""
    c, ref = _floats(contrast), _floats(ref_contrast)
    with np.errstate(invalid="ignore"):
        return np.isfinite(ref) & (c * np.sign(ref) < fade_fraction * np.abs(ref))


def _rebound_bars(bar: np.ndarray, errors, rebound_noise: float | None):
    """What the dip and the rise of the rebound rule must exceed: ``bar`` (N,), raised to
    ``rebound_noise`` standard errors of the two contrasts compared where the errors
    (contrast, peak, low) are known."""
    if rebound_noise is None or any(e is None for e in errors):
        return bar, bar
    ce, pe, le = (np.nan_to_num(_floats(e)) for e in errors)
    return (np.maximum(bar, rebound_noise * np.hypot(pe, le)),
            np.maximum(bar, rebound_noise * np.hypot(ce, le)))


def _rebounded(contrast, ref_contrast, peak_contrast, low_contrast, rebound_fraction: float,
               errors, rebound_noise: float | None) -> np.ndarray:
    """(N,) bool: the rebound rule (see :func:`stop_reason`)."""
    c, ref = _floats(contrast), _floats(ref_contrast)
    peak, low = _floats(peak_contrast), _floats(low_contrast)
    dip_bar, rise_bar = _rebound_bars(rebound_fraction * np.abs(ref), errors, rebound_noise)
    with np.errstate(invalid="ignore"):
        return np.isfinite(ref) & (peak - low > dip_bar) & (c * np.sign(ref) - low > rise_bar)
