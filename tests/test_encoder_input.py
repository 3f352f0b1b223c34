"""``napari_sam.preprocess.encoder_input`` (the ONNX encoder's input, docs/onnx.md) with the
``export.json`` of an older export and with a JSON file that is no export: the first ONNX
exports recorded no input smoothing (``preprocessing.smoothing``), and ``encoder_input``
failed on them with ``KeyError: 'smoothing'``; another file's JSON failed with a bare
``KeyError``."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.preprocess import encoder_input

#: An export.json as the first ONNX exports wrote it (no "smoothing", no "thin_strips").
FIRST_EXPORT = {
    "format": "napari-sam-onnx", "format_version": 1, "input_size": 64,
    "pixel_mean": [123.675, 116.28, 103.53], "pixel_std": [58.395, 57.12, 57.375],
    "preprocessing": {"contrast": {"percentiles": [0.5, 99.5]}},
}


def test_an_export_without_smoothing_is_read_as_unsmoothed():
    image = np.random.default_rng(0).integers(0, 4000, (40, 30)).astype(np.uint16)
    now = {**FIRST_EXPORT, "preprocessing": {**FIRST_EXPORT["preprocessing"],
                                             "smoothing": {"sigma": 0.0}}}
    x, spec = encoder_input(image, FIRST_EXPORT)
    want, want_spec = encoder_input(image, now)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert spec == want_spec and spec.input_size == (64, 48)
    np.testing.assert_array_equal(x, want)


def test_a_json_that_is_no_export_is_named():
    with pytest.raises(ValueError) as err:
        encoder_input(np.zeros((8, 8), np.uint8), {"model_id": "vit_b", "input_size": 1024})
    assert str(err.value) == (
        "meta is not an ONNX export's export.json (it has no pixel_mean, pixel_std, "
        "preprocessing.contrast.percentiles); pass json.load(open('EXPORT/export.json')) of "
        "the folder `napari-sam export onnx` wrote")


def test_a_stack_given_by_mistake_is_refused_clearly():
    with pytest.raises(ValueError, match=r"got shape \(5, 20, 30\); for stacks use"):
        encoder_input(np.zeros((5, 20, 30), np.uint8), FIRST_EXPORT)
