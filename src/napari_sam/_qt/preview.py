"""Decode the objects prompted on one slice into candidate masks (no Qt; tested without it).

All objects on the slice are decoded in as few batched decoder calls as their kinds of prompt
allow (objects with a box, with points only, with a mask prompt, single clicks that ask for
three candidates): never one call per object.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from napari_sam.predictor import ImageEmbedding, Predictor

from .prompts import SlicePrompts

__all__ = ["ObjectPreview", "decode_slice"]


@dataclass
class ObjectPreview:
    """Candidate masks of one object on one slice; ``index`` is the one shown."""

    key: object
    z: int
    masks: np.ndarray  # (C, H, W) bool
    scores: np.ndarray  # (C,) float
    logits: np.ndarray  # (C, 4E, 4E) float
    index: int = 0

    @property
    def mask(self) -> np.ndarray:
        return self.masks[self.index]

    @property
    def score(self) -> float:
        return float(self.scores[self.index])

    @property
    def n_candidates(self) -> int:
        return len(self.masks)

    def cycle(self) -> int:
        """Show the next candidate; returns its index."""
        self.index = (self.index + 1) % len(self.masks)
        return self.index


def _wants_multimask(sp: SlicePrompts, has_mask: bool) -> bool:
    """Three candidates only for an ambiguous prompt: a single click, no box, no mask."""
    return sp.box is None and not has_mask and len(sp.points) == 1


def decode_slice(
    predictor: Predictor,
    embedding: ImageEmbedding,
    z: int,
    prompts: list[tuple[object, SlicePrompts]],
    mask_inputs: dict | None = None,
) -> list[ObjectPreview]:
    """Candidate masks for every ``(key, SlicePrompts)`` on slice ``z``.

    Parameters
    ----------
    mask_inputs : dict key -> (4E, 4E) logits, optional
        Mask prompts (e.g. an existing label being refined).
    """
    mask_inputs = mask_inputs or {}
    groups: dict[tuple, list[tuple[object, SlicePrompts]]] = defaultdict(list)
    for key, sp in prompts:
        if not sp.usable:
            continue
        has_mask = key in mask_inputs
        sig = (sp.box is not None, len(sp.points) > 0, has_mask, _wants_multimask(sp, has_mask))
        groups[sig].append((key, sp))
    out: dict[object, ObjectPreview] = {}
    for (has_box, has_pts, has_mask, multi), items in groups.items():
        points = labels = boxes = masks = None
        if has_pts:
            n_max = max(len(sp.points) for _, sp in items)
            points = np.zeros((len(items), n_max, 2), np.float32)
            labels = np.full((len(items), n_max), -1, np.int64)
            for i, (_, sp) in enumerate(items):
                points[i, : len(sp.points)] = sp.points
                labels[i, : len(sp.points)] = sp.labels
        if has_box:
            boxes = np.stack([sp.box for _, sp in items]).astype(np.float32)
        if has_mask:
            masks = np.stack([np.asarray(mask_inputs[k], np.float32) for k, _ in items])
        res = predictor.predict_batch(
            embedding=embedding,
            points=points,
            labels=labels,
            boxes=boxes,
            mask_inputs=masks,
            multimask=multi,
        )
        all_masks = res.masks.cpu().numpy()
        scores = res.scores.cpu().numpy()
        logits = res.logits.cpu().numpy()
        for i, (key, _) in enumerate(items):
            out[key] = ObjectPreview(
                key, z, all_masks[i], scores[i], logits[i], index=int(scores[i].argmax())
            )
    return [out[k] for k, _ in prompts if k in out]
