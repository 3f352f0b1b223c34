"""The click decoder (#27): ``CachedDecoder`` equals the plain mask decoder, and the
Predictor uses it for single prompts without a mask input (from the second decode of an
embedding), with ``cached_decoder=False`` as the escape hatch.

Identical random weights: a reduced-depth ViT-B (full-size decoder, 64 x 64 embedding) with
every bias and norm perturbed away from PyTorch's zeros and ones, and the demo model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.models import SamConfig, build_sam
from napari_sam.models.cached_decoder import (
    CachedDecoder,
    bilinear_2x,
    click_precision,
    upsample_click_logits,
)
from napari_sam.predictor import ImageEmbedding
from napari_sam.preprocess import ResizeSpec
from napari_sam.prompts import upsample_logits
from tiny_configs import TINY_VIT

MASK_AGREEMENT = 0.999  # fraction of pixels on which the masks must agree
IOU_TOL = 1e-4
VIT_B_SHORT = SamConfig(encoder_depth=1, encoder_global_attn_indexes=(0,), name="vit_b_short")


@torch.no_grad()
def perturb_(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial values where PyTorch's initialisers give zeros or ones."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if name.endswith("weight") and ("norm" in name or "upscaling.1" in name):
            p.copy_(1.0 + 0.1 * noise)
        elif name.endswith("bias"):
            p.copy_(0.1 * noise)


@pytest.fixture(scope="module")
def vit_b():
    torch.manual_seed(0)
    model = build_sam(VIT_B_SHORT).eval()
    perturb_(model, 0)
    feats = torch.randn(256, 64, 64, generator=torch.Generator().manual_seed(3))
    return model, feats


@pytest.fixture(scope="module")
def demo():
    model = ns.load_model("demo")
    e = model.embedding_size
    return model, torch.randn(256, e, e, generator=torch.Generator().manual_seed(4))


def model_frame_prompts(s: int):
    """(name, decode kwargs) in the model-input frame (x, y), as ``Sam.decode`` takes them."""
    rng = np.random.default_rng(1)
    pts = torch.as_tensor(rng.uniform(0.1 * s, 0.6 * s, (1, 3, 2)), dtype=torch.float32)
    box = torch.tensor([[0.2 * s, 0.15 * s, 0.55 * s, 0.5 * s]])
    return [
        ("one point", dict(points=(pts[:, :1], torch.tensor([[1]])))),
        ("points", dict(points=(pts, torch.tensor([[1, 1, 0]])))),
        ("box", dict(boxes=box)),
        ("points + box", dict(points=(pts[:, :2], torch.tensor([[1, 0]])), boxes=box)),
    ]


def agreement(a, b) -> float:
    return float((np.asarray(a) > 0).__eq__(np.asarray(b) > 0).mean())


@pytest.mark.parametrize("which", ["vit_b", "demo"])
@pytest.mark.parametrize("multimask", [True, False])
def test_cached_decoder_equals_the_plain_decoder(request, which, multimask):
    model, feats = request.getfixturevalue(which)
    dec = CachedDecoder(model)
    assert CachedDecoder.supports(model)
    cache = dec.prepare(feats)
    for name, kw in model_frame_prompts(model.img_size):
        with torch.inference_mode():
            want, want_iou = model.decode(feats[None], multimask=multimask, **kw)
            sparse, _ = model.prompt_encoder(kw.get("points"), kw.get("boxes"), None)
            got, got_iou = dec.decode(cache, sparse, multimask=multimask)
        assert got.shape == want.shape == (1, 3 if multimask else 1, *want.shape[-2:]), name
        assert agreement(got, want) >= MASK_AGREEMENT, name
        assert float((got_iou - want_iou).abs().max()) <= IOU_TOL, name
        scale = float(want.abs().max())
        assert float((got - want).abs().max()) <= 1e-4 * scale, name


def embedding_for(model, feats, size):
    spec = ResizeSpec.for_image(size, model.img_size)
    return ImageEmbedding(feats, size, spec.input_size, model.model_id)


def pixel_prompts(size):
    h, w = size
    pts = [[0.4 * h, 0.6 * w], [0.2 * h, 0.3 * w]]
    box = [0.1 * h, 0.2 * w, 0.5 * h, 0.7 * w]
    return [
        dict(points=pts[:1], labels=[1]),
        dict(points=pts, labels=[1, 0]),
        dict(box=box),
        dict(points=pts[:1], labels=[1], box=box, multimask=False),
    ]


def counting(monkeypatch):
    calls = {"prepare": 0, "decode": 0}
    for name in calls:
        orig = getattr(CachedDecoder, name)

        def wrapper(self, *a, _orig=orig, _name=name, **kw):
            calls[_name] += 1
            return _orig(self, *a, **kw)

        monkeypatch.setattr(CachedDecoder, name, wrapper)
    return calls


@pytest.mark.parametrize("size", [(512, 512), (300, 450)])
def test_predictor_clicks_equal_the_plain_decoder(vit_b, monkeypatch, size):
    """Points, boxes, points + box and mask prompts; the cache is made on the first click on
    an embedding, once, and a mask prompt runs the plain decoder."""
    model, feats = vit_b
    calls = counting(monkeypatch)
    fast = ns.Predictor(model, device="cpu", precision="fp32")
    plain = ns.Predictor(model, device="cpu", precision="fp32", cached_decoder=False)
    assert fast.cached_decoder and not plain.cached_decoder
    emb = embedding_for(model, feats, size)
    fast.set_embedding(emb)
    plain.set_embedding(emb)
    for kw in pixel_prompts(size):
        m, s, lg = fast.predict(**kw)
        m0, s0, lg0 = plain.predict(**kw)
        assert m.shape == m0.shape and m.dtype == bool
        assert float((m == m0).mean()) >= MASK_AGREEMENT, kw
        assert float(np.abs(s - s0).max()) <= IOU_TOL, kw
        mm, ms, _ = fast.predict(**kw, mask_input=lg[0])
        pm, ps, _ = plain.predict(**kw, mask_input=lg[0])
        assert float((mm == pm).mean()) >= MASK_AGREEMENT, kw
        assert float(np.abs(ms - ps).max()) <= IOU_TOL, kw
    # every prompt without a mask input ran the cached decoder, one cache made at the first
    assert calls == {"prepare": 1, "decode": 4}


def test_a_new_embedding_is_not_decoded_with_the_old_cache(vit_b, monkeypatch):
    model, feats = vit_b
    calls = counting(monkeypatch)
    fast = ns.Predictor(model, device="cpu", precision="fp32")
    plain = ns.Predictor(model, device="cpu", precision="fp32", cached_decoder=False)
    other = torch.randn(feats.shape, generator=torch.Generator().manual_seed(9))
    kw = dict(points=[[200, 300]], labels=[1])
    for f in (feats, feats.clone(), other):
        emb = embedding_for(model, f, (512, 512))
        fast.set_embedding(emb)
        plain.set_embedding(emb)
        want = plain.predict(**kw)
        for _ in range(2):
            got = fast.predict(**kw)
            assert float((got[0] == want[0]).mean()) >= MASK_AGREEMENT
            assert float(np.abs(got[1] - want[1]).max()) <= IOU_TOL
    # a copy of the same features (an embedding read again from a store) reuses the cache
    assert calls == {"prepare": 2, "decode": 6}


def test_escape_hatch_and_batches_use_the_plain_decoder(vit_b, monkeypatch):
    model, feats = vit_b
    calls = counting(monkeypatch)
    emb = embedding_for(model, feats, (512, 512))
    plain = ns.Predictor(model, device="cpu", precision="fp32", cached_decoder=False)
    plain.set_embedding(emb)
    for _ in range(3):
        plain.predict(points=[[100, 100]], labels=[1])
    fast = ns.Predictor(model, device="cpu", precision="fp32")
    for _ in range(3):  # two prompts in one call: the batched plain decoder
        out = fast.predict_batch(emb, points=[[[100, 100]], [[300, 200]]], labels=[[1], [1]])
    assert out.masks.shape == (2, 3, 512, 512)
    assert calls == {"prepare": 0, "decode": 0}


def mask_ious(a, b, min_pixels: int = 200) -> np.ndarray:
    """IoU per mask of the boolean masks ``a > 0`` and ``b > 0`` (..., C, H, W); 1 where
    both masks together cover fewer than ``min_pixels`` (a flipped pixel of a tiny mask says
    nothing; :func:`agreement` covers them)."""
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    inter = (a & b).reshape(*a.shape[:-2], -1).sum(-1)
    union = (a | b).reshape(*a.shape[:-2], -1).sum(-1)
    return np.where(union < min_pixels, 1.0, inter / np.maximum(union, 1))


@pytest.mark.parametrize("which", ["vit_b", "demo"])
@pytest.mark.parametrize("multimask", [True, False])
def test_bf16_cached_decoder_agrees_with_float32(request, which, multimask):
    """``precision="bf16"`` (what ``precision="auto"`` gives on CPUs with native bfloat16:
    the upscaling head's products in bfloat16) changes rounding, not masks: each mask at
    IoU >= 0.97 with the float32 one (measured: ViT-B >= 0.995, the demo model on these
    random features >= 0.976), >= 99.5 % of pixels equal, predicted IoUs equal (the head
    does not feed them)."""
    model, feats = request.getfixturevalue(which)
    fp32, bf16 = CachedDecoder(model), CachedDecoder(model, precision="bf16")
    c32, c16 = fp32.prepare(feats), bf16.prepare(feats)
    assert c16.head["shw"][0].dtype == c16.head["w2"][1].dtype == torch.bfloat16
    assert c32.head["shw"][0].dtype == torch.float32
    assert c16.layers[-1]["t2i"]["k1"].dtype == torch.float32  # the transformer stays fp32
    for name, kw in model_frame_prompts(model.img_size):
        with torch.inference_mode():
            sparse, _ = model.prompt_encoder(kw.get("points"), kw.get("boxes"), None)
            want, want_iou = fp32.decode(c32, sparse, multimask=multimask)
            got, got_iou = bf16.decode(c16, sparse, multimask=multimask)
        assert got.dtype == torch.float32 and got.shape == want.shape, name
        assert not torch.equal(got, want), name  # bfloat16 arithmetic did run
        assert mask_ious(got, want).min() >= 0.97, name
        assert agreement(got, want) >= 0.995, name
        assert torch.equal(got_iou, want_iou), name


def test_bf16_precision_clicks_use_the_bf16_cached_decoder(demo, monkeypatch):
    """``precision="bf16"`` on the CPU: clicks go through the bfloat16 cached decoder (from
    the first click on an embedding) and agree with exact float32 clicks."""
    model, feats = demo
    calls = counting(monkeypatch)
    fast = ns.Predictor(model, device="cpu", precision="bf16")
    plain = ns.Predictor(model, device="cpu", precision="fp32", cached_decoder=False)
    assert fast._click_decoder.precision == "bf16"
    assert ns.Predictor(model, device="cpu", precision="fp32")._click_decoder.precision == "fp32"
    emb = embedding_for(model, feats, (200, 240))
    fast.set_embedding(emb)
    plain.set_embedding(emb)
    for kw in pixel_prompts((200, 240)):
        fast.predict(**kw)
        m, s, _ = fast.predict(**kw)
        m0, s0, _ = plain.predict(**kw)
        assert mask_ious(m, m0).min() >= 0.97, kw
        assert float((m == m0).mean()) >= 0.995 and float(np.abs(s - s0).max()) <= IOU_TOL, kw
    assert calls == {"prepare": 1, "decode": 8}  # every click


def test_click_precision_follows_the_predictors_device_and_dtype():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert click_precision(cpu, torch.bfloat16) == "bf16"
    assert click_precision(cpu, torch.float32) == "fp32"
    assert click_precision(cpu, torch.float16) == "fp32"
    assert click_precision(cuda, torch.bfloat16) == "fp32"  # a GPU click is not CPU-bound
    with pytest.raises(ValueError, match="precision must be one of"):
        CachedDecoder(ns.load_model("demo"), precision="fp16")


def test_one_pass_upsampling_equals_the_two_passes_where_it_is_used():
    lg = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(0))
    half = ImageEmbedding(torch.zeros(1), (512, 512), (1024, 1024), "m")
    one = upsample_click_logits(lg, half, 1024)
    two = upsample_logits(lg, half, 1024)
    assert one.shape == two.shape == (3, 512, 512)
    assert float((one - two).abs().max()) <= 1e-5
    for original, input_size in [((300, 450), (683, 1024)), ((1024, 1024), (1024, 1024)),
                                 ((256, 256), (1024, 1024)), ((512, 256), (1024, 512))]:
        emb = ImageEmbedding(torch.zeros(1), original, input_size, "m")
        assert upsample_click_logits(lg, emb, 1024) is None, original


def test_supports_refuses_a_decoder_it_cannot_cache(vit_b):
    model, _ = vit_b
    assert CachedDecoder.supports(model)
    assert not CachedDecoder.supports(torch.nn.Linear(2, 2))
    half = build_sam(SamConfig(**TINY_VIT))
    half.mask_decoder.to(torch.bfloat16)
    assert not CachedDecoder.supports(half)
    pred = ns.Predictor(half, device="cpu", precision="fp32")
    assert pred.cached_decoder is False


def test_a_click_runs_on_one_cpu_thread_and_leaves_the_callers_threads(vit_b, monkeypatch):
    """A cached click decodes with one torch thread (its ~1,200 small operators would each wake
    the sleeping other threads), in the calling thread only, and restores its count; the
    plain decoder (a mask prompt) keeps the caller's threads."""
    model, feats = vit_b
    seen = []
    real_decode = CachedDecoder.decode

    def decode(self, *args, **kwargs):
        seen.append(("cached", torch.get_num_threads()))
        return real_decode(self, *args, **kwargs)

    real_plain = type(model).decode

    def plain_decode(self, *args, **kwargs):
        seen.append(("plain", torch.get_num_threads()))
        return real_plain(self, *args, **kwargs)

    monkeypatch.setattr(CachedDecoder, "decode", decode)
    monkeypatch.setattr(type(model), "decode", plain_decode)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pred = ns.Predictor(model, device="cpu", precision="fp32")
        pred.set_embedding(embedding_for(model, feats, (512, 512)))
        _, _, logits = pred.predict(points=[[200, 300]], labels=[1])  # makes the cache, cached
        pred.predict(points=[[200, 300]], labels=[1])                   # cached
        assert torch.get_num_threads() == 2
        pred.predict(points=[[200, 300]], labels=[1], mask_input=logits[:1])  # plain
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert seen == [("cached", 1), ("cached", 1), ("plain", 2)]


def test_clicks_on_a_tiled_image_keep_a_cache_per_window(demo, monkeypatch):
    """A click on a tiled image decodes in every window that holds it (here four); the
    predictor keeps a click cache for each, so every window decodes with the cached decoder,
    and the masks equal the plain decoder's."""
    from napari_sam import synthetic

    model, _ = demo
    image = synthetic.nuclei_2d((448, 448), seed=10_031, radius=(6, 10), n_objects=60).image
    calls = counting(monkeypatch)
    fast = ns.Predictor(model, device="cpu", precision="fp32")
    plain = ns.Predictor(model, device="cpu", precision="fp32", cached_decoder=False)
    fast.set_image(image, tiling=True)
    plain.set_embedding(fast.tiled)
    kw = dict(points=[[224, 224]], labels=[1])  # inside all four windows
    want = plain.predict(**kw)
    assert len(plain.last_tiled.windows) == 4
    for _ in range(3):
        got = fast.predict(**kw)
        assert float((got[0] == want[0]).mean()) >= MASK_AGREEMENT
        assert float(np.abs(got[1] - want[1]).max()) <= IOU_TOL
    # click 1: four caches made and used; clicks 2 and 3: used
    assert calls == {"prepare": 4, "decode": 12}


def test_bf16_clicks_on_nuclei_keep_their_masks(demo):
    """On a real embedding (synthetic nuclei, the demo model) a click at each nucleus's centre
    gives the same masks in bf16 as in float32: every candidate at IoU >= 0.97 (measured
    over seeds 10000-10001: min 0.977, 1.3 % of nuclei below 0.98; bfloat16 autocast of the
    plain decoder: min 0.954, 4 %)."""
    from scipy import ndimage as ndi

    from napari_sam import synthetic as syn
    from napari_sam.prompts import prompt_tensors

    model, _ = demo
    scene = syn.nuclei_2d((256, 256), seed=10000)
    pred = ns.Predictor(model, device="cpu", precision="fp32")
    pred.set_image(scene.image)
    emb = pred.embedding
    fp32, bf16 = CachedDecoder(model), CachedDecoder(model, precision="bf16")
    c32, c16 = fp32.prepare(emb.features), bf16.prepare(emb.features)
    ious = []
    for lab in range(1, int(scene.labels.max()) + 1):
        inside = scene.labels == lab
        if inside.sum() < 20:
            continue
        centre = np.array(ndi.center_of_mass(inside))[None, None]
        pt, _, _, _ = prompt_tensors(centre, [[1]], None, None, emb.spec(model.img_size),
                                     torch.device("cpu"))  # fmt: skip
        with torch.inference_mode():
            sparse, _ = model.prompt_encoder(points=pt, boxes=None, masks=None)
            want, _ = fp32.decode(c32, sparse, True)
            got, _ = bf16.decode(c16, sparse, True)
        ious.append(mask_ious(got, want, min_pixels=0).min())
    assert len(ious) >= 25
    assert min(ious) >= 0.97 and float(np.median(ious)) >= 0.99


def test_a_click_on_a_cached_embedding_compares_no_tensor_contents(vit_b, monkeypatch):
    """With several embeddings cached, a click on one of them finds its cache by identity:
    no element-wise comparison of 4 MB feature tensors per click."""
    model, feats = vit_b
    pred = ns.Predictor(model, device="cpu", precision="fp32")
    embs = [embedding_for(model, feats + i, (256, 256)) for i in range(3)]
    for emb in embs:  # three caches
        for _ in range(2):
            pred.predict_batch(emb, points=[[[50, 60]]], labels=[[1]])
    compared = []
    real_equal = torch.equal
    monkeypatch.setattr(torch, "equal", lambda a, b: compared.append(1) or real_equal(a, b))
    for emb in (embs[0], embs[2], embs[1]):
        pred.predict_batch(emb, points=[[[50, 60]]], labels=[[1]])
    assert compared == []
    # contents still count: a copy of the features finds the same cache
    calls = counting(monkeypatch)
    pred.predict_batch(embedding_for(model, embs[0].features.clone(), (256, 256)),
                       points=[[[50, 60]]], labels=[[1]])  # fmt: skip
    assert compared and calls == {"prepare": 0, "decode": 1}


def test_a_click_decodes_the_same_whatever_was_decoded_before(demo):
    """The same click gives bit-identical logits as the first decode of a fresh predictor, as
    the second click on an embedding and after other slices were clicked: what a session
    replayed in a new process needs to give the masks the dock showed (before, the first
    click on an embedding ran the plain decoder and later ones the cached decoder, which
    round differently: 0.2 % of pixels in bfloat16)."""
    model, feats = demo
    emb = embedding_for(model, feats, (200, 240))
    others = [embedding_for(model, feats.roll(k, -1), (200, 240)) for k in (1, 2)]
    kw = dict(points=[[[90.0, 130.0], [40.0, 60.0]]], labels=[[1, 0]])
    for precision in ("fp32", "bf16"):
        fresh = ns.Predictor(model, device="cpu", precision=precision)
        first = fresh.predict_batch(emb, **kw).logits
        again = fresh.predict_batch(emb, **kw).logits
        busy = ns.Predictor(model, device="cpu", precision=precision)
        for other in others:
            busy.predict_batch(other, points=[[[20.0, 20.0]]], labels=[[1]])
        busy.predict_batch(emb, points=[[[10.0, 200.0]]], labels=[[1]])
        later = busy.predict_batch(emb, **kw).logits
        assert torch.equal(first, again), precision
        assert torch.equal(first, later), precision


@pytest.mark.parametrize("shape", [(3, 256, 256), (2, 5, 7), (1, 1, 3), (1, 2, 1)])
def test_bilinear_2x_equals_torchs_bilinear_upsampling(shape):
    """The click's upsampling by 2 (:func:`bilinear_2x`) is PyTorch's bilinear interpolation
    (align_corners=False), borders included, up to float rounding; the input is not changed."""
    x = 10 * torch.randn(shape, generator=torch.Generator().manual_seed(5))
    before = x.clone()
    got = bilinear_2x(x)
    want = torch.nn.functional.interpolate(x[:, None], scale_factor=2, mode="bilinear",
                                           align_corners=False)[:, 0]
    assert got.shape == want.shape == (shape[0], 2 * shape[1], 2 * shape[2])
    assert float((got - want).abs().max()) <= 1e-5 * float(x.abs().max())
    assert torch.equal(x, before)
