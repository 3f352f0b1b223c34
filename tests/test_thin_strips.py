"""Thin strips (walk-through F, session 38): an image or tiling window whose short side fills a
small part of the model input was padded with the pixel mean, and the strip itself read as one
object against that padding. On a 20 x 5000 px image with one 10 x 10 px bright square, segment
everything reported full-height blocks of background and lost the square, and a click on the
square gave about 1700 px. Thin inputs are now padded with a mirror image of themselves
(napari_sam.preprocess.pad_thin_input); ordinary images are padded as before (Meta's
equivalence: tests/models/test_reference.py, tests/test_automatic.py)."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.preprocess import ResizeSpec, is_thin, pad_thin_input


def _square_strip(shape=(20, 5000)):
    a = np.full(shape, 20, np.uint8)
    r0, c0 = shape[0] // 2 - 5, shape[1] // 2 - 5
    a[r0:r0 + 10, c0:c0 + 10] = 200
    sq = np.zeros(shape, bool)
    sq[r0:r0 + 10, c0:c0 + 10] = True
    return a, sq, (r0 + 5, c0 + 5)


def _iou(a, b) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_ordinary_inputs_are_not_touched_and_strips_are_mirrored():
    for shape in [(256, 256), (128, 128), (64, 256), (1024, 300), (300, 1000)]:
        spec = ResizeSpec.for_image(shape, 256)
        x = np.zeros((1, *spec.input_size, 3), np.uint8)
        assert pad_thin_input(x, spec) is x, shape  # normalize_and_pad pads it, as Meta does
    spec = ResizeSpec.for_image((20, 256), 256)
    assert is_thin(spec)
    x = np.arange(20, dtype=np.uint8)[None, :, None, None] * np.ones((1, 20, 256, 3), np.uint8)
    out = pad_thin_input(x, spec)
    assert out.shape == (1, 256, 256, 3)
    assert (out[:, :20] == x).all()
    assert (out[0, 20:40, 0, 0] == np.arange(20)[::-1]).all()  # the strip, mirrored


@pytest.fixture(scope="module")
def strip_result():
    model = ns.load_model("demo")
    pred = ns.Predictor(model, device="cpu")
    a, sq, click = _square_strip()
    tiled = pred.set_image(a)  # 5000 px: tiled in windows of 20 x 256 px
    masks, scores, _ = pred.predict(points=[click], labels=[1])
    res = ns.segment_everything(tiled, model, image=a, device="cpu")
    return sq, masks[int(np.argmax(scores))], res.labels


def test_a_click_on_the_square_of_a_thin_strip_gives_the_square(strip_result):
    sq, mask, _ = strip_result
    assert mask.sum() < 200, mask.sum()  # was 1711 px: a block of background around it
    assert _iou(mask, sq) >= 0.7


def test_segment_everything_on_a_thin_strip_finds_the_square_and_no_background(strip_result):
    sq, _, labels = strip_result
    ids = [int(i) for i in np.unique(labels[labels > 0])]
    assert ids, "nothing was found"
    best = max(_iou(labels == i, sq) for i in ids)
    assert best >= 0.7, best  # was 0.05: the square lay inside a block of background
    background = [i for i in ids if (labels == i).sum() > 4 * sq.sum()]
    assert not background, [(labels == i).sum() for i in background]


def test_a_strip_shrunk_whole_to_the_model_input_is_warned_about():
    pred = ns.Predictor(ns.load_model("demo"), device="cpu")
    a, _, _ = _square_strip((20, 5000))
    with pytest.warns(UserWarning, match=r"thin strip.*1 x 256 px.*tiling=True"):
        pred.set_image(a, tiling=None)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred.set_image(_square_strip((20, 256))[0], tiling=None)  # kept at full resolution
        pred.set_image(_square_strip((128, 128))[0], tiling=None)
