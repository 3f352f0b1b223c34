"""Which pixels segment everything prompts: the automatic foreground of bright objects, the
constant-image check, and the grid points kept on a foreground mask."""

from __future__ import annotations

import numpy as np


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


def constant_value(image: np.ndarray) -> tuple[float, ...] | None:
    """The value every pixel of ``image`` holds, when one does: an image without structure,
    on which SAM's masks follow the prompts alone.

    Parameters
    ----------
    image : numpy.ndarray, (Y, X) or (Y, X, C) with C <= 4, any real or bool dtype
        Non-finite values are ignored (an image with no finite value is constant).

    Returns
    -------
    tuple of float or None
        One value per channel (one for a grey image; NaN where no value is finite), or None
        when the image varies.
    """
    arr = np.asarray(image)
    planes = [arr[..., c] for c in range(arr.shape[-1])] if (
        arr.ndim == 3 and arr.shape[-1] <= 4) else [arr]
    values = []
    for plane in planes:
        flat = plane.reshape(-1)
        sample = flat[:: max(1, flat.size // 4096)]  # most images vary here: no full pass
        if plane.dtype.kind == "f":
            sample, flat = sample[np.isfinite(sample)], None
        if sample.size and sample.min() != sample.max():
            return None
        if flat is None:  # float: the finite values (a copy, only for a constant sample)
            flat = plane[np.isfinite(plane)]
        if flat.size == 0:
            values.append(float("nan"))
            continue
        low, high = flat.min(), flat.max()
        if low != high:
            return None
        values.append(float(low))
    return tuple(values)


def constant_words(value) -> str:
    """A :func:`constant_value` in words: "every pixel 0", "every pixel (200, 0, 0)", or "no
    pixel holds a finite value" (NaN or None where no value is finite)."""
    vals = [float("nan") if v is None else float(v) for v in value]
    if all(v != v for v in vals):
        return "no pixel holds a finite value"
    shown = f"{vals[0]:g}" if len(vals) == 1 else "(" + ", ".join(f"{v:g}" for v in vals) + ")"
    return f"every pixel {shown}"


def is_constant(image: np.ndarray) -> bool:
    """Whether every pixel of ``image`` holds the same value (per channel for a colour image;
    non-finite values ignored, and no finite value counts too): :func:`constant_value`."""
    return constant_value(image) is not None


def select_points(points_rc: np.ndarray, crop_box, fg: np.ndarray | None) -> np.ndarray:
    """The (row, col) crop-pixel points of ``points_rc`` that lie on True pixels of the
    image-sized ``fg`` (all of them without ``fg``)."""
    if fg is None or len(points_rc) == 0:
        return points_rc
    h, w = fg.shape
    r = np.clip(np.floor(points_rc[:, 0] + crop_box[0]).astype(np.int64), 0, h - 1)
    c = np.clip(np.floor(points_rc[:, 1] + crop_box[1]).astype(np.int64), 0, w - 1)
    return points_rc[fg[r, c]]
