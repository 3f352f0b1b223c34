"""Our TinyViT encoder (``vit_t``): MobileSAM's checkpoints, config from shapes, equivalence.

The reference is MobileSAM's own code as packaged on PyPI by ``mobilesam-mirror`` (1.0.0, the
files of ChaoningZhang/MobileSAM's ``mobile_sam`` package unchanged), used only here. Its
``tiny_vit_sam.py`` imports four helpers from ``timm`` that do nothing in an eval-mode forward
(``DropPath`` is never built with drop_path_rate=0, ``trunc_normal_`` only initialises,
``register_model`` only registers, ``to_2tuple`` makes a pair); when timm is not installed a
minimal stand-in for exactly those is put in ``sys.modules``. Its ``__init__`` imports its
predictor, which needs torchvision: ``_reference.import_segment_anything`` provides that.

Where the reference is not installed, the hand-checked layer tests below still run.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from napari_sam.models import CONFIGS, SamConfig, build_sam, config_from_state_dict
from napari_sam.models.build import read_checkpoint, sam_from_state_dict
from napari_sam.models.tiny_vit import (
    ConvBN,
    ImageEncoderTinyViT,
    TinyViTAttention,
    attention_bias_index,
    tiny_vit_hyperparameters,
)

EMB_TOL = 1e-4
MASK_AGREEMENT = 0.999


# ----------------------------------------------------------------------------- reference


def _install_timm_standin() -> None:
    if "timm" in sys.modules or importlib.util.find_spec("timm") is not None:
        return

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return x

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    layers.trunc_normal_ = lambda t, std=1.0, **kw: torch.nn.init.trunc_normal_(t, std=std)
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    models = types.ModuleType("timm.models")
    models.layers, models.registry = layers, registry
    timm = types.ModuleType("timm")
    timm.models = models
    sys.modules.update({
        "timm": timm, "timm.models": models,
        "timm.models.layers": layers, "timm.models.registry": registry,
    })  # fmt: skip


def import_mobile_sam():
    """MobileSAM's package (``pip install --no-deps mobilesam-mirror==1.0.0``), or skip."""
    if importlib.util.find_spec("mobile_sam") is None:
        pytest.skip("MobileSAM reference not installed: pip install --no-deps mobilesam-mirror")
    from _reference import import_segment_anything

    import_segment_anything()  # torchvision (or its stand-in) for mobile_sam's predictor
    _install_timm_standin()
    import mobile_sam

    return mobile_sam


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial random weights, batch-norm statistics and attention-bias tables."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if (
            "norm" in name
            or name.endswith(("bn.weight", "neck.1.weight", "neck.3.weight"))
            or ("mask_downscaling" in name and name.endswith(("1.weight", "4.weight")))
            or "output_upscaling.1.weight" in name
        ):
            p.copy_(1.0 + 0.1 * noise)
        elif "attention_biases" in name:
            p.copy_(noise)  # large enough to change the attention
        elif p.dim() == 4 and p.shape[1] * p.shape[2] * p.shape[3] <= 27:
            p.copy_(0.2 * noise)  # stem and depthwise convolutions: small fan-in
        else:
            p.copy_(0.02 * noise)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=g))
        elif name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=g))


