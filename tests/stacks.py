"""Small test stacks shared by the annotation, session and GUI tests."""

from __future__ import annotations

import numpy as np


def blob_stack(z: int = 6, size: int = 64, seed: int = 0) -> np.ndarray:
    """(z, size, size) float32: two bright discs (radius 8, at (20, 20) and (44, 44)) on
    N(20, 3) noise, on every slice: for wiring tests with the tiny model."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(20, 3, (z, size, size)).astype(np.float32)
    img[:, (yy - 20) ** 2 + (xx - 20) ** 2 < 64] += 100
    img[:, (yy - 44) ** 2 + (xx - 44) ** 2 < 64] += 100
    return img


def blob_movie(t: int = 5) -> np.ndarray:
    """(t, 6, 64, 64) float32: a movie of volumes, each time point its own
    :func:`blob_stack` (the noise seeded by the time point)."""
    return np.stack([blob_stack(seed=i) for i in range(t)])


def drifting_blob_slices(seed: int, shape=(9, 40, 40), missed: float = 0.3) -> np.ndarray:
    """Per-slice 2D labels (Z, Y, X) uint16, ids 1..n on each slice: 12 discs drifting through
    z, each missed on a slice with probability ``missed`` (for slice-linking tests)."""
    rng = np.random.default_rng(seed)
    z, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros(shape, np.uint16)
    blobs = [(rng.uniform(5, h - 5), rng.uniform(5, w - 5), rng.uniform(3, 8),
              rng.integers(0, z), rng.integers(1, z + 1)) for _ in range(12)]
    for k in range(z):
        nid = 0
        for cy, cx, r, z0, length in blobs:
            if not z0 <= k < z0 + length or rng.random() < missed:
                continue
            cy += rng.normal(0, 1.5)
            cx += rng.normal(0, 1.5)
            disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) & (out[k] == 0)
            if disc.sum() > 3:
                nid += 1
                out[k][disc] = nid
    return out


def blob_session(model):
    """An :class:`~napari_sam.annotate.AnnotationSession` on :func:`blob_stack` (named
    "blobs") with ``model`` on the CPU at the default precision, slice 3 shown."""
    from napari_sam.annotate import AnnotationSession, ModelChoice
    from napari_sam.predictor import Predictor

    s = AnnotationSession()
    s.set_image(blob_stack(), name="blobs")
    choice = ModelChoice("tiny", "tiny")
    s.models.put(choice, "auto", Predictor(model, device="cpu"))
    s.set_model(choice)
    s.go_to_slice(3)
    return s
