"""The image encoders: the ViT's relative-position attention (chunked, GEMM path, cached
index, the unchunked export path) and the demo CNN (models/image_encoder.py)."""

from __future__ import annotations

import pytest
import torch

from napari_sam.models import CONFIGS, ImageEncoderCNN, build_sam, config_from_state_dict


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


def _prompts(n: int, size: int):
    g = torch.Generator().manual_seed(0)
    xy0 = torch.rand(n, 2, generator=g) * size * 0.5
    boxes = torch.cat([xy0, xy0 + size * 0.3], 1)
    pts = (xy0 + size * 0.15)[:, None, :]
    return boxes, (pts, torch.ones(n, 1, dtype=torch.int64))


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


@pytest.mark.parametrize("gemm", [True, False])
def test_rel_pos_attention_matches_reference(gemm, monkeypatch):
    """Chunked attention (GEMM path on CPU in bf16, SDPA otherwise) == the plain formula."""
    from napari_sam.models import image_encoder as ie

    monkeypatch.setattr(ie, "CPU_GEMM_ATTENTION", gemm)
    monkeypatch.setattr(ie, "_GEMM_CHUNK_BYTES", 1 << 18)  # force several chunks
    monkeypatch.setattr(ie, "MAX_BIAS_BYTES", 1 << 18)
    g = torch.Generator().manual_seed(0)
    b, nh, h, w, hd = 2, 2, 32, 32, 16
    q, k, v = (torch.randn(b, nh, h * w, hd, generator=g) for _ in range(3))
    rel_h = torch.randn(b * nh, h, w, h, generator=g)
    rel_w = torch.randn(b * nh, h, w, w, generator=g)
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, nh, h * w, h * w)
    logits = q @ k.transpose(-1, -2) / hd**0.5 + bias
    ref = logits.softmax(-1) @ v
    out32 = ie.rel_pos_attention(q, k, v, rel_h, rel_w)
    torch.testing.assert_close(out32, ref, atol=1e-5, rtol=1e-5)
    bf = [t.bfloat16() for t in (q, k, v, rel_h, rel_w)]
    out16 = ie.rel_pos_attention(*bf)
    assert out16.dtype == torch.bfloat16
    assert (out16.float() - ref).abs().max() < 0.1
    assert (out16.float() - ref).abs().mean() < 0.01


def test_autocast_global_attention_gemm_path():
    """bf16 on a 512 px ViT: the 1024-token global block takes the CPU GEMM path."""
    from napari_sam.models import SamConfig

    cfg = SamConfig(
        img_size=512, encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2,
        encoder_global_attn_indexes=(1,), window_size=8, decoder_depth=1, decoder_mlp_dim=128,
    )  # fmt: skip
    torch.manual_seed(2)
    sam = build_sam(cfg)
    with torch.no_grad():
        for name, p in sam.image_encoder.named_parameters():
            if "rel_pos" in name:
                p.normal_(0, 0.3)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=512, mode="bilinear")
    x = sam.normalize_and_pad(img * 255)
    boxes, points = _prompts(6, 512)
    with torch.inference_mode():
        ref, _ = sam.decode(sam.encode(x), boxes=boxes, points=points)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = sam.decode(sam.encode(x), boxes=boxes, points=points)
        sam16 = build_sam(cfg)
        sam16.load_state_dict(sam.state_dict())
        sam16.image_encoder.to(torch.bfloat16)
        emb16 = sam16.encode(x)  # input cast to the encoder dtype
        assert emb16.dtype == torch.bfloat16
        low2, _ = sam16.decode(emb16, boxes=boxes, points=points)
    for other in (low, low2):
        a, b = ref > 0, other.float() > 0
        assert (a & b).sum() / (a | b).sum() >= 0.98


def test_unchunked_attention_gives_the_same_embedding_and_is_restored(tiny_sam, monkeypatch):
    """The export path (one chunk, no chunk-size arithmetic) computes what the chunked one
    does, and only while its context is open; no module global is changed."""
    from napari_sam.models import image_encoder as ie

    monkeypatch.setattr(ie, "MAX_BIAS_BYTES", 1 << 12)  # the global block in several chunks
    encoder = tiny_sam.image_encoder
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        chunked = encoder(x)
        with ie.unchunked_attention(encoder):
            assert not any(block.attn.chunked for block in encoder.blocks)
            whole = encoder(x)
    assert all(block.attn.chunked for block in encoder.blocks)
    assert ie.MAX_BIAS_BYTES == 1 << 12
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-5)

