"""The graphs of an ONNX export of a SAM model: the prompt encoder + mask decoder in Meta's
interface, and the image encoder with a fixed input size.

The decoder graph has exactly the inputs and outputs of the ONNX model written by Meta's
``scripts/export_onnx_model.py`` (``segment_anything.utils.onnx.SamOnnxModel``), so tools
written for Meta's decoder (the SAM web demo, micro-sam's BioEngine service, samexporter,
labelme, ...) run ours unchanged:

=================  ======================  ==================================================
input              shape, dtype            meaning
=================  ======================  ==================================================
image_embeddings   (1, 256, E, E) float32  output of the image encoder
point_coords       (1, N, 2) float32       (x, y) in the model-input frame (S x S pixels):
                                           ``(col * w / W, row * h / H)``, (h, w)
                                           ``= floor((H, W) * S / max(H, W) + 0.5)``
point_labels       (1, N) float32          1 positive, 0 negative, 2 / 3 box top-left /
                                           bottom-right corner, -1 padding point
mask_input         (1, 1, 4E, 4E) float32  low-resolution logits of a previous prediction
has_mask_input     (1,) float32            1 to use ``mask_input``, else 0
orig_im_size       (2,) float32            (H, W) of the original image
=================  ======================  ==================================================

Outputs: ``masks`` (1, C, H, W) logits at the original size (threshold at 0),
``iou_predictions`` (1, C) and ``low_res_masks`` (1, C, 4E, 4E), where C is 4 (the
single-mask token 0 then the three multimask tokens, as in Meta's export) or 1 with
``return_single_mask``. ``N`` is dynamic. As with Meta's decoder, points-only prompts need one
padding point ``(0, 0)`` with label -1 appended; a box is two points labelled 2 and 3 and no
padding point.

The encoder graph maps ``image`` (1, 3, S, S) float32, the RGB image resized so that its
longest side is S, normalised with ``pixel_mean`` / ``pixel_std`` and zero-padded at the
bottom and right (what :meth:`napari_sam.models.Sam.normalize_and_pad` returns), to
``image_embeddings`` (1, 256, E, E).

This module holds the interface (file and tensor names) and the two ``nn.Module`` wrappers
that are traced; :mod:`.onnx_export` writes the files.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_sam.models.image_encoder import unchunked_attention

__all__ = [
    "SamOnnxDecoder",
    "SamOnnxEncoder",
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "EXTRA_OUTPUTS",
    "DECODER_FILE",
    "ENCODER_FILE",
    "METADATA_FILE",
    "MIN_OPSET",
]

DECODER_FILE = "decoder.onnx"
ENCODER_FILE = "encoder.onnx"
METADATA_FILE = "export.json"
#: the lowest opset we export (LayerNormalization needs 17)
MIN_OPSET = 17
DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
#: outputs with ``return_extra_metrics``
EXTRA_OUTPUTS = ("masks", "iou_predictions", "stability_scores", "areas", "low_res_masks")


def _stability_score(logits: Tensor, threshold: float, offset: float) -> Tensor:
    """IoU of ``logits > t + offset`` and ``logits > t - offset``: (..., H, W) -> (...) float32
    (Meta's ``calculate_stability_score``, in a form the exporter traces)."""
    inter = (logits > threshold + offset).sum(-1, dtype=torch.int32).sum(-1, dtype=torch.int32)
    union = (logits > threshold - offset).sum(-1, dtype=torch.int32).sum(-1, dtype=torch.int32)
    return inter.float() / union.float()


class SamOnnxDecoder(nn.Module):
    """Prompt encoder + mask decoder + mask upsampling of a SAM model, in Meta's ONNX interface.

    The graph that ``torch.onnx.export`` traces from this module is the one described in the
    module docstring; calling it in PyTorch gives the same numbers.

    Parameters
    ----------
    model : napari_sam.models.Sam
        Any of our SAM models (ViT or the demo CNN); its prompt encoder and mask decoder
        are used, not copied.
    return_single_mask : bool
        Return one mask: the best of the three multimask outputs for a single point, else
        the single-mask output (Meta's ``--return-single-mask``).
    use_stability_score : bool
        Replace the predicted IoU by the stability score of the low-resolution logits
        (Meta's ``--use-stability-score``).
    return_extra_metrics : bool
        Also return ``stability_scores`` and ``areas`` of the upsampled masks (Meta's
        ``--return-extra-metrics``); the outputs are then ``masks, iou_predictions,
        stability_scores, areas, low_res_masks``.
    """

    stability_score_offset = 1.0

    def __init__(
        self,
        model: nn.Module,
        *,
        return_single_mask: bool = False,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
    ) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.img_size = int(model.img_size)
        self.mask_threshold = float(model.mask_threshold)
        self.return_single_mask = bool(return_single_mask)
        self.use_stability_score = bool(use_stability_score)
        self.return_extra_metrics = bool(return_extra_metrics)

    @property
    def output_names(self) -> tuple[str, ...]:
        return EXTRA_OUTPUTS if self.return_extra_metrics else DECODER_OUTPUTS

    def _embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        """coords (1, N, 2) (x, y), labels (1, N) -> sparse embeddings (1, N, D)."""
        pe = self.prompt_encoder.pe_layer.pe_encoding((coords + 0.5) / self.img_size)
        labels = labels.unsqueeze(-1).expand_as(pe)
        emb = pe * (labels != -1)
        emb = emb + self.prompt_encoder.not_a_point_embed.weight * (labels == -1)
        for i, point_embedding in enumerate(self.prompt_encoder.point_embeddings):
            emb = emb + point_embedding.weight * (labels == i)
        return emb

    def _embed_masks(self, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        """(1, 1, 4E, 4E) logits and a 0/1 flag -> dense embeddings (1, D, E, E)."""
        dense = has_mask_input * self.prompt_encoder.mask_downscaling(mask_input)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return dense + (1 - has_mask_input) * no_mask

    def _upsample(self, low_res: Tensor, orig_im_size: Tensor) -> Tensor:
        """(1, C, 4E, 4E) -> (1, C, H, W): to S x S, crop the padding, to the original size
        (bilinear, like :meth:`napari_sam.Predictor.upsample`)."""
        s = self.img_size
        masks = F.interpolate(low_res, size=(s, s), mode="bilinear", align_corners=False)
        size = orig_im_size.to(torch.float32)
        input_size = torch.floor(size * (s / torch.max(size)) + 0.5).to(torch.int64)
        # crop with index_select: slicing with int(tensor) would be traced as a constant
        # (the dummy image's size), as happens to Meta's export with PyTorch 2.x
        rows = torch.arange(input_size[0], device=masks.device)
        cols = torch.arange(input_size[1], device=masks.device)
        masks = masks.index_select(2, rows).index_select(3, cols)
        hw = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)

    def _select_single(self, masks: Tensor, scores: Tensor, num_points: int):
        """Meta's rule without control flow: the best multimask output when there is one
        point (plus its padding point), else the single-mask output."""
        reweight = torch.tensor([[1000.0] + [0.0] * (scores.shape[1] - 1)])
        best = torch.argmax(scores + (num_points - 2.5) * reweight, dim=1)
        rows = torch.arange(masks.shape[0])
        return masks[rows, best].unsqueeze(1), scores[rows, best].unsqueeze(1)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor,
    ) -> tuple[Tensor, ...]:
        """Decode one prompt set; arguments and outputs as in the module docstring."""
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        low_res, scores = self.mask_decoder.predict_masks(
            image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense
        )
        if self.use_stability_score:
            scores = _stability_score(low_res, self.mask_threshold, self.stability_score_offset)
        if self.return_single_mask:
            low_res, scores = self._select_single(low_res, scores, point_coords.shape[1])
        masks = self._upsample(low_res, orig_im_size)
        if self.return_extra_metrics:
            stability = _stability_score(masks, self.mask_threshold, self.stability_score_offset)
            areas = (masks > self.mask_threshold).sum(-1).sum(-1)
            return masks, scores, stability, areas, low_res
        return masks, scores, low_res


class SamOnnxEncoder(nn.Module):
    """The image encoder for export: ``image`` (1, 3, S, S) normalised and padded ->
    ``image_embeddings`` (1, 256, E, E) float32.

    Its parameters must require gradients while it is traced (see :meth:`forward`;
    :func:`~napari_sam.export.onnx_export.export_onnx` arranges it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder
        self.img_size = int(model.img_size)

    def forward(self, image: Tensor) -> Tensor:
        # With gradients enabled the ViT's relative-position attention takes its plain
        # (autograd) path: its inference path writes with torch.add(out=), which the ONNX
        # exporter cannot translate. The traced graph is the same arithmetic. Its bias is
        # built in one chunk: chunk sizes computed from traced shapes would be wrong in ONNX.
        with torch.enable_grad(), unchunked_attention(self.image_encoder):
            return self.image_encoder(image)
