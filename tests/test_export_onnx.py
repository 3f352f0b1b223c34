"""ONNX export (#27): our decoder in onnxruntime equals our PyTorch decoder and Meta's own
``SamOnnxModel`` export of the same weights; the encoder export equals the PyTorch encoder;
bad inputs leave no files.

Identical random weights: our model is built from a config (reduced-depth ViT-B, full-size
decoder with a 64 x 64 embedding) with every bias and norm perturbed, and its state_dict is
loaded unchanged into Meta's classes.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from _reference import import_segment_anything

onnx = pytest.importorskip("onnx", reason="pip install 'napari-sam-stacks[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="pip install 'napari-sam-stacks[onnx]'")

from napari_sam.export import (  # noqa: E402
    DECODER_FILE,
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_FILE,
    METADATA_FILE,
    export_onnx,
)
from napari_sam.models import SamConfig, build_sam  # noqa: E402

MASK_AGREEMENT = 0.999  # fraction of pixels on which the masks must agree
IOU_TOL = 1e-4
# (H, W): not square, so the padding crop matters. Meta's export, traced by PyTorch 2.x, keeps
# the crop of its dummy 1500 x 2250 image as a constant; this image has the same aspect ratio,
# so Meta's graph is right for it (ours is right for any size: see the dynamic-size test).
ORIG_SIZE = (300, 450)

# ViT-B with one block: the real decoder (256 channels, 64 x 64 embedding), a cheap encoder
VIT_B_SHORT = SamConfig(encoder_depth=1, encoder_global_attn_indexes=(0,), name="vit_b_short")
# ViT-B with two blocks (one windowed, one global) at 256 px, for the encoder export
VIT_B_ENCODER = SamConfig(
    img_size=256, encoder_depth=2, encoder_global_attn_indexes=(1,), name="vit_b_enc"
)


# ============================================================================ helpers


@torch.no_grad()
def _perturb_(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial values where PyTorch's initialisers give zeros or ones."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if "norm" in name and name.endswith("weight") or name.endswith(
            ("neck.1.weight", "neck.3.weight", "mask_downscaling.1.weight",
             "mask_downscaling.4.weight", "output_upscaling.1.weight")
        ):  # fmt: skip
            p.copy_(1.0 + 0.1 * noise)
        elif name.endswith("bias"):
            p.copy_(0.1 * noise)
        elif "rel_pos" in name:
            p.copy_(0.3 * noise)


def _ours(config: SamConfig, seed: int = 0):
    torch.manual_seed(seed)
    model = build_sam(config).eval()
    _perturb_(model, seed)
    return model


class _NoEncoder(torch.nn.Module):
    """Stands in for Meta's image encoder where only the decoder is compared."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size


def _meta_twin(ours, with_encoder: bool = False):
    """Meta's ``Sam`` holding exactly our weights (state_dict loaded strictly)."""
    m = import_segment_anything().modeling
    cfg = ours.config
    e = ours.embedding_size
    if with_encoder:
        encoder = m.ImageEncoderViT(
            depth=cfg.encoder_depth, embed_dim=cfg.encoder_embed_dim, img_size=cfg.img_size,
            mlp_ratio=cfg.encoder_mlp_ratio, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=cfg.encoder_num_heads, patch_size=cfg.patch_size, qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=cfg.encoder_global_attn_indexes,
            window_size=cfg.window_size, out_chans=cfg.prompt_embed_dim,
        )  # fmt: skip
    else:
        encoder = _NoEncoder(cfg.img_size)
    meta = m.Sam(
        image_encoder=encoder,
        prompt_encoder=m.PromptEncoder(
            embed_dim=cfg.prompt_embed_dim, image_embedding_size=(e, e),
            input_image_size=(cfg.img_size, cfg.img_size), mask_in_chans=cfg.mask_in_chans,
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=cfg.num_multimask_outputs,
            transformer=m.TwoWayTransformer(
                depth=cfg.decoder_depth, embedding_dim=cfg.prompt_embed_dim,
                mlp_dim=cfg.decoder_mlp_dim, num_heads=cfg.decoder_num_heads,
            ),
            transformer_dim=cfg.prompt_embed_dim, iou_head_depth=cfg.iou_head_depth,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        ),
    ).eval()  # fmt: skip
    sd = {
        k: v for k, v in ours.state_dict().items()
        if with_encoder or not k.startswith("image_encoder.")
    }  # fmt: skip
    meta.load_state_dict(sd, strict=True)
    return meta


def _export_meta(meta, path: Path, **options) -> Path:
    """Meta's decoder export, as its scripts/export_onnx_model.py does it."""
    from segment_anything.utils.onnx import SamOnnxModel

    wrapper = SamOnnxModel(meta, return_single_mask=False, **options)
    e = meta.prompt_encoder.image_embedding_size
    dummy = {
        "image_embeddings": torch.randn(1, meta.prompt_encoder.embed_dim, *e),
        "point_coords": torch.randint(0, 1024, (1, 5, 2)).float(),
        "point_labels": torch.randint(0, 4, (1, 5)).float(),
        "mask_input": torch.randn(1, 1, 4 * e[0], 4 * e[1]),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }
    outputs = list(DECODER_OUTPUTS)
    if options.get("return_extra_metrics"):
        outputs = ["masks", "iou_predictions", "stability_scores", "areas", "low_res_masks"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, tuple(dummy.values()), str(path), dynamo=False, export_params=True,
            opset_version=17, do_constant_folding=True, input_names=list(dummy),
            output_names=outputs,
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
        )  # fmt: skip
    return path


