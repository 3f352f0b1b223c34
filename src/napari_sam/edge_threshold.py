"""Edge-aligned mask thresholds: each mask's boundary where the image has its strongest edges.

SAM thresholds a mask's upsampled logits at 0. A small model's logits (the bundled demo
model's) fall off too early on real, hazy objects: its one-click masks of real nuclei cover
about three quarters of the nucleus. Here each candidate mask is thresholded instead at the
logit, among :data:`EDGE_THRESHOLDS`, whose mask boundary lies on the strongest image edges
(the largest mean gradient magnitude of the contrast-normalised image along the boundary).
A mask can only move between the model's own contours at logits -1 and 1, and a tie goes
to the model's own threshold.

Measured in docs/benchmarks.md ("An edge-aligned mask threshold"). The demo model's
checkpoint recommends it (``Sam.mask_boundary``); SAM's own weights are not changed.
"""

from __future__ import annotations

import numpy as np

from napari_sam.preprocess import fill_nan_pixels

#: Logit thresholds a mask may be cut at (the model's own, 0, among them).
EDGE_THRESHOLDS = (-1.0, -0.5, 0.0, 0.5, 1.0)

#: Gaussian sigma (pixels) of the gradient magnitude.
EDGE_SIGMA = 1.0

#: Pixels (about) whose intensities give the contrast percentiles of :func:`edge_map`.
PERCENTILE_SAMPLE = 1 << 16

#: Boundary rules: ``"threshold"`` (the model's threshold, SAM's rule) and ``"edge"``.
BOUNDARIES = ("threshold", "edge")


def resolve_boundary(boundary: str, model) -> str:
    """The rule ``boundary`` means for ``model``: ``"auto"`` is the model's ``mask_boundary``
    (``"threshold"`` for a model without one, e.g. SAM 2.1); ``"threshold"`` and ``"edge"``
    are themselves. A ValueError naming the choices for anything else."""
    if boundary not in ("auto", *BOUNDARIES):
        raise ValueError(f"boundary={boundary!r} is not one of 'auto', "
                         f"{', '.join(map(repr, BOUNDARIES))}")
    return getattr(model, "mask_boundary", "threshold") if boundary == "auto" else boundary


def edge_map(image: np.ndarray) -> np.ndarray:
    """Edge strength of one 2D image, the same whatever its dtype and range.

    Parameters
    ----------
    image : numpy.ndarray (Y, X) or (Y, X, C), any real dtype
        Channels (RGB) are averaged; a fourth (alpha) is left out.

    Returns
    -------
    numpy.ndarray (Y, X) float32
        Gaussian gradient magnitude (sigma :data:`EDGE_SIGMA`) of the image scaled to its
        0.5-99.5 percentiles and clipped to [0, 1] (+inf pixels count as its maximum, -inf
        as its minimum, NaN as the mean around them:
        :func:`~napari_sam.preprocess.fill_nan_pixels`).
    """
    from scipy import ndimage as ndi

    x = np.asarray(image)
    if x.ndim == 3:  # colour: RGB(A) without its alpha, as the model sees it
        x = x[..., :3].mean(-1, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"edge_map takes a (Y, X) or (Y, X, C) image, not shape {x.shape}")
    x = x.astype(np.float64, copy=False)
    finite = np.isfinite(x)
    if not finite.all():  # as the model sees them: +inf white, -inf black, NaN filled
        lo, hi = (np.min(x[finite]), np.max(x[finite])) if finite.any() else (0.0, 0.0)
        x = fill_nan_pixels(np.where(np.isinf(x), np.where(x > 0, hi, lo), x), lo)
    step = max(1, int(np.ceil(np.sqrt(x.size / PERCENTILE_SAMPLE))))  # a regular subsample
    lo, hi = np.percentile(x[::step, ::step], (0.5, 99.5))
    x = np.clip((x - lo) / max(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)
    return ndi.gaussian_gradient_magnitude(x, EDGE_SIGMA)


def boundary_strength(mask: np.ndarray, edges: np.ndarray) -> float:
    """Mean of ``edges`` ((Y, X) float) over the inner boundary of ``mask`` ((Y, X) bool):
    mask pixels with a 4-neighbour outside it (the image border does not count). -1 for an
    empty mask or one without a boundary inside the image."""
    if not mask.any():
        return -1.0
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    ring = mask & ~inner
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = False, False, False, False
    return float(edges[ring].mean()) if ring.any() else -1.0


def edge_aligned_masks(
    logits: np.ndarray,
    edges: np.ndarray,
    thresholds=EDGE_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks cut at the threshold whose boundary lies on the strongest edges.

    Parameters
    ----------
    logits : numpy.ndarray or torch.Tensor (C, Y, X) float
        Upsampled mask logits at image size (:func:`napari_sam.prompts.upsample_logits`).
    edges : numpy.ndarray (Y, X) float
        :func:`edge_map` of the image.
    thresholds : sequence of float
        Candidate thresholds; on a tie the one nearest 0 wins. A mask that is empty at 0 (the
        model finds nothing) or has no boundary inside the image there stays as it is at 0.

    Returns
    -------
    masks : numpy.ndarray (C, Y, X) bool
    chosen : numpy.ndarray (C,) float32
        The threshold of each mask.
    """
    lg = logits.float().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    if lg.ndim != 3 or lg.shape[1:] != edges.shape:
        raise ValueError(f"logits {lg.shape} do not match the edge map {edges.shape}: pass "
                         "(C, Y, X) logits upsampled to the image's size")
    order = sorted((float(t) for t in thresholds), key=abs)  # ties go to the nearest to 0
    masks = np.zeros(lg.shape, bool)
    chosen = np.zeros(len(lg), np.float32)
    for c, one in enumerate(lg):
        # every candidate lies inside the largest one: work in its box, 1 pixel around it
        # (a box side on the image border keeps that border out of the boundary, as before)
        widest = one > min(order)
        rows, cols = np.nonzero(widest.any(1))[0], np.nonzero(widest.any(0))[0]
        if not len(rows):
            continue  # empty at every threshold: chosen 0
        box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
        part, part_edges = one[box], edges[box]
        best = (boundary_strength(part > 0.0, part_edges), 0.0)
        # nothing, or no boundary inside the image, at 0: the model's answer stands
        for t in (order if best[0] >= 0 else ()):  # 0 first: measured above, ties keep it
            s = boundary_strength(part > t, part_edges)
            if s > best[0]:
                best = (s, t)
        masks[c][box], chosen[c] = part > best[1], best[1]
    return masks, chosen
