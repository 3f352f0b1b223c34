"""The ViT image encoder's cached relative-position index."""

from __future__ import annotations

import torch


def test_training_after_inference_mode_uses_the_cached_index(tiny_sam):
    """The rel-pos index is cached on first use; made under inference_mode (prediction) it
    must still be usable by autograd when the same process trains afterwards."""
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        tiny_sam.image_encoder(x)
    tiny_sam.train()
    out = tiny_sam.image_encoder(x)
    out.mean().backward()
    assert tiny_sam.image_encoder.patch_embed.proj.weight.grad is not None
