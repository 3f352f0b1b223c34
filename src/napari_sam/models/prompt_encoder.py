"""Prompt encoder: points, boxes and mask prompts -> sparse and dense embeddings.

State-dict keys and behaviour match Meta's ``segment_anything.modeling.PromptEncoder``.
Coordinates here are SAM's (x, y) in the model's input frame (S x S).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .common import LayerNorm2d

__all__ = ["PromptEncoder", "PositionEmbeddingRandom"]


class PositionEmbeddingRandom(nn.Module):
    """Fourier features of (x, y) with random Gaussian frequencies.

    Buffer ``positional_encoding_gaussian_matrix`` (2, F); the encoding has 2F channels.
    Computed in float32 even under autocast (sin/cos of large arguments need it).
    """

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def pe_encoding(self, coords: Tensor) -> Tensor:
        """coords (..., 2) in [0, 1] -> (..., 2F) float32."""
        with torch.autocast(coords.device.type, enabled=False):
            coords = (2 * coords.float() - 1) @ self.positional_encoding_gaussian_matrix.float()
            coords = 2 * math.pi * coords
            return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> Tensor:
        """Encoding of the centres of an (h, w) grid -> (2F, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(
            [x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1
        )  # (h, w, 2) as (x, y)
        return self.pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: Tensor, image_size: tuple[int, int]) -> Tensor:
        """coords (B, N, 2) (x, y) in pixels of an (H, W) image -> (B, N, 2F)."""
        size = torch.tensor(
            [float(image_size[1]), float(image_size[0])], device=coords_input.device
        )
        return self.pe_encoding(coords_input.float() / size)


class PromptEncoder(nn.Module):
    """Encode prompts for the mask decoder.

    Parameters
    ----------
    embed_dim : int
        Prompt embedding dimension D (256).
    image_embedding_size : (int, int)
        (E, E): spatial size of the image embedding.
    input_image_size : (int, int)
        (S, S): padded model input size, the frame of point and box coordinates.
    mask_in_chans : int
        Hidden channels of the mask-prompt downscaler (16).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int = 16,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # negative, positive, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> Tensor:
        """Positional encoding of the embedding grid: (1, D, E, E) float32."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: Tensor, labels: Tensor, pad: bool) -> Tensor:
        """points (N, P, 2), labels (N, P) -> (N, P (+1 padding point), D)."""
        points = points.float() + 0.5  # pixel centres
        labels = labels.to(points.device)
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        lab = labels[..., None]
        emb = torch.where(lab == -1, self.not_a_point_embed.weight, emb)
        emb = emb + (lab == 0) * self.point_embeddings[0].weight
        return emb + (lab == 1) * self.point_embeddings[1].weight

    def _embed_boxes(self, boxes: Tensor) -> Tensor:
        """boxes (N, 4) x0, y0, x1, y1 -> corner embeddings (N, 2, D)."""
        coords = (boxes.float() + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        corners = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return emb + corners

    def _embed_masks(self, masks: Tensor) -> Tensor:
        """masks (N, 1, 4E, 4E) logits -> (N, D, E, E)."""
        return self.mask_downscaling(masks)

    @staticmethod
    def _batch_size(
        points: tuple[Tensor, Tensor] | None, boxes: Tensor | None, masks: Tensor | None
    ) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(
        self,
        points: tuple[Tensor, Tensor] | None,
        boxes: Tensor | None,
        masks: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Embed prompts.

        Parameters
        ----------
        points : (coords (N, P, 2), labels (N, P)) or None
            (x, y) input-frame coordinates; labels 1 positive, 0 negative, -1 padding.
            A padding point is appended when no box is given (as in SAM).
        boxes : (N, 4) or None
            x0, y0, x1, y1.
        masks : (N, 1, 4E, 4E) or None
            Mask logits.

        Returns
        -------
        sparse : Tensor
            (N, T, D) with T = P (+1) + 2 * (boxes given).
        dense : Tensor
            (N, D, E, E); an expanded view of ``no_mask_embed`` when ``masks`` is None
            (batch 1 when there are no sparse prompts either).
        """
        bs = self._batch_size(points, boxes, masks)
        weight = self.no_mask_embed.weight
        parts = []
        if points is not None:
            parts.append(self._embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            parts.append(self._embed_boxes(boxes))
        if parts:
            sparse = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        else:
            sparse = weight.new_empty((bs, 0, self.embed_dim))
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            dense = weight.reshape(1, -1, 1, 1).expand(bs, -1, *self.image_embedding_size)
        return sparse, dense
