import numpy as np
import pytest
import torch

from napari_sam.predictor import ImageEmbedding, Predictor


@pytest.fixture
def pred(tiny_sam):
    return Predictor(tiny_sam, device="cpu")


def blob_image(shape=(120, 90), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(300, 20, shape)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    img[(rr - 60) ** 2 + (cc - 40) ** 2 < 15**2] += 2000
    return img.astype(dtype) if np.dtype(dtype).kind != "f" else img.astype(dtype)


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64]
)
def test_set_image_any_dtype_and_predict_shapes(pred, dtype):
    img = blob_image(dtype=dtype)
    if dtype is np.uint8:
        img = (img // 16).astype(np.uint8)
    emb = pred.set_image(img)
    e = pred.model.embedding_size
    assert tuple(emb.features.shape) == (256, e, e)
    assert emb.original_size == (120, 90) and emb.input_size == (256, 192)
    masks, scores, logits = pred.predict(points=[[60, 40]], labels=[1])
    assert masks.shape == (3, 120, 90) and masks.dtype == bool
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert logits.shape == (3, 4 * e, 4 * e) and logits.dtype == np.float32
    m1, s1, l1 = pred.predict(box=[40, 20, 80, 60], multimask=False)
    assert m1.shape == (1, 120, 90) and s1.shape == (1,) and l1.shape == (1, 4 * e, 4 * e)


def test_float_image_with_nan_inf_and_negative_values(pred):
    img = blob_image(dtype=np.float32) - 1000
    img[0, :5] = np.nan
    img[1, :5] = np.inf
    img[2, :5] = -np.inf
    pred.set_image(img)
    assert torch.isfinite(pred.embedding.features).all()


@pytest.mark.parametrize("shape", [(50, 60, 3), (50, 60, 4)])
def test_rgb_and_rgba(pred, shape):
    rng = np.random.default_rng(3)
    pred.set_image(rng.integers(0, 255, shape, dtype=np.uint8))
    masks, _, _ = pred.predict(points=[[10, 10]])
    assert masks.shape[1:] == (50, 60)


def test_rgba_alpha_is_ignored(pred):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 255, (50, 60, 3), dtype=np.uint8)
    a = pred.set_image(rgb, contrast_limits=(0, 255)).features.clone()
    rgba = np.concatenate([rgb, rng.integers(0, 255, (50, 60, 1), dtype=np.uint8)], -1)
    b = pred.set_image(rgba, contrast_limits=(0, 255)).features
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros(10), "shape"),
        (np.zeros((2, 2, 2, 2, 2)), "shape"),
        (np.zeros((0, 10)), "empty"),
    ],
)
def test_bad_images(pred, image, match):
    with pytest.raises(ValueError, match=match):
        pred.set_image(image)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points=[[500, 10]]), "outside the image"),
        (dict(points=[[10, -3]]), "outside the image"),
        (dict(points=[[10, 10], [20, 20]], labels=[1]), "2 points but 1 labels"),
        (dict(points=[[10, 10]], labels=[2]), "labels must be 1"),
        (dict(points=[10, 10, 10]), "shape"),
        (dict(box=[50, 50, 10, 10]), "inverted"),
        (dict(box=[1, 2, 3]), "4 finite"),
        (dict(box=[500, 500, 600, 600]), "outside the image"),
        (dict(mask_input=np.zeros((10, 10))), "mask_input must have shape"),
        (dict(), "at least one prompt"),
        (dict(labels=[1]), "labels were given without points"),
    ],
)
def test_bad_prompts(pred, kwargs, match):
    pred.set_image(blob_image())
    with pytest.raises(ValueError, match=match):
        pred.predict(**kwargs)


def test_predict_before_set_image(pred):
    with pytest.raises(RuntimeError, match="set_image"):
        pred.predict(points=[[1, 1]])


def test_mask_input_changes_prediction(pred):
    pred.set_image(blob_image())
    _, _, logits = pred.predict(points=[[60, 40]], multimask=False)
    _, _, logits2 = pred.predict(points=[[60, 40]], mask_input=logits[0] + 5, multimask=False)
    assert not np.allclose(logits, logits2)


def test_batch_equals_single_predictions_in_one_decoder_call(pred):
    pred.set_image(blob_image())
    pts = np.array([[[60, 40], [10, 10]], [[20, 70], [100, 80]], [[5, 5], [0, 0]]], float)
    labels = np.array([[1, 0], [1, 1], [1, 0]])  # no -1 padding: SAM treats pads as tokens
    boxes = np.array([[40, 20, 80, 60], [10, 50, 40, 85], [0, 0, 30, 30]], float)
    calls = pred.decoder_calls
    out = pred.predict_batch(points=pts, labels=labels, boxes=boxes)
    assert pred.decoder_calls == calls + 1
    assert out.masks.shape == (3, 3, 120, 90)
    for i in range(3):
        keep = labels[i] >= 0
        m, s, lg = pred.predict(points=pts[i][keep], labels=labels[i][keep], box=boxes[i])
        np.testing.assert_allclose(out.scores[i].numpy(), s, atol=1e-5)
        np.testing.assert_allclose(out.logits[i].numpy(), lg, atol=1e-4)
        assert (out.masks[i].numpy() == m).mean() > 0.999