def _session(path: Path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _feed(emb, coords, labels, mask=None, size=ORIG_SIZE):
    e4 = emb.shape[-1] * 4
    return {
        "image_embeddings": np.asarray(emb, np.float32),
        "point_coords": np.asarray(coords, np.float32).reshape(1, -1, 2),
        "point_labels": np.asarray(labels, np.float32).reshape(1, -1),
        "mask_input": (np.zeros((1, 1, e4, e4), np.float32) if mask is None
                       else np.asarray(mask, np.float32).reshape(1, 1, e4, e4)),
        "has_mask_input": np.array([0.0 if mask is None else 1.0], np.float32),
        "orig_im_size": np.array(size, np.float32),
    }  # fmt: skip


def _upsample(model, logits: torch.Tensor, size=ORIG_SIZE) -> torch.Tensor:
    """What Predictor.upsample does (bilinear to S, crop, bilinear to H x W), as logits."""
    import torch.nn.functional as F

    s = model.img_size
    scale = s / max(size)
    h, w = int(size[0] * scale + 0.5), int(size[1] * scale + 0.5)
    x = F.interpolate(logits, (s, s), mode="bilinear", align_corners=False)[..., :h, :w]
    return F.interpolate(x, size, mode="bilinear", align_corners=False)


def _agreement(a, b) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return float((a == b).mean())


# Prompts in the model-input frame (x, y): (name, ONNX coords, ONNX labels, PyTorch decode kwargs)
def _prompt_cases(model, seed: int = 1):
    s = model.img_size
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0.1 * s, 0.6 * s, (3, 2)).astype(np.float32)
    lab = np.array([1, 1, 0], np.float32)
    box = np.array([0.2 * s, 0.15 * s, 0.55 * s, 0.5 * s], np.float32)
    corners = box.reshape(2, 2)
    t = torch.as_tensor
    return [
        ("one point", np.r_[pts[:1], [[0, 0]]], [1, -1],
         dict(points=(t(pts[None, :1]), t([[1]])))),
        ("points", np.r_[pts, [[0, 0]]], [*lab, -1],
         dict(points=(t(pts[None]), t(lab[None]).long()))),
        ("box", corners, [2, 3], dict(boxes=t(box[None]))),
        ("points + box", np.r_[pts[:2], corners], [1, 0, 2, 3],
         dict(points=(t(pts[None, :2]), t([[1, 0]])), boxes=t(box[None]))),
    ]  # fmt: skip


# ============================================================================ fixtures


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """Reduced-depth ViT-B, its decoder exported by us and by Meta's SamOnnxModel."""
    root = tmp_path_factory.mktemp("onnx_vit")
    model = _ours(VIT_B_SHORT)
    result = export_onnx(model, root / "ours", encoder=False)
    meta_path = _export_meta(_meta_twin(model), root / "meta.onnx")
    return model, _session(result.decoder), _session(meta_path), result


@pytest.fixture(scope="module")
def embedding(vit):
    g = torch.Generator().manual_seed(3)
    return torch.randn(1, 256, vit[0].embedding_size, vit[0].embedding_size, generator=g)


# ============================================================================ decoder


