"""The assembled model: properties, padding, decode shapes, batching semantics and reduced
precision (models/sam.py)."""

from __future__ import annotations

import pytest
import torch

from napari_sam.models import CONFIGS, build_sam


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


def _prompts(n: int, size: int):
    g = torch.Generator().manual_seed(0)
    xy0 = torch.rand(n, 2, generator=g) * size * 0.5
    boxes = torch.cat([xy0, xy0 + size * 0.3], 1)
    pts = (xy0 + size * 0.15)[:, None, :]
    return boxes, (pts, torch.ones(n, 1, dtype=torch.int64))


def test_decode_shapes(tiny_sam):
    emb = torch.randn(1, 256, 16, 16)
    boxes, points = _prompts(5, 256)
    with torch.no_grad():
        logits, iou = tiny_sam.decode(emb, boxes=boxes)
        assert logits.shape == (5, 3, 64, 64) and iou.shape == (5, 3)
        logits, iou = tiny_sam.decode(emb, points=points, multimask=False)
        assert logits.shape == (5, 1, 64, 64) and iou.shape == (5, 1)
        logits, iou = tiny_sam.decode(emb, masks=torch.randn(2, 1, 64, 64))
        assert logits.shape == (2, 3, 64, 64)
        with pytest.raises(ValueError, match="embeddings for 5 prompts"):
            tiny_sam.decode(torch.randn(2, 256, 16, 16), boxes=boxes)


def test_shared_embedding_equals_repeated(tiny_sam):
    """A (1, ...) embedding broadcast over N prompts == the same embedding repeated N times,
    and == decoding the prompts one at a time."""
    emb = torch.randn(1, 256, 16, 16)
    boxes, points = _prompts(4, 256)
    with torch.no_grad():
        a, ia = tiny_sam.decode(emb, points=points, boxes=boxes)
        b, ib = tiny_sam.decode(emb.expand(4, -1, -1, -1).clone(), points=points, boxes=boxes)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ia, ib, atol=1e-5, rtol=1e-5)
        for i in range(4):
            c, ic = tiny_sam.decode(
                emb, points=(points[0][i : i + 1], points[1][i : i + 1]), boxes=boxes[i : i + 1]
            )
            torch.testing.assert_close(a[i : i + 1], c, atol=1e-5, rtol=1e-5)


def test_encode_batch_independent(tiny_sam):
    x = torch.randn(3, 3, 256, 256)
    with torch.no_grad():
        batched = tiny_sam.encode(x)
        single = tiny_sam.encode(x[1:2])
    assert batched.shape == (3, 256, 16, 16)
    torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_autocast_cpu_masks_close(tiny_sam, dtype):
    torch.manual_seed(1)
    sam = tiny_sam
    with torch.no_grad():
        for p in sam.image_encoder.parameters():  # non-trivial rel-pos bias
            if p.dim() == 2 and p.shape[1] == 32:
                p.normal_(0, 0.3)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=256, mode="bilinear")
    x = sam.normalize_and_pad(img * 255)
    boxes, points = _prompts(6, 256)
    with torch.inference_mode():
        emb32 = sam.encode(x)
        ref, _ = sam.decode(emb32, boxes=boxes, points=points)
        with torch.autocast("cpu", dtype=dtype):
            emb16 = sam.encode(x)
            low, iou = sam.decode(emb16, boxes=boxes, points=points)
    a, b = ref > 0, low.float() > 0
    inter = (a & b).sum().item()
    union = (a | b).sum().item()
    assert union > 0
    assert inter / union >= 0.98
    assert torch.isfinite(iou).all()

