"""Shared fixtures. Keep this file small: module-specific fixtures live beside their tests."""

from __future__ import annotations

import os

# Equivalence and quality tests compare float32 numbers: precision="auto" is bf16 on CPUs with
# native bf16 (#29), so the suite pins fp32; tests of the default path clear this themselves.
os.environ.setdefault("NAPARI_SAM_PRECISION", "fp32")

import pytest  # noqa: E402
import torch  # noqa: E402

from tiny_configs import TINY_VIT  # noqa: E402  (also imported by test modules)


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


@pytest.fixture
def files(tmp_path, tiny_sam, tiny_config):
    """``{"stack": a (6, 64, 64) blob stack TIFF, "model": the tiny model's checkpoint file}``
    (the session and replay tests' inputs)."""
    import tifffile

    from stacks import blob_stack
    from tiny_configs import save_tiny

    stack = tmp_path / "data" / "blobs.tif"
    stack.parent.mkdir()
    tifffile.imwrite(stack, blob_stack())
    return {"stack": stack, "model": save_tiny(tmp_path / "m" / "tiny.pt", tiny_sam, tiny_config)}
