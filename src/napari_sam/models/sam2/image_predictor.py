"""2D prompting with a SAM 2.1 model: what :class:`napari_sam.Predictor` delegates to when
it is given a :class:`~napari_sam.models.sam2.Sam2Model`.

The steps are those of Meta's ``SAM2ImagePredictor``: the (Y, X, 3) uint8 image is scaled
to [0, 1], resized to the square S x S model input (both axes stretched, no padding),
normalised with ImageNet statistics and encoded once; the embedding keeps the image
features (with the learned ``no_mem_embed`` added) and the stride-4 and stride-8
high-resolution features the mask decoder adds back. Prompts in (row, col) image pixels
become (x, y) input pixels, a box its two corners (labels 2 and 3) before the clicks; the
decoder's low-resolution logits (4E x 4E) are resized to the image by one bilinear step
and thresholded at 0. Unlike propagation, a single image keeps every mask the decoder
gives, whatever the object-score head says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_sam.device import autocast
from napari_sam.io.writers import write_npz_atomic

from .model import Sam2Model

__all__ = ["Sam2ImageEmbedding", "Sam2ImagePredictor", "sam2_input"]

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_LOGIT_LIMIT = 32.0  # returned low-resolution logits are clamped to +-32, as Meta's


@dataclass
class Sam2ImageEmbedding:
    """A SAM 2 model's encoding of one 2D image.

    Attributes
    ----------
    features : torch.Tensor, (256, E, E) float32
        Image embedding plus ``no_mem_embed``.
    high_res : list of torch.Tensor
        [(32, 4E, 4E), (64, 2E, 2E)] float32: the stride-4 and stride-8 features, already
        projected by the decoder's ``conv_s0`` / ``conv_s1``.
    original_size : (int, int)
        (rows, cols) of the image.
    input_size : (int, int)
        (S, S): the image fills the whole model input (stretched, not padded).
    model_id : str
        The weights that made it; decoding with other weights is refused.
    """

    features: torch.Tensor
    high_res: list
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_id: str

    family = "sam2"

    def save(self, path: str | os.PathLike) -> Path:
        """Save to an ``.npz`` file and return its path, atomically as
        :meth:`napari_sam.predictor.ImageEmbedding.save` (no temporary left by a failed save,
        an existing ``path`` kept, the ``OSError`` naming ``path``)."""
        arrays = {"features": self.features.detach().float().cpu().numpy(),
                  "high_res_0": self.high_res[0].detach().float().cpu().numpy(),
                  "high_res_1": self.high_res[1].detach().float().cpu().numpy(),
                  "original_size": np.asarray(self.original_size),
                  "input_size": np.asarray(self.input_size), "model_id": np.asarray(self.model_id)}
        return write_npz_atomic(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Sam2ImageEmbedding:
        """Load an embedding written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(torch.from_numpy(data["features"]),
                       [torch.from_numpy(data["high_res_0"]), torch.from_numpy(data["high_res_1"])],
                       tuple(int(v) for v in data["original_size"]),
                       tuple(int(v) for v in data["input_size"]), str(data["model_id"]))


