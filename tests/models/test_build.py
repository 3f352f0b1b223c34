"""Configs, shape-based config inference and checkpoint reading."""

from __future__ import annotations

import json

import pytest
import torch

from napari_sam.models import (
    CONFIGS,
    SamConfig,
    build_sam,
    config_from_state_dict,
    load_checkpoint,
    read_checkpoint,
    sam_from_state_dict,
)


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


def test_model_properties(tiny_sam, tiny_config):
    assert tiny_sam.img_size == 256
    assert tiny_sam.embedding_size == 16
    assert tiny_sam.mask_threshold == 0.0
    assert tiny_sam.config == tiny_config
    assert tiny_sam.model_id == "tiny_vit"
    tiny_sam.model_id = "my-weights"
    assert tiny_sam.model_id == "my-weights"
    assert not tiny_sam.is_demo
    assert build_sam(CONFIGS["cnn"]).is_demo
    assert build_sam(tiny_config.replace(name=None)).model_id.startswith("vit-")
    # pixel statistics are not part of the state_dict (as in Meta's model)
    assert "pixel_mean" not in tiny_sam.state_dict()
    assert tiny_sam.pixel_mean.shape == (3, 1, 1)


def test_normalize_and_pad(tiny_sam):
    x = torch.full((2, 3, 100, 256), 255.0)
    y = tiny_sam.normalize_and_pad(x)
    assert y.shape == (2, 3, 256, 256)
    assert torch.all(y[:, :, 100:] == 0)
    expected = (255 - torch.tensor([123.675, 116.28, 103.53])) / torch.tensor(
        [58.395, 57.12, 57.375]
    )
    torch.testing.assert_close(y[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match="larger than the model input"):
        tiny_sam.normalize_and_pad(torch.zeros(1, 3, 300, 10))


def save(obj, path):
    torch.save(obj, path)
    return path


def test_read_checkpoint_wrappers(tiny_sam, tmp_path):
    sd = tiny_sam.state_dict()
    micro_sam = {
        "model_state": {f"sam.{k}": v for k, v in sd.items()},
        "optimizer_state": {"state": {}, "param_groups": []},
        "epoch": 7,
        "model_name": "tiny",
    }
    lightning = {"state_dict": {f"model.module.{k}": v for k, v in sd.items()}, "epoch": 3}
    for obj in (sd, micro_sam, lightning, {"model": sd}):
        got, meta = read_checkpoint(save(obj, tmp_path / "ckpt.pt"))
        assert got.keys() == sd.keys()
        assert all(torch.equal(got[k], sd[k]) for k in sd)
        model = sam_from_state_dict(got)
        assert model.config.architecture() == tiny_sam.config.architecture()
    _, meta = read_checkpoint(save(micro_sam, tmp_path / "ms.pt"))
    assert meta["epoch"] == 7 and meta["model_name"] == "tiny"
    assert "optimizer_state" not in meta


def test_read_checkpoint_sidecar(tiny_sam, tmp_path):
    path = save(tiny_sam.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "weights.json").write_text(
        json.dumps({"config": tiny_sam.config.to_dict(), "model_id": "tiny-v1"})
    )
    _, meta = read_checkpoint(path)
    assert meta["config"] == tiny_sam.config
    model = load_checkpoint(path)
    assert model.model_id == "tiny-v1"
    x = torch.rand(1, 3, 256, 256) * 255
    with torch.no_grad():
        torch.testing.assert_close(
            model.encode(model.normalize_and_pad(x)), tiny_sam.encode(tiny_sam.normalize_and_pad(x))
        )


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


def test_truncated_and_missing_files(tiny_sam, tmp_path):
    path = save(tiny_sam.state_dict(), tmp_path / "good.pt")
    data = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.pt"):
        read_checkpoint(bad)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt"):
        read_checkpoint(text)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        read_checkpoint(tmp_path / "nowhere.pth")
