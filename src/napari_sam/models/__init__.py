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

import importlib

#: where each public name lives: imported on first use (PEP 562), so that listing the
#: models (the dock's Model box, ``napari-sam models list``) does not import torch
_HOMES = {
    "build_sam": ".build", "load_checkpoint": ".build", "sam_from_state_dict": ".build",
    "read_checkpoint": ".checkpoint", "LayerNorm2d": ".common",
    "CONFIGS": ".config", "SamConfig": ".config", "architecture_name": ".config",
    "config_from_state_dict": ".config",
    "ImageEncoderCNN": ".image_encoder", "ImageEncoderViT": ".image_encoder",
    "MLP": ".mask_decoder", "MaskDecoder": ".mask_decoder",
    "TwoWayTransformer": ".mask_decoder",
    "PositionEmbeddingRandom": ".prompt_encoder", "PromptEncoder": ".prompt_encoder",
    "Sam": ".sam",
}


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


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
