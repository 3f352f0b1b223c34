"""Reading checkpoint files: wrappers, prefixes, metadata files, unreadable files
(models/checkpoint.py)."""

from __future__ import annotations

import json

import pytest
import torch

from napari_sam.models import load_checkpoint, read_checkpoint, sam_from_state_dict


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


def test_read_checkpoint_metadata_file(tiny_sam, tmp_path):
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