def test_upsample_only_selected(pred):
    pred.set_image(blob_image())
    out = pred.predict_batch(points=[[[60, 40]]], labels=[[1]], upsample=False)
    assert out.masks is None
    masks = pred.upsample(out.logits[0, 1:2])
    m, _, _ = pred.predict(points=[[60, 40]])
    np.testing.assert_array_equal(masks[0].numpy(), m[1])


def test_embedding_save_and_restore(pred, tmp_path):
    pred.set_image(blob_image())
    ref = pred.predict(points=[[60, 40]])
    path = pred.embedding.save(tmp_path / "emb.npz")
    assert not list(tmp_path.glob(".*tmp*"))
    pred2 = Predictor(pred.model, device="cpu")
    pred2.set_embedding(ImageEmbedding.load(path))
    torch.testing.assert_close(pred2.embedding.features, pred.embedding.features, atol=0, rtol=0)
    out = pred2.predict(points=[[60, 40]])
    assert (out[0] == ref[0]).mean() > 0.9999  # float summation order may differ by 1 ulp
    np.testing.assert_allclose(out[1], ref[1], atol=1e-6)
    np.testing.assert_allclose(out[2], ref[2], atol=1e-5)


def test_embedding_from_another_model_is_refused(pred, tiny_config):
    from napari_sam.models import build_sam

    pred.set_image(blob_image())
    other = build_sam(tiny_config)
    other.model_id = "other:123"
    with pytest.raises(ValueError, match="recompute"):
        Predictor(other, device="cpu").set_embedding(pred.embedding)


def test_device_and_precision_errors(tiny_sam):
    with pytest.raises(ValueError, match="precision"):
        Predictor(tiny_sam, device="cpu", precision="fp64")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Predictor(tiny_sam, device="cuda")
    p = Predictor(tiny_sam, device="auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert p.device.type == expected
    assert p.dtype == (torch.bfloat16 if expected == "cuda" and torch.cuda.is_bf16_supported() else torch.float32)


def test_bf16_on_cpu_when_asked_keeps_masks(tiny_sam):
    img = blob_image()
    ref = Predictor(tiny_sam, device="cpu")
    ref.set_image(img)
    m32, _, _ = ref.predict(box=[40, 20, 80, 60], multimask=False)
    p = Predictor(tiny_sam, device="cpu", precision="bf16")
    p.set_image(img)
    m16, _, _ = p.predict(box=[40, 20, 80, 60], multimask=False)
    inter = (m32 & m16).sum()
    union = (m32 | m16).sum()
    assert union == 0 or inter / union >= 0.9


@pytest.mark.reference
def test_end_to_end_matches_meta_sam_predictor(tmp_path, tiny_config):
    from _reference import import_segment_anything
    from models.test_reference import meta_and_ours

    sa = import_segment_anything()
    meta, ours = meta_and_ours(tiny_config, tmp_path)
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)
    img[40:100, 50:120] = [200, 30, 30]
    ref = sa.SamPredictor(meta)
    ref.set_image(img)
    pred = Predictor(ours, device="cpu", precision="fp32")
    pred.set_image(img, contrast_limits=(0, 255))
    torch.testing.assert_close(pred.embedding.features, ref.features[0], atol=1e-4, rtol=0)
    cases = [
        dict(ours=dict(points=[[70, 80]], labels=[1]), meta=dict(point_coords=np.array([[80, 70]]), point_labels=np.array([1]))),
        dict(ours=dict(box=[40, 50, 100, 120]), meta=dict(box=np.array([50, 40, 120, 100]))),
        dict(
            ours=dict(points=[[70, 80], [10, 10]], labels=[1, 0], box=[40, 50, 100, 120]),
            meta=dict(point_coords=np.array([[80, 70], [10, 10]]), point_labels=np.array([1, 0]), box=np.array([50, 40, 120, 100])),
        ),
    ]
    for case in cases:
        for multimask in (True, False):
            m, s, lg = pred.predict(**case["ours"], multimask=multimask)
            rm, rs, rl = ref.predict(**case["meta"], multimask_output=multimask)
            assert (m == rm).mean() >= 0.999
            np.testing.assert_allclose(s, rs, atol=1e-4)
            np.testing.assert_allclose(lg, rl, atol=1e-3)
            # the low-res logits as a mask prompt
            m2, s2, _ = pred.predict(**case["ours"], mask_input=lg[:1], multimask=multimask)
            rm2, rs2, _ = ref.predict(**case["meta"], mask_input=rl[:1], multimask_output=multimask)
            assert (m2 == rm2).mean() >= 0.999
            np.testing.assert_allclose(s2, rs2, atol=1e-4)


