"""Numerical equivalence with Meta's segment-anything on identical random weights.

The weights are saved with Meta's keys to a .pth file and read back through our
``read_checkpoint`` + ``sam_from_state_dict`` (i.e. "saved in the official format").
"""

from __future__ import annotations

from functools import partial

import pytest
import torch

from _reference import import_segment_anything
from napari_sam.models import CONFIGS, SamConfig, read_checkpoint, sam_from_state_dict

pytestmark = pytest.mark.reference

EMB_TOL = 1e-4
IOU_TOL = 1e-4


def build_meta_sam(cfg: SamConfig):
    """Meta's model with our config (same construction as ``segment_anything.build_sam``)."""
    sa = import_segment_anything()
    m = sa.modeling
    e = cfg.img_size // cfg.patch_size
    return m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=cfg.encoder_depth,
            embed_dim=cfg.encoder_embed_dim,
            img_size=cfg.img_size,
            mlp_ratio=cfg.encoder_mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=cfg.encoder_num_heads,
            patch_size=cfg.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=cfg.encoder_global_attn_indexes,
            window_size=cfg.window_size,
            out_chans=cfg.prompt_embed_dim,
        ),
        prompt_encoder=m.PromptEncoder(
            embed_dim=cfg.prompt_embed_dim,
            image_embedding_size=(e, e),
            input_image_size=(cfg.img_size, cfg.img_size),
            mask_in_chans=cfg.mask_in_chans,
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=cfg.num_multimask_outputs,
            transformer=m.TwoWayTransformer(
                depth=cfg.decoder_depth,
                embedding_dim=cfg.prompt_embed_dim,
                mlp_dim=cfg.decoder_mlp_dim,
                num_heads=cfg.decoder_num_heads,
            ),
            transformer_dim=cfg.prompt_embed_dim,
            iou_head_depth=cfg.iou_head_depth,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
    ).eval()


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter non-trivial random values (Meta zero-inits rel_pos and biases)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if (
            "norm" in name
            or name.endswith(("neck.1.weight", "neck.3.weight"))
            or ("mask_downscaling" in name and name.endswith(("1.weight", "4.weight")))
            or ("output_upscaling.1.weight" in name)
        ):
            p.copy_(1.0 + 0.1 * noise)  # norm scales around 1
        elif "rel_pos" in name:
            p.copy_(0.3 * noise)  # large enough to change the attention
        else:
            p.copy_(0.02 * noise)


def meta_and_ours(cfg: SamConfig, tmp_path, seed: int = 0):
    torch.manual_seed(seed)
    meta = build_meta_sam(cfg)
    randomize_(meta, seed)
    path = tmp_path / f"{cfg.name or 'model'}.pth"
    torch.save(meta.state_dict(), path)
    sd, _ = read_checkpoint(path)
    ours = sam_from_state_dict(sd).eval()
    assert ours.config.architecture() == cfg.architecture()
    return meta, ours


def random_image(size: int, seed: int = 0, hw: tuple[int, int] | None = None) -> torch.Tensor:
    """(1, 3, h, w) float 0..255 with smooth structure + noise; h, w < size (padding used)."""
    g = torch.Generator().manual_seed(seed)
    h, w = hw or (size, int(size * 0.75))
    base = torch.nn.functional.interpolate(
        torch.rand(1, 3, 8, 8, generator=g), size=(h, w), mode="bilinear", align_corners=False
    )
    return (255 * (0.7 * base + 0.3 * torch.rand(1, 3, h, w, generator=g))).round()


def prompt_sets(size: int, emb_size: int):
    g = torch.Generator().manual_seed(1)
    n = 3
    pts = torch.rand(n, 2, 2, generator=g) * size * 0.7
    labels = torch.tensor([[1, 0], [1, 1], [0, 1]])
    xy0 = torch.rand(n, 2, generator=g) * size * 0.4
    boxes = torch.cat([xy0, xy0 + size * 0.1 + torch.rand(n, 2, generator=g) * size * 0.4], 1)
    masks = torch.randn(n, 1, 4 * emb_size, 4 * emb_size, generator=g) * 3
    return {
        "points": dict(points=(pts, labels), boxes=None, masks=None),
        "boxes": dict(points=None, boxes=boxes, masks=None),
        "points+box": dict(points=(pts[:, :1], labels[:, :1]), boxes=boxes, masks=None),
        "mask+point": dict(points=(pts[:, :1], labels[:, :1]), boxes=None, masks=masks),
        "mask": dict(points=None, boxes=None, masks=masks),
    }


