"""PyTorch Segment Anything models (ViT B/L/H with Meta's state_dict keys, and the CNN demo).

Modules: ``config`` (architectures), ``checkpoint`` (reading files), ``build`` (models from
configs and state_dicts), ``common`` / ``image_encoder`` / ``prompt_encoder`` /
``mask_decoder`` / ``sam`` (the networks), ``registry`` (named models and ``load_model``)
over ``catalog`` (the table of known checkpoints) and ``download`` (cache, download, checksums).

>>> from napari_sam.models import CONFIGS, build_sam
>>> sam = build_sam(CONFIGS["vit_b"])
>>> emb = sam.encode(sam.normalize_and_pad(images))          # (B, 256, 64, 64)
>>> logits, iou = sam.decode(emb[:1], boxes=boxes_xyxy)       # (N, 3, 256, 256), (N, 3)
"""

from .build import build_sam, load_checkpoint, sam_from_state_dict
from .checkpoint import read_checkpoint
from .common import LayerNorm2d
from .config import CONFIGS, SamConfig, architecture_name, config_from_state_dict
from .image_encoder import ImageEncoderCNN, ImageEncoderViT
from .mask_decoder import MLP, MaskDecoder, TwoWayTransformer
from .prompt_encoder import PositionEmbeddingRandom, PromptEncoder
from .sam import Sam

__all__ = [
    "CONFIGS",
    "ImageEncoderCNN",
    "ImageEncoderViT",
    "LayerNorm2d",
    "MLP",
    "MaskDecoder",
    "PositionEmbeddingRandom",
    "PromptEncoder",
    "Sam",
    "SamConfig",
    "TwoWayTransformer",
    "architecture_name",
    "build_sam",
    "config_from_state_dict",
    "load_checkpoint",
    "read_checkpoint",
    "sam_from_state_dict",
]
