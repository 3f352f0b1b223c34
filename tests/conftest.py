"""Shared fixtures. Keep this file small: module-specific fixtures live beside their tests."""

from __future__ import annotations

import pytest
import torch

# a ViT small enough for unit tests (about 0.1 s per 256 px image on 2 CPU cores)
TINY_VIT = dict(
    encoder="vit",
    img_size=256,
    patch_size=16,
    encoder_embed_dim=64,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    window_size=7,
    decoder_depth=1,
    decoder_mlp_dim=256,
    name="tiny_vit",
)


@pytest.fixture
def tiny_config():
    """A tiny ViT :class:`~napari_sam.models.SamConfig` (input 256, embedding 16x16)."""
    from napari_sam.models import SamConfig

    return SamConfig(**TINY_VIT)


@pytest.fixture
def tiny_sam(tiny_config):
    """A seeded, randomly initialised tiny ViT model in eval mode."""
    from napari_sam.models import build_sam

    torch.manual_seed(0)
    return build_sam(tiny_config)