def test_export_writes_checked_decoder_with_metas_interface(vit):
    model, sess, _, result = vit
    assert result.encoder is None and not (result.folder / ENCODER_FILE).exists()
    assert sorted(p.name for p in result.folder.iterdir()) == [DECODER_FILE, METADATA_FILE]
    proto = onnx.load(str(result.decoder))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in sess.get_inputs()] == list(DECODER_INPUTS)
    assert [o.name for o in sess.get_outputs()] == list(DECODER_OUTPUTS)
    shapes = {i.name: i.shape for i in sess.get_inputs()}
    e = model.embedding_size
    assert shapes["image_embeddings"] == [1, 256, e, e]
    assert shapes["point_coords"][0] == 1 and isinstance(shapes["point_coords"][1], str)
    assert shapes["point_coords"][2] == 2
    assert shapes["mask_input"] == [1, 1, 4 * e, 4 * e]
    assert shapes["has_mask_input"] == [1] and shapes["orig_im_size"] == [2]
    meta = json.loads(result.metadata.read_text())
    assert meta["model_id"] == model.model_id
    assert meta["input_size"] == 1024 and meta["embedding_size"] == e
    assert meta["pixel_mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert meta["pixel_std"] == pytest.approx([58.395, 57.12, 57.375])
    assert meta["preprocessing"]["contrast"]["percentiles"] == [0.5, 99.5]
    assert meta["preprocessing"]["smoothing"] == {"sigma": 0.0, "description": "none"}
    assert meta["files"] == {"decoder": DECODER_FILE}


@pytest.mark.parametrize("case", range(4), ids=["one point", "points", "box", "points+box"])
def test_onnx_decoder_equals_pytorch_and_meta(vit, embedding, case):
    model, ours, meta, _ = vit
    name, coords, labels, kwargs = _prompt_cases(model)[case]
    feed = _feed(embedding.numpy(), coords, labels)
    masks, iou, low = ours.run(None, feed)
    n = model.low_res_size if hasattr(model, "low_res_size") else 4 * model.embedding_size
    assert masks.shape == (1, 4, *ORIG_SIZE) and iou.shape == (1, 4) and low.shape == (1, 4, n, n)
    with torch.no_grad():
        lo3, iou3 = model.decode(embedding, multimask=True, **kwargs)
        lo1, iou1 = model.decode(embedding, multimask=False, **kwargs)
    want_low = torch.cat([lo1, lo3], 1)
    want_iou = torch.cat([iou1, iou3], 1).numpy()
    np.testing.assert_allclose(iou, want_iou, atol=IOU_TOL, rtol=0)
    np.testing.assert_allclose(low, want_low.numpy(), atol=1e-3, rtol=0)
    assert _agreement(masks, _upsample(model, want_low)) >= MASK_AGREEMENT
    # Meta's own export of the same weights, in onnxruntime
    m_masks, m_iou, m_low = meta.run(None, feed)
    np.testing.assert_allclose(iou, m_iou, atol=IOU_TOL, rtol=0)
    np.testing.assert_allclose(low, m_low, atol=1e-3, rtol=0)
    assert _agreement(masks, m_masks) >= MASK_AGREEMENT
    assert 0.02 < (masks > 0).mean() < 0.98  # the masks compared are not trivially empty


def test_onnx_decoder_mask_prompt(vit, embedding):
    """A previous low-resolution mask refines the next click (has_mask_input = 1)."""
    model, ours, meta, _ = vit
    name, coords, labels, kwargs = _prompt_cases(model)[0]
    _, _, low = ours.run(None, _feed(embedding.numpy(), coords, labels))
    previous = low[0, 2]
    feed = _feed(embedding.numpy(), coords, labels, mask=previous)
    masks, iou, low2 = ours.run(None, feed)
    with torch.no_grad():
        lo3, iou3 = model.decode(
            embedding, masks=torch.as_tensor(previous)[None, None], multimask=True, **kwargs
        )
    np.testing.assert_allclose(iou[:, 1:], iou3.numpy(), atol=IOU_TOL, rtol=0)
    assert _agreement(masks[:, 1:], _upsample(model, lo3)) >= MASK_AGREEMENT
    m_masks, m_iou, _ = meta.run(None, feed)
    np.testing.assert_allclose(iou, m_iou, atol=IOU_TOL, rtol=0)
    assert _agreement(masks, m_masks) >= MASK_AGREEMENT
    # the mask prompt changed the answer (has_mask_input is honoured)
    assert np.abs(low2 - low).max() > 1e-2


def test_onnx_decoder_any_image_size_and_point_count(vit, embedding):
    """N and orig_im_size are dynamic: the same session decodes 1..6 points on any image,
    and the padding crop follows the image (Meta's export under PyTorch 2.x does not)."""
    model, ours, meta, _ = vit
    rng = np.random.default_rng(5)
    for n, size in [(1, (64, 64)), (2, (1024, 700)), (6, (37, 1500)), (3, (300, 451))]:
        xy = rng.uniform(0, 500, (n, 2)).astype(np.float32)
        lab = rng.integers(0, 2, n)
        feed = _feed(embedding.numpy(), np.r_[xy, [[0, 0]]], [*lab, -1], size=size)
        masks, iou, low = ours.run(None, feed)
        assert masks.shape == (1, 4, *size)
        with torch.no_grad():
            lo3, iou3 = model.decode(
                embedding, points=(torch.as_tensor(xy[None]), torch.as_tensor(lab[None]))
            )
        np.testing.assert_allclose(iou[:, 1:], iou3.numpy(), atol=IOU_TOL, rtol=0)
        assert _agreement(masks[:, 1:], _upsample(model, lo3, size)) >= MASK_AGREEMENT
        _, m_iou, m_low = meta.run(None, feed)
        np.testing.assert_allclose(iou, m_iou, atol=IOU_TOL, rtol=0)
        np.testing.assert_allclose(low, m_low, atol=1e-3, rtol=0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import napari_sam as ns

    return ns.load_model("demo")


@pytest.fixture(scope="module")
def demo_plain(demo, tmp_path_factory):
    """The demo model's decoder exported with the default options."""
    return export_onnx(demo, tmp_path_factory.mktemp("demo_plain") / "plain", encoder=False)


def test_demo_decoder_with_metas_options_equals_meta(demo, demo_plain, tmp_path):
    """The demo model's decoder, exported with Meta's options (single mask, stability score,
    extra metrics), equals Meta's SamOnnxModel export with the same options."""
    options = dict(use_stability_score=True, return_extra_metrics=True)
    result = export_onnx(demo, tmp_path / "demo", encoder=False, return_single_mask=True,
                         **options)  # fmt: skip
    from segment_anything.utils import onnx as meta_onnx

    meta = _meta_twin(demo)
    meta_path = tmp_path / "meta.onnx"
    original = meta_onnx.SamOnnxModel.__init__

    def single(self, model, return_single_mask, **kw):  # Meta's script's --return-single-mask
        original(self, model, return_single_mask=True, **kw)

    meta_onnx.SamOnnxModel.__init__ = single
    try:
        _export_meta(meta, meta_path, **options)
    finally:
        meta_onnx.SamOnnxModel.__init__ = original
    ours, theirs = _session(result.decoder), _session(meta_path)
    names = [o.name for o in ours.get_outputs()]
    assert names == ["masks", "iou_predictions", "stability_scores", "areas", "low_res_masks"]
    g = torch.Generator().manual_seed(7)
    emb = torch.randn(1, 256, demo.embedding_size, demo.embedding_size, generator=g).numpy()
    for case in _prompt_cases(demo, seed=2):
        feed = _feed(emb, case[1], case[2], size=(200, 300))
        got, want = ours.run(None, feed), theirs.run(None, feed)
        assert got[0].shape == (1, 1, 200, 300)
        np.testing.assert_allclose(got[1], want[1], atol=IOU_TOL, rtol=0)  # stability score
        assert _agreement(got[0], want[0]) >= MASK_AGREEMENT
        np.testing.assert_allclose(got[2], want[2], atol=2e-3)
        assert abs(int(got[3][0, 0]) - int(want[3][0, 0])) <= 0.001 * 200 * 300
    # the demo model's input smoothing is in the preprocessing users must reproduce
    smooth = json.loads(demo_plain.metadata.read_text())["preprocessing"]["smoothing"]
    assert smooth["sigma"] == pytest.approx(0.7) and "smooth_before_enlarging" in smooth[
        "description"]
    # the demo decoder in plain mode equals its PyTorch decoder
    plain = _session(demo_plain.decoder)
    coords, labels, kwargs = _prompt_cases(demo)[1][1:]
    masks, iou, _ = plain.run(None, _feed(emb, coords, labels))
    with torch.no_grad():
        lo3, iou3 = demo.decode(torch.as_tensor(emb), multimask=True, **kwargs)
    np.testing.assert_allclose(iou[:, 1:], iou3.numpy(), atol=IOU_TOL, rtol=0)
    assert _agreement(masks[:, 1:], _upsample(demo, lo3)) >= MASK_AGREEMENT


# ============================================================================ encoder


def test_encoder_export_equals_pytorch_and_meta(tmp_path, monkeypatch):
    """Also with the global attention chunked in PyTorch, as full-size ViTs are (a chunked
    trace had wrong slice sizes in ONNX: Python floors, ONNX truncates)."""
    from napari_sam.models import image_encoder

    monkeypatch.setattr(image_encoder, "MAX_BIAS_BYTES", 200_000)  # 256 tokens: 4 chunks
    model = _ours(VIT_B_ENCODER, seed=4)
    result = export_onnx(model, tmp_path / "enc", decoder=False)
    assert image_encoder.MAX_BIAS_BYTES == 200_000  # restored
    assert result.decoder is None
    sess = _session(result.encoder)
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert sess.get_inputs()[0].shape == [1, 3, 256, 256]
    rng = np.random.default_rng(0)
    rgb = torch.as_tensor(rng.integers(0, 256, (1, 3, 200, 256)), dtype=torch.float32)
    x = model.normalize_and_pad(rgb)
    (got,) = sess.run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = model.encode(x).numpy()
        meta = _meta_twin(model, with_encoder=True).image_encoder(x).numpy()
    assert got.shape == (1, 256, 16, 16)
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 1e-4 * scale
    assert np.abs(got - meta).max() <= 1e-4 * scale
    meta_json = json.loads(result.metadata.read_text())
    assert meta_json["files"] == {"encoder": ENCODER_FILE}


# ============================================================================ CLI


@pytest.fixture(scope="module")
def cli_demo_export(tmp_path_factory):
    """``napari-sam export onnx demo -o DIR`` (DIR and its parent created): (DIR, stdout, stderr)."""
    import contextlib
    import io

    from napari_sam.cli import main

    out = tmp_path_factory.mktemp("cli") / "exports" / "demo"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["export", "onnx", "demo", "-o", str(out)])
    assert code == 0, stderr.getvalue()
    return out, stdout.getvalue(), stderr.getvalue()


def test_cli_export_demo_writes_all_three_files(cli_demo_export):
    out, printed_out, printed_err = cli_demo_export
    assert sorted(p.name for p in out.iterdir()) == [DECODER_FILE, ENCODER_FILE, METADATA_FILE]
    for name in (DECODER_FILE, ENCODER_FILE):
        onnx.checker.check_model(str(out / name))
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["model_id"].startswith("demo:") and meta["is_demo"] is True
    assert meta["input_size"] == 256
    assert str(out) in printed_out and "demo" in printed_err.lower()
    # the exported encoder + decoder segment the demo image like the PyTorch predictor
    import napari_sam as ns
    from napari_sam.preprocess import (
        ResizeSpec,
        images_to_tensor,
        smooth_before_enlarging,
        to_uint8_rgb,
    )
    from napari_sam.synthetic import nuclei_2d

    sample = nuclei_2d((200, 240), seed=0)
    image = sample.image
    pred = ns.Predictor("demo", device="cpu", precision="fp32")
    pred.set_image(image)
    rows, cols = np.nonzero(sample.labels == 1)
    point = np.array([np.median(rows), np.median(cols)])
    want, want_iou, _ = pred.predict(points=[point], labels=[1])
    spec = ResizeSpec.for_image(image.shape[:2], meta["input_size"])
    sigma = meta["preprocessing"]["smoothing"]["sigma"]  # as export.json says
    x = images_to_tensor(smooth_before_enlarging([to_uint8_rgb(image)], spec, sigma), spec, "cpu")
    mean = np.array(meta["pixel_mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.array(meta["pixel_std"], np.float32).reshape(1, 3, 1, 1)
    x = (x.numpy() - mean) / std
    s = meta["input_size"]
    x = np.pad(x, ((0, 0), (0, 0), (0, s - x.shape[2]), (0, s - x.shape[3])))
    (emb,) = _session(out / ENCODER_FILE).run(None, {"image": x.astype(np.float32)})
    xy = np.array([point[1], point[0]]) * s / max(image.shape[:2])
    masks, iou, _ = _session(out / DECODER_FILE).run(
        None, _feed(emb, [xy, [0, 0]], [1, -1], size=image.shape[:2])
    )
    np.testing.assert_allclose(iou[0, 1:], want_iou, atol=1e-3)
    assert _agreement(masks[0, 1:], want) >= MASK_AGREEMENT


def test_cli_export_json_says_how_thin_strips_are_padded(cli_demo_export):
    """A 40 x 600 px strip (17 x 256 px resized) is padded with its mirror image, not zeros:
    following export.json's words alone, with numpy, the ONNX files give the predictor's mask."""
    import napari_sam as ns
    from napari_sam.preprocess import ResizeSpec, resize_longest_side, to_uint8_rgb
    from napari_sam.synthetic import nuclei_2d

    out = cli_demo_export[0]
    meta = json.loads((out / METADATA_FILE).read_text())
    thin = meta["preprocessing"]["thin_strips"]
    assert thin["fraction"] == 0.25 and thin["numpy_pad_mode"] == "symmetric"
    sample = nuclei_2d((40, 600), seed=3)
    image = sample.image
    pred = ns.Predictor("demo", device="cpu", precision="fp32")
    pred.set_image(image, tiling=None)  # whole, as the exported encoder sees it
    ids, counts = np.unique(sample.labels[sample.labels > 0], return_counts=True)
    rows, cols = np.nonzero(sample.labels == ids[np.argmax(counts)])
    point = np.array([np.median(rows), np.median(cols)])
    want, want_iou, _ = pred.predict(points=[point], labels=[1])
    s = meta["input_size"]
    spec = ResizeSpec.for_image(image.shape[:2], s)
    assert min(spec.input_size) < thin["fraction"] * s  # a thin strip
    assert max(spec.scale_rc) < 1  # shrunk, so the demo model's input smoothing does not apply
    rgb = resize_longest_side(to_uint8_rgb(image), spec)
    h, w = rgb.shape[:2]
    rgb = np.pad(rgb, ((0, s - h), (0, s - w), (0, 0)), mode=thin["numpy_pad_mode"])
    mean = np.array(meta["pixel_mean"], np.float32)
    std = np.array(meta["pixel_std"], np.float32)
    x = ((rgb.astype(np.float32) - mean) / std).transpose(2, 0, 1)[None]
    (emb,) = _session(out / ENCODER_FILE).run(None, {"image": x.astype(np.float32)})
    xy = np.array([point[1], point[0]]) * s / max(image.shape[:2])
    masks, iou, _ = _session(out / DECODER_FILE).run(
        None, _feed(emb, [xy, [0, 0]], [1, -1], size=image.shape[:2])
    )
    feats = pred.set_image(image, tiling=None).features.numpy()
    np.testing.assert_allclose(emb[0], feats, atol=2e-3)  # zeros instead: off by > 0.1
    np.testing.assert_allclose(iou[0, 1:], want_iou, atol=1e-3)
    # the last decoder step, to the strip's 40 x 600 px, is Meta's two bilinear resizes in
    # ONNX and one in the predictor: on 17 rows of the input they differ at the mask's edge
    assert _agreement(masks[0, 1:], want) >= 0.95
    assert 0 < want[0].sum() < 0.5 * want[0].size  # one nucleus, not the strip


# ============================================================================ bad inputs


def _entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_unknown_model_names_the_known_ones_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="known models.*vit_b"):
        export_onnx("vit_bb", tmp_path / "out")
    assert _entries(tmp_path) == []


def test_cli_unknown_model_exit_2_one_line_no_files(tmp_path, capsys):
    from napari_sam.cli import main

    assert main(["export", "onnx", "no-such-model", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "known models" in err and "Traceback" not in err
    assert _entries(tmp_path) == []


def test_checkpoint_that_fails_to_load_writes_nothing(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises((ValueError, RuntimeError), match="broken.pt"):
        export_onnx(bad, tmp_path / "out")
    assert _entries(tmp_path) == ["broken.pt"]


def test_not_writable_folder_says_so_and_writes_nothing(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere but in read-only file systems
        target = Path("/sys/napari-sam-export-test")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "out"
    with pytest.raises(PermissionError, match="cannot write to .*choose a folder"):
        export_onnx("demo", target, encoder=False)
    assert not target.exists()


def test_failure_during_export_leaves_no_partial_files(tmp_path, monkeypatch):
    """The decoder is written, then the encoder fails: neither the folder nor a temporary
    folder remains; an existing folder keeps exactly its files."""
    import napari_sam.export as ex

    def boom(self, image):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(ex.SamOnnxEncoder, "forward", boom)
    with pytest.raises(RuntimeError, match="simulated failure"):
        export_onnx("demo", tmp_path / "new")
    assert _entries(tmp_path) == []
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="simulated failure"):
        export_onnx("demo", existing)
    assert _entries(existing) == ["notes.txt"]
    assert _entries(tmp_path) == ["existing"]


def test_existing_export_needs_overwrite_and_other_files_are_kept(tmp_path):
    out = tmp_path / "out"
    export_onnx("demo", out, encoder=False)
    before = (out / DECODER_FILE).read_bytes()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_onnx("demo", out, encoder=False)
    assert (out / DECODER_FILE).read_bytes() == before
    export_onnx("demo", out, encoder=False, overwrite=True)
    assert _entries(out) == [DECODER_FILE, METADATA_FILE, "notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        export_onnx("demo", a_file)
    with pytest.raises(ValueError, match="opset"):
        export_onnx("demo", tmp_path / "old", opset=13)
    assert not (tmp_path / "old").exists()


def test_export_does_not_import_dynamo_or_change_the_model(tmp_path):
    """The TorchScript exporter is used: no torch._dynamo (fresh interpreter), and the
    model's mode and GELUs are as before."""
    import subprocess

    code = (
        "import sys, napari_sam as ns\n"
        f"ns.export_onnx('demo', {str(tmp_path / 'x')!r}, gelu_approximate=True)\n"
        "bad = [m for m in ('torch._dynamo', 'onnxscript') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    import napari_sam as ns

    model = ns.load_model("demo").train()
    export_onnx(model, tmp_path / "y", encoder=False, gelu_approximate=True)
    assert model.training
    assert all(m.approximate == "none" for m in model.modules() if isinstance(m, torch.nn.GELU))


# ============================================================================ OnnxDecoder


def test_onnx_decoder_class_equals_predictor(tmp_path, monkeypatch):
    """OnnxDecoder (the candidate for Predictor(backend="onnx")) takes napari prompts and
    returns what Predictor.predict returns, for points, a box, both, a mask and one mask."""
    import napari_sam as ns
    from napari_sam.export import OnnxDecoder, onnx_cache_folder
    from napari_sam.synthetic import nuclei_2d

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    sample = nuclei_2d((180, 230), seed=1)
    pred = ns.Predictor("demo", device="cpu", precision="fp32")
    emb = pred.set_image(sample.image)
    dec = OnnxDecoder.for_model(pred.model, threads=1)
    assert (onnx_cache_folder(pred.model) / DECODER_FILE).is_file()
    rows, cols = np.nonzero(sample.labels == 2)
    centre = [np.median(rows), np.median(cols)]
    box = [rows.min(), cols.min(), rows.max(), cols.max()]
    _, _, previous = pred.predict(points=[centre], labels=[1])
    cases = [
        dict(points=[centre], labels=[1]),
        dict(points=[centre, [5, 5]], labels=[1, 0]),
        dict(box=box),
        dict(points=[centre], labels=[1], box=box),
        dict(points=[centre], labels=[1], mask_input=previous[0]),
        dict(points=[centre], labels=[1], multimask=False),
    ]
    for kwargs in cases:
        # Meta's interface cuts masks at the model's threshold (the demo model's default
        # in Predictor.predict is the edge-aligned boundary)
        want = pred.predict(**kwargs, boundary="threshold")
        got = dec.predict(emb, **kwargs)
        assert got[0].shape == want[0].shape and got[0].dtype == bool
        np.testing.assert_allclose(got[1], want[1], atol=IOU_TOL, rtol=0)
        np.testing.assert_allclose(got[2], want[2], atol=1e-3, rtol=0)
        assert _agreement(got[0], want[0]) >= MASK_AGREEMENT, kwargs
    # the second call reuses the export; other weights under the same model_id do not
    stamp = (onnx_cache_folder(pred.model) / DECODER_FILE).stat().st_mtime_ns
    again = OnnxDecoder.for_model(pred.model)
    assert again.model_id == pred.model.model_id
    assert (onnx_cache_folder(pred.model) / DECODER_FILE).stat().st_mtime_ns == stamp
    import copy

    other = copy.deepcopy(pred.model)
    with torch.no_grad():
        other.mask_decoder.iou_token.weight.add_(1.0)
    assert other.model_id == pred.model.model_id
    assert onnx_cache_folder(other) != onnx_cache_folder(pred.model)
    from napari_sam.preprocess import points_to_model

    xy = torch.as_tensor(points_to_model([[30.0, 40.0]], emb.spec(other.img_size)))[None]
    with torch.no_grad():
        want = other.decode(emb.features[None], points=(xy, torch.tensor([[1]])))
    got = OnnxDecoder.for_model(other).predict(emb, points=[[30.0, 40.0]])
    np.testing.assert_allclose(got[1], want[1][0].numpy(), atol=IOU_TOL, rtol=0)


def test_onnx_decoder_class_refuses_what_it_cannot_decode(tmp_path, demo, demo_plain):
    import napari_sam as ns
    from napari_sam.export import OnnxDecoder
    from napari_sam.predictor import ImageEmbedding

    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxDecoder(tmp_path / "nothing")
    single = export_onnx(demo, tmp_path / "single", encoder=False, return_single_mask=True)
    with pytest.raises(ValueError, match="return_single_mask"):
        OnnxDecoder(single.folder)
    dec = OnnxDecoder(demo_plain.decoder)
    e = demo.embedding_size
    other = ImageEmbedding(torch.zeros(256, e, e), (100, 100), (256, 256), "vit_b:123")
    with pytest.raises(ValueError, match="same model"):
        dec.predict(other, points=[[5, 5]])
    mine = ImageEmbedding(torch.zeros(256, e, e), (100, 100), (256, 256), demo.model_id)
    with pytest.raises(ValueError, match="at least one prompt"):
        dec.predict(mine)
    with pytest.raises(ValueError, match=r"mask_input must have shape \(128, 128\)"):
        dec.predict(mine, points=[[5, 5]], mask_input=np.zeros((64, 64)))
    assert ns.export_onnx is export_onnx


def test_docs_onnxruntime_example_runs_and_matches_predictor(cli_demo_export, tmp_path,
                                                             monkeypatch):
    """The onnxruntime example in docs/onnx.md, run as written on an export of the demo
    (it reads its image from ``image.tif``: without that line it stopped at a NameError)."""
    import re

    import tifffile

    import napari_sam as ns
    from napari_sam.synthetic import nuclei_2d

    text = (Path(__file__).resolve().parents[1] / "docs" / "onnx.md").read_text()
    section = text[text.index("## Run it in onnxruntime") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    statements = [ln for ln in code.splitlines() if ln.strip() and not ln.startswith(" ")]
    assert len(statements) <= 13
    code = code.replace('"onnx/vit_b_lm"', repr(str(cli_demo_export[0])))
    sample = nuclei_2d((150, 200), seed=3)
    rows, cols = np.nonzero(sample.labels == 1)
    click = [int(np.median(rows)), int(np.median(cols))]
    code = code.replace("[[120, 80]]", repr([click]))
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite("image.tif", sample.image)
    scope = {}
    exec(compile(code, "docs/onnx.md", "exec"), scope)
    pred = ns.Predictor("demo", device="cpu", precision="fp32")
    pred.set_image(sample.image)
    masks, scores, _ = pred.predict(points=[click], labels=[1])
    assert scope["mask"].shape == sample.image.shape
    assert _agreement(scope["mask"], masks[scores.argmax()]) >= MASK_AGREEMENT


def test_overwrite_with_one_part_never_pairs_two_models(tmp_path):
    """``--overwrite --decoder-only`` into an earlier export: the encoder of the same model
    stays and export.json names it; another model's encoder is removed (it would pair with
    the new decoder in the docs' 12-line example); files no export wrote stay."""
    from tiny_configs import save_tiny_cnn

    model = save_tiny_cnn(tmp_path)
    out = tmp_path / "out"
    export_onnx(model, out)
    (out / "notes.txt").write_text("mine")
    export_onnx(model, out, encoder=False, overwrite=True)  # the same model
    meta = json.loads((out / METADATA_FILE).read_text())
    assert sorted(meta["files"]) == ["decoder", "encoder"]
    assert (out / ENCODER_FILE).is_file()
    export_onnx("demo", out, encoder=False, overwrite=True)  # another model
    meta = json.loads((out / METADATA_FILE).read_text())
    assert sorted(meta["files"]) == ["decoder"]
    assert _entries(out) == [DECODER_FILE, METADATA_FILE, "notes.txt"]


def test_a_kept_decoder_keeps_its_options_and_opset_in_export_json(tmp_path):
    """``--decoder-only --return-single-mask`` then ``--encoder-only --overwrite`` (the
    reviewer's case): export.json still describes the decoder that stays (single mask, its
    opset), not the options of the encoder-only command."""
    import onnx

    from tiny_configs import save_tiny_cnn

    model = save_tiny_cnn(tmp_path)
    out = tmp_path / "out"
    export_onnx(model, out, encoder=False, return_single_mask=True)
    export_onnx(model, out, decoder=False, overwrite=True, opset=18)
    meta = json.loads((out / METADATA_FILE).read_text())
    assert sorted(meta["files"]) == ["decoder", "encoder"]
    assert meta["decoder_options"]["return_single_mask"] is True
    assert meta["opsets"] == {"decoder": 17, "encoder": 18}
    graph = onnx.load(str(out / DECODER_FILE)).graph
    iou = next(o for o in graph.output if o.name == "iou_predictions")
    assert iou.type.tensor_type.shape.dim[-1].dim_value == 1  # what export.json says


def test_a_changed_export_json_is_refused_when_the_decoder_opens(demo_plain, tmp_path):
    """An export.json edited by hand (or paired by hand with another export's decoder) is
    refused when the decoder is opened, naming the file and saying to export again; it
    failed in onnxruntime at the first click, or with a bare int() error (session 32)."""
    import shutil

    from napari_sam.export import OnnxDecoder

    folder = tmp_path / "edited"
    shutil.copytree(demo_plain.folder, folder)
    meta = json.loads((folder / "export.json").read_text())
    for key, value, said in [
        ("low_res_size", 64, "gives low_res_size 64, but .*decoder.onnx takes masks of "
                             r"\(128, 128\): the two files are not one export"),
        ("input_size", "abc", "not the export.json of an ONNX export .*'input_size' is 'abc', "
                              "not a positive whole number"),
    ]:
        (folder / "export.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(ValueError, match=said) as err:
            OnnxDecoder(folder)
        assert "export" in str(err.value).split(";")[-1]  # what to do


def test_only_negative_points_are_warned_of_by_the_onnx_decoder_too(demo, demo_plain):
    from napari_sam.export import OnnxDecoder
    from napari_sam.predictor import ImageEmbedding

    e = demo.embedding_size
    emb = ImageEmbedding(torch.zeros(256, e, e), (100, 100), (256, 256), demo.model_id)
    dec = OnnxDecoder(demo_plain.folder)
    with pytest.warns(UserWarning, match="only negative points"):
        dec.predict(emb, points=[[30, 30]], labels=[0])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dec.predict(emb, points=[[30, 30]], labels=[1])


def test_the_coordinates_export_json_gives_are_the_librarys(cli_demo_export):
    """export.json's formula for point_coords, applied as written, gives the coordinates the
    library feeds (per axis, Meta's apply_coords); one factor S / max(H, W) for both axes, as
    it said, is off by 5 % on the short side of a 200 x 500 image."""
    from napari_sam.preprocess import ResizeSpec, points_to_model

    meta = json.loads((cli_demo_export[0] / "export.json").read_text())
    assert "(x, y) = (col * w / W, row * h / H)" in meta["coordinates"]
    assert "floor((H, W) * 256 / max(H, W) + 0.5)" in meta["preprocessing"]["resize"]
    s = meta["input_size"]
    for H, W in [(200, 500), (37, 1000), (500, 200)]:
        h, w = (int(np.floor(n * s / max(H, W) + 0.5)) for n in (H, W))
        rc = np.array([[150.0, 420.0], [3.0, 7.0]]) * [H / 200, W / 500]
        written = np.stack([rc[:, 1] * w / W, rc[:, 0] * h / H], axis=-1)
        spec = ResizeSpec(original_size=(H, W), input_size=(h, w), img_size=s)
        np.testing.assert_allclose(points_to_model(rc, spec), written, rtol=1e-6)


def test_an_export_without_onnxruntime_says_the_check_was_skipped(demo, tmp_path, monkeypatch):
    """docs/onnx.md says the decoder is run in onnxruntime and compared with PyTorch before
    the export is accepted; without onnxruntime that was skipped without a word."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.warns(UserWarning, match="onnxruntime is not installed: the exported decoder "
                                         "passed onnx.checker but was not run and compared"):
        result = export_onnx(demo, tmp_path / "noort", encoder=False)
    assert result.decoder.is_file()


def test_the_onnx_backend_with_a_cache_it_cannot_write_names_the_cache(demo, tmp_path,
                                                                       monkeypatch):
    """Predictor(backend="onnx") exports the decoder into the model cache: a cache under a
    file says so and names NAPARI_SAM_CACHE_DIR (it advised -o, which Python has not)."""
    import napari_sam as ns

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(PermissionError, match=r"cannot write the ONNX decoder into the model "
                       r"cache \(.*a-file.*\): .*a-file is a file, not a folder; set "
                       "NAPARI_SAM_CACHE_DIR to a folder you can write to") as err:
        ns.Predictor(demo, device="cpu", backend="onnx")
    assert " -o" not in str(err.value)