def random_image(seed: int = 0, hw: tuple[int, int] = (1024, 768)) -> torch.Tensor:
    """(1, 3, h, w) float 0..255: smooth structure plus noise."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=hw, mode="bilinear")
    return (255 * (0.7 * base + 0.3 * torch.rand(1, 3, *hw, generator=g))).round()


@pytest.fixture(scope="module")
def mobile_sam_pair(tmp_path_factory):
    """MobileSAM's ``vit_t`` with random weights, saved as a MobileSAM-format file, and ours
    loaded from that file; their embeddings of one image."""
    ms = import_mobile_sam()
    torch.manual_seed(0)
    ref = ms.sam_model_registry["vit_t"]()
    randomize_(ref)
    ref.eval()  # after the weights: MobileSAM caches its bias tables when switched to eval
    path = tmp_path_factory.mktemp("vit_t") / "mobile_sam.pt"
    torch.save(ref.state_dict(), path)
    sd, _ = read_checkpoint(path)
    ours = sam_from_state_dict(sd).eval()
    x = random_image()
    with torch.no_grad():
        ref_in = ref.preprocess(x[0])[None]
        our_in = ours.normalize_and_pad(x)
        emb_ref = ref.image_encoder(ref_in)
        emb_ours = ours.encode(our_in)
    return ref, ours, path, ref_in, our_in, emb_ref, emb_ours


@torch.no_grad()
def reference_decode(ref, emb, prompts, multimask):
    sparse, dense = ref.prompt_encoder(**prompts)
    return ref.mask_decoder(
        image_embeddings=emb,
        image_pe=ref.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


def prompt_sets():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(3, 2, 2, generator=g) * 700
    labels = torch.tensor([[1, 0], [1, 1], [0, 1]])
    xy0 = torch.rand(3, 2, generator=g) * 400
    boxes = torch.cat([xy0, xy0 + 100 + torch.rand(3, 2, generator=g) * 400], 1)
    return {
        "points": dict(points=(pts, labels), boxes=None, masks=None),
        "boxes": dict(points=None, boxes=boxes, masks=None),
        "points+box": dict(points=(pts[:, :1], labels[:, :1]), boxes=boxes, masks=None),
    }


# ----------------------------------------------------------------------------- vs MobileSAM


@pytest.mark.reference
@pytest.mark.slow
def test_mobile_sam_checkpoint_loads_with_its_config(mobile_sam_pair):
    ref, ours, path, *_ = mobile_sam_pair
    assert ours.config.encoder == "tiny_vit" and ours.config.name == "vit_t"
    assert ours.config.architecture() == CONFIGS["vit_t"].architecture()
    assert ours.embedding_size == 64 and ours.img_size == 1024
    # the same keys both ways: our state_dict is a MobileSAM checkpoint too
    assert set(ours.state_dict()) == set(ref.state_dict())


@pytest.mark.reference
@pytest.mark.slow
def test_embeddings_match_mobile_sam(mobile_sam_pair):
    _, _, _, ref_in, our_in, emb_ref, emb_ours = mobile_sam_pair
    assert torch.equal(ref_in, our_in)
    assert emb_ours.shape == emb_ref.shape == (1, 256, 64, 64)
    assert emb_ours.is_contiguous()
    err = (emb_ours - emb_ref).abs().max().item()
    assert err <= EMB_TOL, f"max |embedding error| {err}"
    assert emb_ref.std() > 0.1  # not a degenerate comparison


@pytest.mark.reference
@pytest.mark.slow
def test_masks_match_mobile_sam(mobile_sam_pair):
    ref, ours, _, _, _, emb_ref, emb_ours = mobile_sam_pair
    for kind, prompts in prompt_sets().items():
        for multimask in (True, False):
            ref_logits, ref_iou = reference_decode(ref, emb_ref, prompts, multimask)
            with torch.no_grad():
                logits, iou = ours.decode(emb_ours, multimask=multimask, **prompts)
            assert logits.shape == ref_logits.shape
            agree = ((logits > 0) == (ref_logits > 0)).float().mean().item()
            assert agree >= MASK_AGREEMENT, f"{kind} multimask={multimask}: {agree:.5f} agree"
            frac = (ref_logits > 0).float().mean().item()
            assert 0.001 < frac < 0.999, f"{kind}: degenerate reference mask ({frac})"
            assert (iou - ref_iou).abs().max().item() <= 1e-4


@pytest.mark.reference
@pytest.mark.slow
def test_load_model_reads_mobile_sam_and_micro_sam_files(mobile_sam_pair, tmp_path):
    """A MobileSAM file and a micro-sam training checkpoint ({"model_state": {"sam." ...}})
    of the same weights load by path through load_model, their config inferred."""
    from napari_sam.models.registry import load_model

    ref, _, path, _, our_in, _, emb_ours = mobile_sam_pair
    wrapped = tmp_path / "vit_t_finetuned.pt"
    torch.save({"model_state": {f"sam.{k}": v for k, v in ref.state_dict().items()},
                "optimizer_state": {}, "epoch": 3}, wrapped)  # fmt: skip
    for file in (path, wrapped):
        model = load_model(file)
        assert model.config.name == "vit_t", file
        assert model.model_id.startswith("file:")
        with torch.no_grad():
            assert torch.equal(model.encode(our_in), emb_ours)


@pytest.mark.reference
@pytest.mark.slow
def test_bf16_autocast_masks_close_to_fp32(mobile_sam_pair):
    _, ours, _, _, our_in, _, emb_ours = mobile_sam_pair
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        emb_low = ours.encode(our_in)
    box = torch.tensor([[300.0, 250.0, 700.0, 800.0]])
    with torch.no_grad():
        a = ours.decode(emb_ours, boxes=box)[0] > 0
        b = ours.decode(emb_low.float(), boxes=box)[0] > 0
    assert (a & b).sum() / (a | b).sum() >= 0.98


# ----------------------------------------------------------------------------- hand-checked


def test_attention_bias_index_numbers_offsets_like_mobile_sam():
    """MobileSAM numbers the offsets (|dy|, |dx|) in the order it meets them over all pairs
    of points of the window (itertools.product order); our closed form must agree."""
    for w in (1, 2, 7, 14):
        points = list(itertools.product(range(w), range(w)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                offsets.setdefault(off, len(offsets))
                idxs.append(offsets[off])
        expected = torch.tensor(idxs).view(w * w, w * w)
        assert len(offsets) == w * w
        assert torch.equal(attention_bias_index(w), expected)


def test_convbn_eval_folds_the_batch_norm():
    torch.manual_seed(0)
    m = ConvBN(8, 8, 3, 2, 1, groups=8)
    randomize_(m)
    m.eval()
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        expected = m.bn(m.c(x))  # the two modules, unfused (BN on running statistics)
        torch.testing.assert_close(m(x), expected, atol=1e-5, rtol=1e-5)
        cl = x.contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(m(cl), expected, atol=1e-5, rtol=1e-5)


def test_window_attention_by_hand():
    """One block's attention on a 3 x 3 grid with 2 x 2 windows (padded to 4 x 4): each
    window's output is softmax(q k^T / sqrt(hd) + bias) v, computed here by hand."""
    from napari_sam.models.tiny_vit import window_attention

    torch.manual_seed(0)
    attn = TinyViTAttention(dim=4, num_heads=2, window_size=2)
    randomize_(attn)
    x = torch.randn(1, 3, 3, 4)
    with torch.no_grad():
        out = window_attention(x, attn, 2)
        padded = F.pad(x, (0, 0, 0, 1, 0, 1))
        for wy, wx in itertools.product(range(2), range(2)):
            tokens = padded[0, 2 * wy : 2 * wy + 2, 2 * wx : 2 * wx + 2].reshape(4, 4)
            qkv = attn.qkv(attn.norm(tokens)).view(4, 2, 3, 2)  # per head: q, k, v
            heads = []
            for h in range(2):
                q, k, v = qkv[:, h, 0], qkv[:, h, 1], qkv[:, h, 2]
                bias = torch.stack([
                    torch.stack([attn.attention_biases[h, abs(a // 2 - b // 2) * 2
                                                       + abs(a % 2 - b % 2)]
                                 for b in range(4)]) for a in range(4)
                ])  # fmt: skip
                heads.append(torch.softmax(q @ k.T / 2**0.5 + bias, -1) @ v)
            expected = attn.proj(torch.cat(heads, 1)).view(2, 2, 4)
            got = F.pad(out, (0, 0, 0, 1, 0, 1))[0, 2 * wy : 2 * wy + 2, 2 * wx : 2 * wx + 2]
            ny, nx = min(2, 3 - 2 * wy), min(2, 3 - 2 * wx)
            torch.testing.assert_close(got[:ny, :nx], expected[:ny, :nx], atol=1e-5, rtol=1e-5)


SMALL = dict(
    tiny_embed_dims=(16, 24, 32, 48), tiny_depths=(1, 2, 1, 1), tiny_num_heads=(2, 2, 4, 3),
    tiny_window_sizes=(7, 4, 5, 3), encoder_mlp_ratio=2.0, tiny_mbconv_ratio=3.0,
    tiny_num_classes=0,
)  # fmt: skip


def test_config_is_inferred_from_a_tiny_vit_state_dict():
    cfg = SamConfig(encoder="tiny_vit", img_size=256, name=None, **SMALL)
    assert cfg.embedding_size == 16
    sam = build_sam(cfg)
    found = config_from_state_dict(sam.state_dict())
    assert found.encoder == "tiny_vit" and found.name is None
    assert found.replace(img_size=256).architecture() == cfg.architecture()
    assert "norm_head.weight" not in dict(sam.image_encoder.named_parameters())
    sd = {k: v for k, v in CONFIGS["vit_t"].to_dict().items()}
    assert sd["tiny_embed_dims"] == [64, 128, 160, 320]
    assert SamConfig.from_dict(sd) == CONFIGS["vit_t"]
    # the ViT configs keep their dicts and ids (no TinyViT fields)
    assert "tiny_depths" not in CONFIGS["vit_b"].to_dict()


def test_small_tiny_vit_forward_shapes_and_batch_independence():
    torch.manual_seed(0)
    enc = ImageEncoderTinyViT(img_size=256, embed_dims=(16, 24, 32, 48), depths=(1, 1, 1, 1),
                              num_heads=(1, 2, 2, 3), window_sizes=(7, 7, 5, 7),
                              num_classes=0).eval()  # fmt: skip
    randomize_(enc)
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        out = enc(x)
        assert out.shape == (2, 256, 16, 16) and out.is_contiguous()
        torch.testing.assert_close(enc(x[1:]), out[1:], atol=1e-5, rtol=1e-5)
    hp = tiny_vit_hyperparameters(enc.state_dict())
    assert hp["tiny_window_sizes"][1:] == (7, 5, 7) and hp["tiny_num_classes"] == 0


def test_vit_t_registry_entries():
    from napari_sam.models import registry as reg

    names = list(reg.REGISTRY)
    for name in ("vit_t", "vit_t_lm", "vit_t_em_organelles"):
        spec = reg.REGISTRY[name]
        assert spec.architecture == "vit_t" and spec.url.startswith("https://")
        assert spec.expected_hash and spec.xxh128
    mobile = reg.REGISTRY["vit_t"]
    assert mobile.filename == "mobile_sam.pt" and mobile.size == 40_728_226
    assert mobile.sha256 == "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
    assert names.index("vit_t") < names.index("vit_t_lm")
    listed = {m["name"]: m for m in reg.list_models()}
    assert listed["vit_t"]["size"] == 40_728_226 and listed["vit_t_lm"]["architecture"] == "vit_t"


def test_strips_and_in_place_ops_match_the_autograd_path(monkeypatch):
    """Inference (row strips, in-place GELU and adds) gives the outputs of the plain path that
    autograd takes, and gradients flow through that path."""
    from napari_sam.models import tiny_vit

    torch.manual_seed(0)
    enc = ImageEncoderTinyViT(img_size=256, embed_dims=(16, 24, 32, 48), depths=(2, 1, 1, 1),
                              num_heads=(1, 2, 2, 3), window_sizes=(7, 7, 5, 7),
                              num_classes=0).eval()  # fmt: skip
    randomize_(enc)
    monkeypatch.setattr(tiny_vit, "MBCONV_STRIP_ROWS", 5)  # 64 rows: 13 strips, last of 4
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        fast = enc(x)
    x.requires_grad_(True)
    slow = enc(x)
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=1e-5)
    slow.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_a_registered_vit_t_file_downloads_verifies_and_loads_by_name(tmp_path, monkeypatch):
    """The registry path of vit_t models: a MobileSAM-format file (random weights) fetched
    from a file:// URL, checked against its SHA-256, loaded by name with its config inferred."""
    import hashlib

    from napari_sam.models import registry as reg

    torch.manual_seed(0)
    src = tmp_path / "src" / "mobile_sam.pt"
    src.parent.mkdir()
    torch.save(build_sam("vit_t").state_dict(), src)
    spec = reg.ModelSpec(
        name="vit_t_test", architecture="vit_t", url=src.as_uri(),
        sha256=hashlib.sha256(src.read_bytes()).hexdigest(), size=src.stat().st_size,
        filename="vit_t_test.pt", description="test", source="tests",
    )  # fmt: skip
    monkeypatch.setitem(reg.REGISTRY, spec.name, spec)
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    model = reg.load_model("vit_t_test", progress=False)
    assert reg.verify("vit_t_test")
    assert model.config.name == "vit_t" and model.model_id == f"vit_t_test:{spec.sha256[:12]}"
    assert model.embedding_size == 64
