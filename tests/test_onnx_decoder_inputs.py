"""OnnxDecoder.predict checks and normalises prompts as Predictor.predict does.

It used to pass them to onnxruntime unchecked: a point outside the image, a NaN point, label
7 or an inverted box gave empty or junk masks silently, one label for two points gave
onnxruntime's raw ``InvalidArgument`` (and a red log line on stderr), and a box partly
outside the image gave another mask than ``Predictor.predict``, which clips it. Now both
run the checks of :mod:`napari_sam.prompts`, so each bad prompt raises the same error, and
the masks are those of ``Predictor.predict(..., boundary="threshold")`` (the ONNX decoder
cuts at the model's threshold; the demo model's default boundary is "edge").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="pip install 'napari-sam-stacks[onnx]'")
pytest.importorskip("onnxruntime", reason="pip install 'napari-sam-stacks[onnx]'")

import napari_sam as ns  # noqa: E402
from napari_sam.export import OnnxDecoder  # noqa: E402
from napari_sam.synthetic import nuclei_2d  # noqa: E402

SHAPE = (100, 120)  # (rows, cols) of the test image


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(predictor, its embedding of a 100 x 120 image, the demo decoder in onnxruntime)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pred = ns.Predictor("demo", device="cpu", precision="fp32")
        emb = pred.set_image(nuclei_2d(SHAPE, seed=0).image)
        folder = tmp_path_factory.mktemp("onnx_inputs") / "demo"
        ns.export_onnx(pred.model, folder, encoder=False)
        yield pred, emb, OnnxDecoder(folder, threads=1)
    finally:
        torch.set_num_threads(threads)


NAN_MASK = np.full((128, 128), np.nan, np.float32)

# kwargs of predict -> (error type, a fragment of Predictor.predict's message)
BAD_PROMPTS = {
    "point_outside": (dict(points=[[500, 60]], labels=[1]), ValueError,
                      "point (row, col) = (500.0, 60.0) is outside the image of shape (100, 120)"),
    "point_nan": (dict(points=[[np.nan, 3]], labels=[1]), ValueError,
                  "point (row, col) = (nan, 3.0) is not finite"),
    "label_7": (dict(points=[[50, 60]], labels=[7]), ValueError,
                "labels must be 1 (positive) or 0 (negative), got (7.0,)"),
    "inverted_box": (dict(box=[50, 60, 10, 10]), ValueError,
                     "box (50.0, 60.0, 10.0, 10.0) is inverted: need row1 >= row0 and col1 >= "
                     "col0 (row0, col0, row1, col1); did you mean (10.0, 10.0, 50.0, 60.0)?"),
    "two_points_one_label": (dict(points=[[50, 60], [1, 1]], labels=[1]), ValueError,
                             "got 2 points but 1 labels; give one label per point"),
    "box_outside": (dict(box=[200, 200, 300, 300]), ValueError,
                    "box (200.0, 200.0, 300.0, 300.0) lies outside the image of shape (100, 120)"),
    "box_3_numbers": (dict(box=[1, 2, 3]), ValueError, "box must be 4 finite numbers"),
    "empty_points": (dict(points=np.zeros((0, 2))), ValueError, "points is empty (shape (0, 2))"),
    "points_3_cols": (dict(points=[[1, 2, 3]]), ValueError,
                      "points must have shape (P, 2) as (row, col) pairs"),
    "string_points": (dict(points="30,30"), TypeError, "got the string '30,30'"),
    "labels_without_points": (dict(labels=[1], box=[10, 10, 50, 50]), ValueError,
                              "labels were given without points"),
    "mask_input_nan": (dict(points=[[50, 60]], mask_input=NAN_MASK), ValueError,
                       "mask_input has 16384 NaN or inf values; give finite logits"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_PROMPTS))
def test_a_bad_prompt_raises_the_predictors_error(setup, case, capfd):
    pred, emb, dec = setup
    kwargs, error, fragment = BAD_PROMPTS[case]
    with pytest.raises(error) as want:
        pred.predict(**kwargs, boundary="threshold")
    assert fragment in str(want.value)
    capfd.readouterr()
    with pytest.raises(error) as got:
        dec.predict(emb, **kwargs)
    assert str(got.value) == str(want.value)
    assert capfd.readouterr().err == ""  # no onnxruntime log line: nothing reached it


def _assert_same(got, want, *, exact_logits=False):
    masks, scores, logits = got
    assert masks.dtype == bool and masks.shape == want[0].shape
    np.testing.assert_array_equal(masks, want[0])
    np.testing.assert_allclose(scores, want[1], atol=1e-4, rtol=0)
    if exact_logits:
        np.testing.assert_array_equal(logits, want[2])
    else:
        np.testing.assert_allclose(logits, want[2], atol=1e-3, rtol=0)


@pytest.mark.parametrize("box", [[10, 10, 500, 600], [-20, -5, 60, 70]])
def test_a_box_partly_outside_is_clipped_as_the_predictor_clips_it(setup, box):
    pred, emb, dec = setup
    clipped = np.clip(box, 0, [99, 119, 99, 119]).tolist()
    got = dec.predict(emb, box=box)
    _assert_same(got, dec.predict(emb, box=clipped), exact_logits=True)
    want = pred.predict(box=clipped, boundary="threshold")
    _assert_same(got, want)
    _assert_same(got, pred.predict(box=box, boundary="threshold"))
    assert got[0][0].sum() > 0  # the box holds an object: not an empty mask


def test_good_prompts_still_give_the_predictors_masks(setup):
    """Valid prompts in the forms Predictor.predict takes ((2,) point, (1, 4E, 4E) mask,
    multimask=False) give its threshold-cut masks."""
    pred, emb, dec = setup
    _, _, previous = pred.predict(points=[[50, 60]], boundary="threshold")
    for kwargs in (
        dict(points=[50, 60]),
        dict(points=[[50, 60], [5, 5]], labels=[1, 0], box=[30, 40, 70, 90]),
        dict(points=[[50, 60]], mask_input=previous[:1]),
        dict(points=[[50, 60]], labels=[1], multimask=False),
    ):
        _assert_same(dec.predict(emb, **kwargs), pred.predict(**kwargs, boundary="threshold"))


def test_onnx_backend_still_clips_and_refuses_as_the_torch_backend(setup, tmp_path, monkeypatch):
    """Predictor(backend="onnx") passes checked prompts to OnnxDecoder: checking them again
    there changes nothing."""
    pred, _, _ = setup
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    onnx_pred = ns.Predictor(pred.model, device="cpu", precision="fp32", backend="onnx")
    onnx_pred.set_image(nuclei_2d(SHAPE, seed=0).image)
    box = [10, 10, 500, 600]
    _assert_same(onnx_pred.predict(box=box, boundary="threshold"),
                 pred.predict(box=box, boundary="threshold"))  # fmt: skip
    with pytest.raises(ValueError, match=r"\(500\.0, 60\.0\) is outside the image"):
        onnx_pred.predict(points=[[500, 60]])


def test_a_tiled_embedding_is_refused_saying_how_to_embed_it_whole(setup):
    """docs/onnx.md's OnnxDecoder on an image larger than 1.5 model inputs failed with
    "'TiledEmbedding' object has no attribute 'spec'" (helper walk-through, session 30)."""
    pred, _, dec = setup
    image = nuclei_2d((500, 700), seed=1).image
    tiled = pred.set_image(image)
    assert tiled.tiling is not None
    with pytest.raises(ValueError, match=r"embedded in tiles .* set_image\(image, tiling=None\)"):
        dec.predict(tiled, points=[[250, 350]], labels=[1])
    whole = pred.set_image(image, tiling=None)
    masks, scores, _ = dec.predict(whole, points=[[250, 350]], labels=[1])
    assert masks.shape == (3, 500, 700) and np.isfinite(scores).all()