# ---------------------------------------------------------------------------- backend="onnx"

ONNX_CASES = {
    "points": dict(points=[[60, 40], [20, 70]], labels=[1, 0]),
    "box": dict(box=[40, 20, 85, 62]),
    "points+box": dict(points=[[60, 40]], labels=[1], box=[40, 20, 85, 62]),
    "mask": "mask",
    "mask alone": "mask alone",  # no padding point: PyTorch has no sparse token then
}


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    """(torch predictor, onnx predictor), both fp32 on one tiny model, the image set."""
    pytest.importorskip("onnxruntime", reason="pip install 'napari-sam-stacks[onnx]'")
    pytest.importorskip("onnx", reason="pip install 'napari-sam-stacks[onnx]'")
    from napari_sam.models import SamConfig, build_sam
    from tiny_configs import TINY_VIT

    mp = pytest.MonkeyPatch()
    mp.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    torch.manual_seed(0)
    model = build_sam(SamConfig(**TINY_VIT))
    ref = Predictor(model, device="cpu", precision="fp32")
    onx = Predictor(model, device="cpu", precision="fp32", backend="onnx")
    emb = ref.set_image(blob_image())
    onx.set_embedding(emb)
    yield ref, onx
    mp.undo()


@pytest.mark.parametrize("case", list(ONNX_CASES))
@pytest.mark.parametrize("multimask", [True, False])
def test_onnx_backend_equals_torch(onnx_pair, case, multimask):
    ref, onx = onnx_pair
    kwargs = ONNX_CASES[case]
    if kwargs in ("mask", "mask alone"):
        _, _, logits = ref.predict(points=[[60, 40]], multimask=False)
        kwargs = dict(points=[[62, 42]], mask_input=logits[0]) if kwargs == "mask" else dict(
            mask_input=logits[0])
    calls = onx.decoder_calls
    m0, s0, l0 = ref.predict(multimask=multimask, **kwargs)
    m1, s1, l1 = onx.predict(multimask=multimask, **kwargs)
    assert onx.decoder_calls == calls + 1  # counted, and the PyTorch decoder was not used
    assert m1.dtype == bool and m1.shape == m0.shape == (3 if multimask else 1, 120, 90)
    assert s1.dtype == np.float32 and l1.shape == l0.shape
    assert (m0 == m1).mean() >= 0.999
    np.testing.assert_allclose(s1, s0, atol=1e-4)
    np.testing.assert_allclose(l1, l0, atol=1e-3)


def test_onnx_backend_validates_like_torch(onnx_pair):
    _, onx = onnx_pair
    with pytest.raises(ValueError, match="outside the image"):
        onx.predict(points=[[500, 40]])
    with pytest.raises(ValueError, match="at least one prompt"):
        onx.predict()


def test_unknown_backend_is_refused(tiny_sam):
    with pytest.raises(ValueError, match=r"unknown backend 'tensorrt'.*'torch', 'onnx'"):
        Predictor(tiny_sam, device="cpu", backend="tensorrt")


def test_onnx_backend_without_onnxruntime_says_how_to_install(tiny_sam, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(ImportError, match=r'pip install "napari-sam-stacks\[onnx\]"'):
        Predictor(tiny_sam, device="cpu", backend="onnx")


def test_onnx_backend_on_a_tiled_image_says_it_decodes_with_torch(onnx_pair, monkeypatch):
    """A tiled image goes through the windows' PyTorch decoder also with backend='onnx'; a
    warning says so once (it was silent while ``backend`` still said 'onnx')."""
    import warnings

    ref, onx = onnx_pair
    size = onx.img_size
    big = np.zeros((2 * size, 2 * size), np.float32)
    big[size - 20 : size + 20, size - 20 : size + 20] = 1.0

    def not_onnx(*args, **kwargs):
        raise AssertionError("a tiled image reached onnxruntime")

    try:
        onx.set_image(big)
        assert onx.tiled is not None
        monkeypatch.setattr(onx._onnx, "predict", not_onnx)
        with pytest.warns(UserWarning, match="decodes untiled images only"):
            masks, _, _ = onx.predict(points=np.array([[size, size]]), labels=np.ones(1))
        assert masks.shape[1:] == big.shape
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once
            onx.predict(points=np.array([[size + 5, size + 5]]), labels=np.ones(1))
    finally:
        monkeypatch.undo()
        onx.set_embedding(ref.embedding)
