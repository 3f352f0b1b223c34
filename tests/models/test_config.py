"""SamConfig, the named configs, and configs inferred from state_dict shapes (models/config.py)."""

from __future__ import annotations

import json

import pytest
import torch

from napari_sam.models import CONFIGS, SamConfig, build_sam, config_from_state_dict


def meta_state_dict(config: SamConfig) -> dict[str, torch.Tensor]:
    """State dict of shapes only (meta device): no memory for vit_h."""
    with torch.device("meta"):
        return build_sam(config).state_dict()


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_config_round_trip_official(name):
    cfg = CONFIGS[name]
    inferred = config_from_state_dict(meta_state_dict(cfg))
    assert inferred == cfg  # including the name: recognised as the official architecture
    assert inferred.embedding_size == 64


def test_official_param_counts():
    # published sizes of SAM: 93.7M, 312.3M, 641.1M parameters
    counts = {
        n: sum(v.numel() for v in meta_state_dict(CONFIGS[n]).values()) / 1e6
        for n in ("vit_b", "vit_l", "vit_h")
    }
    assert counts["vit_b"] == pytest.approx(93.7, abs=0.1)
    assert counts["vit_l"] == pytest.approx(312.3, abs=0.1)
    assert counts["vit_h"] == pytest.approx(641.1, abs=0.1)


def test_config_round_trip_custom_and_dict(tiny_config):
    cfg = tiny_config.replace(
        decoder_depth=3, decoder_mlp_dim=128, iou_head_depth=2, iou_head_hidden_dim=64
    )
    inferred = config_from_state_dict(meta_state_dict(cfg))
    assert inferred.architecture() == cfg.architecture()
    assert inferred.name is None
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert SamConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown SamConfig fields"):
        SamConfig.from_dict({**d, "bogus": 1})


def test_cnn_config_round_trip():
    cfg = CONFIGS["cnn"].replace(
        img_size=320, cnn_widths=(16, 32, 64, 96), cnn_depths=(0, 1, 3, 1), cnn_fpn_dim=64
    )
    # img_size is stored in the buffer image_encoder.input_size: needs real tensors
    inferred = config_from_state_dict(build_sam(cfg).state_dict())
    assert inferred.architecture() == cfg.architecture()
    assert inferred.embedding_size == 40