def sam2_input(rgb: np.ndarray, size: int, device) -> torch.Tensor:
    """(Y, X, 3) uint8 -> (1, 3, size, size) float32 normalised model input (bilinear,
    antialiased resize of both axes to ``size``, as Meta's transforms)."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1).float() / 255
    t = F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False,
                      antialias=True)
    mean = torch.tensor(_MEAN, device=device).reshape(1, 3, 1, 1)
    std = torch.tensor(_STD, device=device).reshape(1, 3, 1, 1)
    return (t - mean) / std


def _as_tensor(x, device, dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=device,
                           dtype=dtype)


class Sam2ImagePredictor:
    """Encode images and decode prompts with a :class:`Sam2Model`.

    Parameters
    ----------
    model : Sam2Model
        On ``device``, in eval mode.
    device : torch.device
    dtype : torch.dtype
        Autocast precision (float32: none).
    """

    def __init__(self, model: Sam2Model, device: torch.device, dtype: torch.dtype):
        self.model = model
        self.device = device
        self.dtype = dtype

    @torch.inference_mode()
    def encode(self, rgbs: list[np.ndarray]) -> list[Sam2ImageEmbedding]:
        """Encode same-sized (Y, X, 3) uint8 images in one batch."""
        s = self.model.config.image_size
        x = torch.cat([sam2_input(rgb, s, self.device) for rgb in rgbs])
        with autocast(self.device, self.dtype):
            image = self.model.encode_image(x)
        features = (image.features + self.model.no_mem_embed.reshape(1, -1, 1, 1)).float()
        high = [h.float() for h in image.high_res]
        size = tuple(int(v) for v in rgbs[0].shape[:2])
        return [Sam2ImageEmbedding(features[i], [high[0][i], high[1][i]], size, (s, s),
                                   self.model.model_id) for i in range(len(rgbs))]

    def _points(self, emb: Sam2ImageEmbedding, points, labels, boxes):
        """(row, col) points and boxes -> SAM 2's (N, P, 2) (x, y) input-frame points with
        the box corners first, and (N, P) int labels; (None, None) without either."""
        h, w = emb.original_size
        s = self.model.config.image_size
        scale = torch.tensor([s / w, s / h], device=self.device)
        coords, labs = [], []
        if boxes is not None:
            b = _as_tensor(boxes, self.device, torch.float32).reshape(-1, 4)
            coords.append(b[:, [1, 0, 3, 2]].reshape(-1, 2, 2) * scale)
            labs.append(torch.tensor([2, 3], device=self.device).expand(b.shape[0], 2))
        if points is not None:
            p = _as_tensor(points, self.device, torch.float32)
            p = p.reshape(-1, *p.shape[-2:]) if p.ndim >= 2 else p.reshape(1, -1, 2)
            lab = (torch.ones(p.shape[:2], device=self.device) if labels is None
                   else _as_tensor(labels, self.device, torch.float32).reshape(p.shape[:2]))
            coords.append(p.flip(-1) * scale)
            labs.append(lab)
        if not coords:
            return None, None
        if len(coords) == 2 and coords[0].shape[0] != coords[1].shape[0]:
            raise ValueError(f"{coords[0].shape[0]} boxes and {coords[1].shape[0]} point sets: "
                             "give one of each per object")
        return torch.cat(coords, dim=1), torch.cat(labs, dim=1).to(torch.int32)

    @torch.inference_mode()
    def decode(self, emb: Sam2ImageEmbedding, points=None, labels=None, boxes=None,
               mask_inputs=None, multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor,
                                                                  torch.Tensor]:
        """Decode N prompt sets on one image.

        Parameters
        ----------
        points : (N, P, 2) (row, col) image pixels, optional
        labels : (N, P), optional
            1 positive, 0 negative, -1 padding; default all positive.
        boxes : (N, 4) (row0, col0, row1, col1), optional
        mask_inputs : (N, 4E, 4E) or (N, 1, 4E, 4E) low-resolution logits, optional
        multimask : bool
            3 candidates per prompt set (else 1, chosen dynamically as SAM 2 does).

        Returns
        -------
        logits : (N, C, 4E, 4E) float32, unclamped
        scores : (N, C) float32 predicted IoU
        object_logits : (N, 1) float32 (> 0: the object-score head finds an object)
        """
        pts, labs = self._points(emb, points, labels, boxes)
        masks = None
        if mask_inputs is not None:
            masks = _as_tensor(mask_inputs, self.device, torch.float32)
            masks = masks[:, None] if masks.ndim == 3 else masks
        if pts is None and masks is None:
            raise ValueError("give at least one prompt: points, boxes or mask_inputs")
        model = self.model
        with autocast(self.device, self.dtype):
            sparse, dense = model.sam_prompt_encoder.encode(pts, labs, masks)
            features = emb.features.to(self.device)[None]
            high = [h.to(self.device)[None] for h in emb.high_res]
            out = model.sam_mask_decoder.decode(features, model.sam_prompt_encoder.get_dense_pe(),
                                                sparse, dense, high, multimask)
        return out.masks.float(), out.iou.float(), out.object_logits.float()

    @staticmethod
    def clamp(logits: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits as Meta's predictor returns them (clamped to +-32)."""
        return torch.clamp(logits, -_LOGIT_LIMIT, _LOGIT_LIMIT)

    @torch.inference_mode()
    def upsample(self, logits: torch.Tensor, emb: Sam2ImageEmbedding) -> torch.Tensor:
        """Low-resolution logits (..., 4E, 4E) -> boolean masks (..., H, W): one bilinear
        resize to the image size, threshold at 0."""
        lead = logits.shape[:-2]
        flat = logits.reshape(-1, 1, *logits.shape[-2:]).float()
        up = F.interpolate(flat, size=tuple(emb.original_size), mode="bilinear",
                           align_corners=False)
        return (up > self.model.mask_threshold).reshape(*lead, *up.shape[-2:])
