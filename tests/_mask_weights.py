"""Random SAM weights that produce masks, and a test image of blobs.

Randomly initialised decoders predict mask logits of about 0.01 and IoUs near 0, so no mask
passes SAM's filters. :func:`make_masks_survive_` fixes that for any model with Meta's module
names (ours or Meta's), which the reference, CUDA and benchmark comparisons need.
"""

from __future__ import annotations

import numpy as np
import torch


def make_masks_survive_(sam, logit_scale: float = 300.0):
    """In place: hypernetwork outputs scaled by ``logit_scale``, the IoU head shifted to about
    0.5, and the transposed-convolution weights shared by the 2 x 2 output positions
    (piecewise-constant, less ragged masks). Returns ``sam``."""
    with torch.no_grad():
        md = sam.mask_decoder
        for mlp in md.output_hypernetworks_mlps:
            mlp.layers[2].weight *= logit_scale
            mlp.layers[2].bias *= logit_scale
        md.iou_prediction_head.layers[2].weight *= 10
        md.iou_prediction_head.layers[2].bias += 0.5
        for i in (0, 3):
            w = md.output_upscaling[i].weight
            w.copy_(w[..., :1, :1].expand_as(w))
    return sam


def blob_image(h: int = 150, w: int = 200, seed: int = 5) -> np.ndarray:
    """(h, w, 3) uint8: 8 coloured discs on a dark background, Gaussian noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w, 3), 30, np.uint8)
    for _ in range(8):
        cy, cx, r = rng.uniform(10, h - 10), rng.uniform(10, w - 10), rng.uniform(8, 25)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(80, 255, 3)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
