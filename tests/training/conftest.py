"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    """3 nuclei-2d sample images (64x64) with ground truth in ``a/`` (``a/ground_truth/``),
    written by ``napari-sam sample`` (a test module may define its own ``samples``)."""
    import napari_sam.cli as C

    root = tmp_path_factory.mktemp("samples")
    assert C.main(["sample", "nuclei-2d", "-o", str(root / "a"), "-n", "3", "--shape",
                   "64,64", "--seed", "10000", "-q"]) == 0
    return root / "a"
