"""PyTorch Segment Anything models (ViT B/L/H with Meta's state_dict keys, and the CNN demo).

>>> from napari_sam.models import CONFIGS, build_sam
>>> sam = build_sam(CONFIGS["vit_b"])
>>> emb = sam.encode(sam.normalize_and_pad(images))          # (B, 256, 64, 64)
>>> logits, iou = sam.decode(emb[:1], boxes=boxes_xyxy)       # (N, 3, 256, 256), (N, 3)
"""

from .build import (
    CONFIGS,
    SamConfig,
    architecture_name,
    build_sam,
    config_from_state_dict,
    load_checkpoint,
    read_checkpoint,
    sam_from_state_dict,
)
from .image_encoder import ImageEncoderCNN, ImageEncoderViT, LayerNorm2d
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
