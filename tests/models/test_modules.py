"""Shapes, batching semantics, the CNN encoder and reduced precision."""

from __future__ import annotations

import pytest
import torch

from napari_sam.models import CONFIGS, ImageEncoderCNN, build_sam, config_from_state_dict


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


def test_cnn_encoder_shape_and_config():
    torch.manual_seed(0)
    sam = build_sam(CONFIGS["cnn"])
    enc = sam.image_encoder
    assert isinstance(enc, ImageEncoderCNN)
    n_params = sum(p.numel() for p in enc.parameters())
    assert 1e6 < n_params < 3.5e6
    assert sam.img_size == 256 and sam.embedding_size == 32
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        emb = sam.encode(x)
        assert emb.shape == (2, 256, 32, 32)
        # batch-size independent (no batch statistics)
        torch.testing.assert_close(sam.encode(x[:1]), emb[:1], atol=1e-5, rtol=1e-5)
        logits, iou = sam.decode(emb[:1], boxes=torch.tensor([[10.0, 20, 120, 200]]))
    assert logits.shape == (1, 3, 128, 128)
    cfg = config_from_state_dict(sam.state_dict())
    assert cfg.architecture() == sam.config.architecture()
    assert cfg.encoder == "cnn" and cfg.img_size == 256


def test_cnn_receptive_field():
    """A pixel change far from an output location still changes it (context >= 100 px)."""
    torch.manual_seed(0)
    enc = build_sam(CONFIGS["cnn"]).image_encoder.eval()
    x = torch.randn(1, 3, 256, 256)
    x2 = x.clone()
    x2[:, :, 200:210, 200:210] += 5.0
    with torch.no_grad():
        d = (enc(x) - enc(x2)).abs().sum(1)[0]  # (32, 32)
    # output cell (2, 2) is ~100 px away from the perturbation at (205, 205)
    assert d[2, 2] > 0


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
