"""The gap-filling pass of segment everything (``fill_gaps``): prompt the middles of the
foreground no mask covers and the blobs lying there, then NMS over both passes."""

from __future__ import annotations

import math

import numpy as np
import torch

from napari_sam.automatic.crops import Candidates, CropEngine


def gap_points(free: np.ndarray, spacing: float) -> np.ndarray:
    """(n, 2) (row, col) points in the middle of the ``free`` pixels (foreground no mask
    covers): local maxima, at least ``spacing / 2`` apart, of the distance to the nearest
    pixel that is not free, where that distance is at least ``spacing / 4``."""
    from scipy import ndimage
    from skimage.feature import peak_local_max

    if not free.any():
        return np.zeros((0, 2), np.float64)
    dist = ndimage.distance_transform_edt(np.pad(free, 1))[1:-1, 1:-1]
    reach = max(1.0, spacing / 4.0)
    peaks = peak_local_max(dist, min_distance=max(1, int(spacing / 2)), threshold_abs=reach,
                           exclude_border=False)
    return peaks.astype(np.float64) + 0.5


def _blob_points(rgb: np.ndarray, free: np.ndarray, spacing: float) -> np.ndarray:
    """(n, 2) (row, col) points on blobs, bright or dark, that lie where ``free`` is True:
    local extrema of a difference of Gaussians at the grid's scale, at least ``spacing / 4``
    apart, stronger than 3 robust standard deviations of that filter over the image."""
    from scipy import ndimage
    from skimage.feature import peak_local_max

    grey = np.asarray(rgb, np.float32)
    grey = grey[..., :3].mean(-1) if grey.ndim == 3 else grey
    sigma = max(1.0, spacing / 6.0)
    dog = ndimage.gaussian_filter(grey, sigma) - ndimage.gaussian_filter(grey, 3.0 * sigma)
    mag = np.abs(dog)
    noise = 1.4826 * float(np.median(np.abs(dog - np.median(dog))))
    if not free.any() or noise <= 0:
        return np.zeros((0, 2), np.float64)
    peaks = peak_local_max(np.where(free, mag, 0.0), min_distance=max(1, int(spacing / 4)),
                           threshold_abs=3.0 * noise, exclude_border=False)
    return peaks.astype(np.float64) + 0.5


def gap_pass(engine: CropEngine, emb, cand: Candidates, image_size, fg, n_points: int,
             stats, rgb_fn=None) -> Candidates:
    """Second pass of the grid on one (full-image) crop: prompt the middle of every part of
    the foreground (of the image without ``fg``) that no candidate covers, then NMS over both
    passes. Touching objects that one grid point missed come out as their own masks."""
    geom = engine.geometry(emb)
    covered = torch.zeros(image_size, dtype=torch.bool, device=engine.pred.device)
    strict = cand.take(cand.strict)  # what the user's thresholds cover
    for j in range(0, len(strict), 32):
        covered |= (geom.upsample(strict.logits[j : j + 32]) > engine.threshold).any(0)
    spacing = min(image_size) / max(1.0, math.sqrt(n_points))
    free = ~covered.cpu().numpy()
    if fg is not None:
        free &= fg
    pts = gap_points(free, spacing)
    if rgb_fn is not None:
        blobs = _blob_points(rgb_fn(), free, spacing)
        pts = np.concatenate([pts, blobs]) if len(blobs) else pts
    stats["gap_points"] = stats.get("gap_points", 0) + len(pts)
    if len(pts) == 0:
        return cand
    more = engine.process_crop(emb, (0, 0, *image_size), image_size, pts, stats)
    if len(more) == 0:
        return cand
    return Candidates.cat([cand, more]).nms(engine.p.box_nms_thresh)