@torch.no_grad()
def meta_decode(meta, emb, prompts, multimask):
    sparse, dense = meta.prompt_encoder(**prompts)
    return meta.mask_decoder(
        image_embeddings=emb,
        image_pe=meta.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


def assert_decoders_match(meta, ours, emb_meta, emb_ours, size, emb_size):
    for kind, prompts in prompt_sets(size, emb_size).items():
        for multimask in (True, False):
            ref_logits, ref_iou = meta_decode(meta, emb_meta, prompts, multimask)
            with torch.no_grad():
                logits, iou = ours.decode(emb_ours, multimask=multimask, **prompts)
            c = 3 if multimask else 1
            assert logits.shape == ref_logits.shape == (3, c, 4 * emb_size, 4 * emb_size), kind
            agree = ((logits > 0) == (ref_logits > 0)).float().mean().item()
            assert agree >= 0.999, f"{kind} multimask={multimask}: {agree:.5f} pixels agree"
            # the masks are not trivial (both signs occur)
            frac = (ref_logits > 0).float().mean().item()
            assert 0.001 < frac < 0.999, f"{kind}: degenerate reference mask ({frac})"
            err = (iou - ref_iou).abs().max().item()
            assert err <= IOU_TOL, f"{kind} multimask={multimask}: IoU error {err}"


@pytest.fixture(scope="module")
def vit_b_pair(tmp_path_factory):
    cfg = CONFIGS["vit_b"]
    meta, ours = meta_and_ours(cfg, tmp_path_factory.mktemp("vit_b"))
    x = random_image(cfg.img_size, hw=(1024, 800))
    with torch.no_grad():
        ref_in = meta.preprocess(x[0])[None]
        our_in = ours.normalize_and_pad(x)
        emb_meta = meta.image_encoder(ref_in)
        emb_ours = ours.encode(our_in)
    return meta, ours, ref_in, our_in, emb_meta, emb_ours


@pytest.mark.slow
def test_vit_b_full_size_embeddings(vit_b_pair):
    meta, ours, ref_in, our_in, emb_meta, emb_ours = vit_b_pair
    assert our_in.shape == (1, 3, 1024, 1024)
    assert torch.equal(ref_in, our_in)
    assert emb_ours.shape == (1, 256, 64, 64)
    err = (emb_ours - emb_meta).abs().max().item()
    assert err <= EMB_TOL, f"max |embedding error| {err}"
    assert emb_meta.std() > 0.1  # not a degenerate comparison


@pytest.mark.slow
def test_vit_b_full_size_decoder(vit_b_pair):
    meta, ours, _, _, emb_meta, emb_ours = vit_b_pair
    assert_decoders_match(meta, ours, emb_meta, emb_ours, 1024, 64)


@pytest.mark.parametrize("name,img_size", [("vit_l", 256), ("vit_h", 192), ("vit_b", 288)])
def test_reduced_depth_configs(name, img_size, tmp_path):
    full = CONFIGS[name]
    cfg = full.replace(
        encoder_depth=2, encoder_global_attn_indexes=(1,), img_size=img_size, name=None
    )
    meta, ours = meta_and_ours(cfg, tmp_path, seed=3)
    x = random_image(img_size, seed=2)
    with torch.no_grad():
        emb_meta = meta.image_encoder(meta.preprocess(x[0])[None])
        emb_ours = ours.encode(ours.normalize_and_pad(x))
    err = (emb_ours - emb_meta).abs().max().item()
    assert err <= EMB_TOL, f"{name}: max |embedding error| {err}"
    e = img_size // 16
    assert_decoders_match(meta, ours, emb_meta, emb_ours, img_size, e)


def test_batched_embeddings_match_meta_per_prompt(tmp_path):
    """(N, 256, E, E) embeddings: prompt i uses embedding i (Meta, one call per prompt)."""
    cfg = SamConfig(
        img_size=128, encoder_embed_dim=64, encoder_depth=1, encoder_num_heads=2,
        encoder_global_attn_indexes=(0,), name=None,
    )  # fmt: skip
    meta, ours = meta_and_ours(cfg, tmp_path, seed=5)
    emb = torch.randn(3, 256, 8, 8)
    boxes = torch.tensor([[5.0, 5, 60, 70], [20, 30, 100, 90], [0, 0, 127, 127]])
    with torch.no_grad():
        logits, iou = ours.decode(emb, boxes=boxes)
        for i in range(3):
            ref_logits, ref_iou = meta_decode(
                meta, emb[i : i + 1], dict(points=None, boxes=boxes[i : i + 1], masks=None), True
            )
            torch.testing.assert_close(logits[i : i + 1], ref_logits, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(iou[i : i + 1], ref_iou, atol=1e-4, rtol=1e-4)


def test_reference_helpers():
    """The torchvision stand-in (if used) behaves like torchvision on simple cases."""
    import numpy as np

    sa = import_segment_anything()
    from _reference import batched_nms_reference

    boxes = torch.tensor(
        [[0.0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 9, 10]]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95])
    cats = torch.tensor([0, 0, 1, 0, 0])
    # box 4 (0.95) suppresses 0 (IoU 0.9) and 1 (IoU 0.81 > 0.5); other category keeps 2
    assert batched_nms_reference(boxes, scores, cats, 0.5).tolist() == [4, 2, 3]
    assert batched_nms_reference(boxes, scores, cats, 0.95).tolist() == [4, 0, 1, 2, 3]
    img = (np.arange(40 * 60 * 3) % 251).astype(np.uint8).reshape(40, 60, 3)
    out = sa.utils.transforms.ResizeLongestSide(120).apply_image(img)
    assert out.shape == (80, 120, 3) and out.dtype == np.uint8
