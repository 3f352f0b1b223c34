"""Images a script gives that SAM cannot see (session 34): a constant or all-NaN image gave
three masks with scores near 0.3 and no word, masks that follow the prompts alone."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import napari_sam as ns
from napari_sam import synthetic


@pytest.fixture(scope="module")
def pred():
    return ns.Predictor(ns.load_model("demo"), device="cpu", precision="fp32")


@pytest.mark.parametrize(("image", "words"), [
    (np.full((64, 64), 7, np.uint16), "every pixel 7"),
    (np.full((64, 64), np.nan, np.float32), "no pixel holds a finite value"),
    (np.where(np.eye(64, dtype=bool), np.nan, 0.5).astype(np.float32), "every pixel 0.5"),
    (np.full((64, 64, 3), (200, 0, 0), np.uint8), r"every pixel \(200, 0, 0\)"),
])
def test_a_constant_image_warns_where_the_script_set_it(pred, image, words):
    with pytest.warns(UserWarning, match=f"the image is constant \\({words}\\): SAM sees a "
                                         "blank image") as record:
        pred.set_image(image)
    assert record[0].filename == __file__  # points at the caller's line, not ours


def test_an_image_with_structure_does_not_warn(pred):
    image = synthetic.nuclei_2d((64, 64), seed=3).image
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred.set_image(image)
        pred.set_image(np.pad(np.zeros((63, 64), np.uint8), ((0, 1), (0, 0)),
                              constant_values=1))  # one bright row is structure


def test_embeddings_print_as_one_line_not_their_tensors(pred):
    """``pred.tiled`` (docs/tiling.md) printed every window's tensor in a notebook: 115,000
    characters for a 1200 px image."""
    emb = pred.set_image(synthetic.nuclei_2d((100, 100), seed=3).image)
    assert repr(emb) == (f"ImageEmbedding(features (256, 32, 32) float32 on cpu, original_size="
                         f"(100, 100), input_size=(256, 256), model_id={emb.model_id!r})")
    tiled = pred.set_image(synthetic.nuclei_2d((600, 600), seed=3).image)
    assert pred.tiled is tiled and "\n" not in repr(tiled) and len(repr(tiled)) < 300
    assert repr(tiled).startswith(f"TiledEmbedding({tiled.tiling!r}: {len(tiled.embeddings)} "
                                  "window embeddings, model_id=")


def test_stack_embeddings_say_what_they_hold(tmp_path):
    stack = np.stack([synthetic.nuclei_2d((64, 64), seed=s).image for s in (1, 2, 3)])
    emb = ns.embed(stack, "demo", device="cpu")
    assert repr(emb) == ("StackEmbeddings(3 slices of 64 x 64 px, 0 in memory, model_id="
                         f"{emb.model.model_id!r})")
    tiled = ns.embed(np.pad(stack[:1], ((0, 0), (0, 536), (0, 536))), "demo", device="cpu",
                     store=tmp_path / "e.zarr")
    assert repr(tiled) == (f"TiledStackEmbeddings(1 slice of 600 x 600 px in {tiled.tiling!r}"
                           f", store={str(tmp_path / 'e.zarr')!r})")
