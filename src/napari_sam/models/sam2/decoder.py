"""SAM 2's prompt encoding and mask decoder: SAM's, plus high-resolution features, an
object-score token and dynamic single-mask selection.

Differences from SAM 1's decoder (:class:`napari_sam.models.mask_decoder.MaskDecoder`):

* an ``obj_score_token`` before the IoU token; its output predicts whether the object is
  present at all (``object_score_logits`` > 0), which propagation uses for occlusion;
* the two transposed convolutions of the upscaling add the stride-4 and stride-8 features
  of the image encoder (``conv_s0``, ``conv_s1`` project them to D/8 and D/4 channels);
* IoU predictions go through a sigmoid;
* single-mask output falls back to the best of the three multimask outputs when the
  single mask is unstable (its area changes by more than 2 % between logit -0.05 and 0.05).

Box prompts are encoded as two corner points with labels 2 and 3 placed before the clicks,
and a padding point is always appended, as Meta's SAM 2 does. Parameter names are Meta's
(``sam_mask_decoder.*``, ``sam_prompt_encoder.*``).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from ..mask_decoder import MLP, MaskDecoder
from ..prompt_encoder import PromptEncoder

__all__ = ["Sam2MaskDecoder", "Sam2PromptEncoder", "DecodedMasks", "decoder_keys_from_meta"]

_MLP_KEY = re.compile(r"(transformer\.layers\.\d+\.mlp)\.layers\.([01])\.")


def decoder_keys_from_meta(state_dict: dict) -> dict:
    """Rename SAM 2's two-way-transformer MLP keys (``mlp.layers.0/1``) to SAM 1's
    (``mlp.lin1/lin2``), which our shared transformer uses; other keys pass unchanged."""
    return {_MLP_KEY.sub(lambda m: f"{m[1]}.lin{int(m[2]) + 1}.", k): v
            for k, v in state_dict.items()}


class Sam2PromptEncoder(PromptEncoder):
    """SAM's prompt encoder with SAM 2's point labels: 1 positive, 0 negative, 2 and 3 box
    corners (top-left, bottom-right), -1 padding."""

    def embed_points(self, points: Tensor, labels: Tensor) -> Tensor:
        """points (N, P, 2) (x, y) in the input frame, labels (N, P) -> (N, P + 1, D); a
        padding point is appended."""
        points = torch.cat([points.float() + 0.5, points.new_zeros(points.shape[0], 1, 2)], 1)
        labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        lab = labels.to(emb.device)[..., None]
        emb = torch.where(lab == -1, self.not_a_point_embed.weight, emb)
        for kind in range(4):
            emb = emb + (lab == kind) * self.point_embeddings[kind].weight
        return emb

    def encode(self, points: Tensor | None, labels: Tensor | None,
               masks: Tensor | None, batch: int = 1) -> tuple[Tensor, Tensor]:
        """Sparse (N, P + 1, D) (or (N, 0, D) without points) and dense (N, D, E, E)
        embeddings; ``masks`` (N, 1, 4E, 4E) logits or None."""
        weight = self.no_mask_embed.weight
        if points is not None:
            sparse = self.embed_points(points, labels)
            batch = points.shape[0]
        else:
            batch = masks.shape[0] if masks is not None else batch
            sparse = weight.new_empty((batch, 0, self.embed_dim))
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = weight.reshape(1, -1, 1, 1).expand(batch, -1, *self.image_embedding_size)
        return sparse, dense


class DecodedMasks(tuple):
    """(masks (N, C, 4E, 4E) logits, iou (N, C), tokens (N, C', D), object_logits (N, 1))."""

    __slots__ = ()

    @property
    def masks(self) -> Tensor:
        return self[0]

    @property
    def iou(self) -> Tensor:
        return self[1]

    @property
    def tokens(self) -> Tensor:
        return self[2]

    @property
    def object_logits(self) -> Tensor:
        return self[3]


class Sam2MaskDecoder(MaskDecoder):
    """SAM 2's mask decoder (see the module docstring).

    Parameters
    ----------
    transformer_dim : int
        D (256).
    transformer : nn.Module
        The two-way transformer (same as SAM 1's).
    stability_delta, stability_threshold : float
        Dynamic single-mask selection: a single mask is kept when the area ratio of
        logits > delta to logits > -delta is at least the threshold.
    multimask_token_for_pointer : bool
        With multimask output, return the three multimask tokens (for object pointers).
    """

    def __init__(self, *, transformer_dim: int, transformer: nn.Module,
                 stability_delta: float = 0.05, stability_threshold: float = 0.98,
                 multimask_token_for_pointer: bool = True) -> None:
        super().__init__(transformer_dim=transformer_dim, transformer=transformer)
        d = transformer_dim
        self.obj_score_token = nn.Embedding(1, d)
        self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1)
        self.iou_prediction_head = MLP(d, 256, self.num_mask_tokens, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(d, d, 1, 3)
        self.stability_delta = stability_delta
        self.stability_threshold = stability_threshold
        self.multimask_token_for_pointer = multimask_token_for_pointer

    def decode(self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor,
               dense: Tensor, high_res: list[Tensor], multimask: bool) -> DecodedMasks:
        """Decode N prompt sets.

        Parameters
        ----------
        image_embeddings : Tensor
            (N or 1, D, E, E).
        image_pe : Tensor
            (1, D, E, E).
        sparse, dense : Tensor
            From :meth:`Sam2PromptEncoder.encode`.
        high_res : list of Tensor
            The projected stride-4 (N or 1, D/8, 4E, 4E) and stride-8 (N or 1, D/4, 2E, 2E)
            features (``conv_s0``/``conv_s1`` of the encoder's features).
        multimask : bool
            Three candidates (else one, chosen dynamically).
        """
        masks, iou, tokens, obj = self.predict_all(image_embeddings, image_pe, sparse, dense,
                                                   high_res)
        if multimask:
            masks, iou = masks[:, 1:], iou[:, 1:]
        elif not self.training:
            masks, iou = self.dynamic_single_mask(masks, iou)
        else:
            masks, iou = masks[:, :1], iou[:, :1]
        pointer = tokens[:, 1:] if multimask and self.multimask_token_for_pointer \
            else tokens[:, :1]
        return DecodedMasks((masks, iou, pointer, obj))

    def predict_all(self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor,
                    dense: Tensor, high_res: list[Tensor]):
        """All four mask tokens: masks (N, 4, 4E, 4E), iou (N, 4), mask tokens (N, 4, D),
        object-score logits (N, 1)."""
        n = sparse.shape[0]
        out_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight,
                                self.mask_tokens.weight]).to(sparse.dtype)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(n, -1, -1), sparse], dim=1)
        src = image_embeddings + dense
        if src.shape[0] != n:
            src = src.expand(n, -1, -1, -1)
        _, c, h, w = src.shape
        hs, keys = self.transformer(src, image_pe, tokens)
        mask_tokens = hs[:, 2: 2 + self.num_mask_tokens]
        src = keys.transpose(1, 2).reshape(n, c, h, w)
        deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
        s0, s1 = high_res
        up = act1(norm1(deconv1(src) + s1))
        up = act2(deconv2(up) + s0)
        hyper = torch.stack([mlp(mask_tokens[:, i])
                             for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c2, h2, w2 = up.shape
        masks = (hyper @ up.reshape(b, c2, h2 * w2)).reshape(b, -1, h2, w2)
        iou = self.iou_prediction_head(hs[:, 1])
        return masks, iou, mask_tokens, self.pred_obj_score_head(hs[:, 0])

    def dynamic_single_mask(self, masks: Tensor, iou: Tensor) -> tuple[Tensor, Tensor]:
        """The single-mask output where it is stable, else the multimask output with the
        highest predicted IoU: masks (N, 4, H, W), iou (N, 4) -> (N, 1, H, W), (N, 1)."""
        best = torch.argmax(iou[:, 1:], dim=-1)
        rows = torch.arange(iou.shape[0], device=iou.device)
        best_masks = masks[:, 1:][rows, best].unsqueeze(1)
        best_iou = iou[:, 1:][rows, best].unsqueeze(1)
        single = masks[:, :1].flatten(-2)
        inner = (single > self.stability_delta).sum(-1).float()
        outer = (single > -self.stability_delta).sum(-1).float()
        stable = torch.where(outer > 0, inner / outer, 1.0) >= self.stability_threshold
        out_masks = torch.where(stable[..., None, None], masks[:, :1], best_masks)
        return out_masks, torch.where(stable, iou[:, :1], best_iou)
