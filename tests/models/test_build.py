"""Building models from configs and state_dicts (models/build.py)."""

from __future__ import annotations

import pytest
import torch

from napari_sam.models import CONFIGS, SamConfig, build_sam, sam_from_state_dict


def meta_state_dict(config: SamConfig) -> dict[str, torch.Tensor]:
    """State dict of shapes only (meta device): no memory for vit_h."""
    with torch.device("meta"):
        return build_sam(config).state_dict()


def test_wrong_architecture_names_the_problem(tmp_path):
    sd = meta_state_dict(CONFIGS["vit_l"])
    with pytest.raises(ValueError, match="checkpoint is a vit_l but the config is vit_b") as e:
        sam_from_state_dict(sd, CONFIGS["vit_b"])
    assert "shape mismatches" in str(e.value)
    small = meta_state_dict(CONFIGS["vit_b"].replace(encoder_depth=2, img_size=256))
    with pytest.raises(ValueError, match="unexpected keys|missing keys"):
        sam_from_state_dict(small, CONFIGS["vit_b"].replace(encoder_depth=3, img_size=256))
    with pytest.raises(ValueError, match="does not look like a Segment Anything model"):
        sam_from_state_dict({"weight": torch.zeros(3)})

