"""Bad inputs to the scripting API (issue #22): each gives an error that names the problem and
what to do, or the documented correct result; and nothing a user gave is changed.

docs/reliability.md lists these cases. Everything runs offline with a tiny random ViT
(tests/tiny_configs.py) and, for segment_volume's bookkeeping, the oracle decoder of
tests/test_volume.py.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import napari_sam as ns
from napari_sam.models import SamConfig, build_sam
from napari_sam.models import registry as reg
from napari_sam.models.registry import ModelDownloadError, ModelSpec
from napari_sam.predictor import ImageEmbedding
from napari_sam.preprocess import to_uint8_rgb
from napari_sam.volume import SlicePrompt
from test_volume import OracleStack, cylinders
from tiny_configs import TINY_VIT

pytestmark = pytest.mark.timeout(300)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam(SamConfig(**TINY_VIT))


@pytest.fixture(scope="module")
def image():
    img = np.full((40, 48), 10, np.uint16)
    img[10:25, 12:30] = 900
    return img


@pytest.fixture(scope="module")
def pred(model, image):
    p = ns.Predictor(model, device="cpu")
    p.set_image(image)
    return p


@pytest.fixture(scope="module")
def stack(image):
    return np.stack([image, image, image])


@pytest.fixture(scope="module")
def emb(model, stack):
    return ns.embed(stack, model, device="cpu")


def _square(dtype_values):
    """A 40 x 40 image: background ``lo``, a square of ``hi``."""
    lo, hi = dtype_values
    img = np.full((40, 40), lo)
    img[10:20, 10:20] = hi
    return img


def _tree_digest(path: Path) -> str:
    """Hash of every file (relative name and bytes) under ``path``."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _says(err, *phrases):
    text = str(err.value)
    for p in phrases:
        assert re.search(p, text), f"{p!r} not in message: {text}"


# ------------------------------------------------------------- images (silent wrong results)
@pytest.mark.parametrize(
    "values",
    [(0.0, 1e39), (0.0, 1e300), (-1e300, 1e300), (1e8, 1e8 + 0.00255), (0, 2**62)],
    ids=["1e39", "1e300", "pm1e300", "tiny_range_on_1e8", "int64_2e62"],
)
def test_extreme_float_and_int_ranges_are_not_blank(values):
    img = _square(values).astype(np.int64 if isinstance(values[1], int) else np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        out = to_uint8_rgb(img)[..., 0]
    assert out[15, 15] == 255 and out[0, 0] == 0


def test_bool_image_is_black_and_white():
    img = np.zeros((40, 40), bool)
    img[3:5, 3:5] = True  # 0.25 % of the pixels: the percentiles alone would give a blank image
    out = to_uint8_rgb(img)[..., 0]
    assert set(np.unique(out)) == {0, 255} and out[3, 3] == 255


def test_sparse_image_is_not_blank():
    img = np.zeros((100, 100), np.uint16)
    img[50, 50] = 1000  # one bright pixel: both percentiles are 0
    out = to_uint8_rgb(img)[..., 0]
    assert out[50, 50] == 255 and out[0, 0] == 0


def test_inf_values_are_white_or_black_nan_as_around_it():
    img = np.array([[np.inf, -np.inf, np.nan, 0.0, 1.0, 2.0]])
    out = to_uint8_rgb(img, percentiles=(0, 100))[..., 0]
    np.testing.assert_array_equal(out[[0, 0, 0, 0, 0], [0, 1, 3, 4, 5]], [255, 0, 0, 128, 255])
    assert 0 < out[0, 2] < 255  # the weighted mean of the values beside it (0, 0, 255, 128)


@pytest.mark.parametrize(
    "bad, exc, phrases",
    [
        (np.zeros((3, 40, 50)), ValueError, ["channels-first", r"np\.moveaxis\(image, 0, -1\)"]),
        (np.zeros((1, 40, 50)), ValueError, ["one slice of a stack", r"image\[0\]"]),
        (np.zeros((40, 50, 2)), ValueError, ["2 channels", r"image\[\.\.\., 0\]"]),
        (np.zeros(40), ValueError, [r"\(Y, X\)", "2D array"]),
        (np.zeros((2, 2, 40, 40)), ValueError, [r"\(Y, X\)", r"napari_sam\.embed"]),
        (np.zeros((0, 40)), ValueError, ["empty", "non-empty"]),
        (np.zeros((40, 40), complex), ValueError, ["not numeric", "integer or float"]),
        ("cells.tif", TypeError, ["read the file first", "imread"]),
        ([[1, 2], [3]], ValueError, ["not a numeric array", r"\(Y, X\)"]),
    ],
    ids=["channels_first", "one_slice", "two_channels", "1d", "4d", "empty", "complex", "path",
         "ragged"],
)
def test_bad_images_name_the_problem_and_fix(pred, bad, exc, phrases):
    with pytest.raises(exc) as err:
        pred.set_image(bad)
    _says(err, *phrases)


def test_bad_contrast_limits(pred, image):
    for bad in [(10, 0), (np.nan, 1), (1, 2, 3), "auto"]:
        with pytest.raises(ValueError) as err:
            pred.set_image(image, contrast_limits=bad)
        _says(err, "contrast_limits must be two finite numbers", "high >= low")


# ---------------------------------------------------------------------------- prompts
@pytest.mark.parametrize(
    "kwargs, exc, phrases",
    [
        (dict(points=np.zeros((0, 2))), ValueError, ["points is empty", "points=None"]),
        (dict(points="30,30"), TypeError, ["string '30,30'", r"\[\[30, 40\]\]"]),
        (dict(points=[[1, 2, 3]]), ValueError, [r"shape \(P, 2\)", r"got shape \(1, 3\)"]),
        (dict(points=[[100, 5]]), ValueError, [r"\(100\.0, 5\.0\) is outside", "rows in 0..39"]),
        (dict(points=[[np.nan, 5]]), ValueError, ["not finite"]),
        (dict(points=[[5, 5], [6, 6]], labels=[1]), ValueError, ["2 points but 1 labels",
                                                                 "one label per point"]),
        (dict(points=[[5, 5]], labels=[-1]), ValueError, ["labels must be 1 .positive. or 0"]),
        (dict(labels=[1], box=[1, 1, 5, 5]), ValueError, ["labels were given without points"]),
        (dict(), ValueError, ["give at least one prompt"]),
        (dict(box=[20, 30, 10, 5]), ValueError, ["inverted", r"did you mean \(10\.0, 5\.0, 20\.0, "
                                                             r"30\.0\)"]),
        (dict(box=[100, 100, 120, 120]), ValueError, ["outside the image of shape",
                                                      r"\(row0, col0, row1, col1\)"]),
        (dict(box=[1, 2, 3]), ValueError, ["4 finite numbers"]),
        (dict(box="1,2,3,4"), TypeError, ["box must be", "string"]),
        (dict(points=[[5, 5]], mask_input=np.zeros((40, 48))), ValueError,
         [r"shape \(64, 64\)", r"logits\[i\]", r"predictor\.mask_prompt\(mask\)"]),
        (dict(points=[[5, 5]], mask_input=np.full((64, 64), np.nan)), ValueError,
         ["4096 NaN or inf", "finite logits"]),
    ],
    ids=["empty_points", "string_points", "points_3_cols", "point_outside", "point_nan",
         "labels_length", "negative_label", "labels_without_points", "no_prompt",
         "inverted_box", "box_outside", "box_3_numbers", "string_box", "mask_input_shape",
         "mask_input_nan"],
)
def test_bad_prompts_name_the_problem_and_fix(pred, kwargs, exc, phrases):
    with pytest.raises(exc) as err:
        pred.predict(**kwargs)
    _says(err, *phrases)


def test_box_partly_outside_is_clipped(pred):
    masks, scores, _ = pred.predict(box=[-5, -5, 100, 100], multimask=False)
    same, _, _ = pred.predict(box=[0, 0, 39, 47], multimask=False)
    np.testing.assert_array_equal(masks, same)
    assert np.isfinite(scores).all()


def test_predict_before_set_image(model):
    with pytest.raises(RuntimeError) as err:
        ns.Predictor(model, device="cpu").predict(points=[[1, 1]])
    _says(err, "no image is set", r"set_image\(image\)")


def test_nan_weights_are_named_not_returned_as_nan_scores(model, image):
    broken = build_sam(SamConfig(**TINY_VIT))
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.mask_decoder.iou_prediction_head.layers[0].weight.fill_(float("nan"))
    p = ns.Predictor(broken, device="cpu")
    p.set_image(image)
    with pytest.raises(FloatingPointError) as err:
        p.predict(points=[[15, 15]])
    _says(err, "NaN or inf", r"iou_prediction_head\.layers\.0\.weight", "load another checkpoint")
    with torch.no_grad():
        broken.image_encoder.patch_embed.proj.weight.fill_(float("inf"))
    with pytest.raises(FloatingPointError) as err:
        p.set_image(image)
    _says(err, "image encoder produced NaN or inf", r"patch_embed\.proj\.weight")


def test_checkpoint_with_nan_weights_is_refused(model, tmp_path):
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["mask_decoder.iou_token.weight"][0, 0] = float("nan")
    path = tmp_path / "diverged.pt"
    torch.save(sd, path)
    with pytest.raises(ValueError) as err:
        ns.load_model(path)
    _says(err, "diverged.pt", "NaN or inf in 1 tensors", "iou_token", "earlier checkpoint")


# ----------------------------------------------------------------------------- models
def test_predictor_and_embed_accept_a_model_name(stack):
    p = ns.Predictor("demo", device="cpu")
    assert p.model.model_id.startswith("demo:")
    e = ns.embed(stack, "demo", device="cpu")
    assert e.model.model_id == p.model.model_id and e[0].features.shape[0] == 256


@pytest.mark.parametrize("call", ["Predictor", "embed"])
def test_missing_model_says_what_to_pass(call, stack):
    with pytest.raises(TypeError) as err:
        ns.Predictor(None) if call == "Predictor" else ns.embed(stack, None)
    _says(err, "a model is needed, got None", r"load_model\(name_or_path\)", "Predictor\\('demo'\\)")


def test_state_dict_instead_of_model(model):
    with pytest.raises(TypeError) as err:
        ns.Predictor(model.state_dict())
    _says(err, "a state_dict", r"torch\.save")


def test_load_model_none():
    with pytest.raises(TypeError) as err:
        ns.load_model(None)
    _says(err, "model name", "demo, vit_b", "checkpoint file", "got None")


@pytest.mark.parametrize("name, close", [("vit_bb", "'vit_b'"), ("demoo", "'demo'"),
                                         ("VIT_L", "'vit_l'")])
def test_unknown_model_name_suggests_close_matches(name, close):
    with pytest.raises(ValueError) as err:
        ns.load_model(name)
    _says(err, f"did you mean {close}", "known models: demo")


def test_missing_checkpoint_path_and_folder(tmp_path):
    with pytest.raises(ValueError) as err:
        ns.load_model(str(tmp_path / "weights" / "sam.pth"))
    _says(err, "checkpoint file not found", re.escape(str(tmp_path / "weights" / "sam.pth")))
    with pytest.raises(ValueError) as err:
        ns.load_model(str(tmp_path))
    _says(err, "is a folder", "checkpoint file inside it")


def test_not_a_sam_state_dict(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(torch.nn.Linear(3, 3).state_dict(), path)
    with pytest.raises(ValueError) as err:
        ns.load_model(path)
    _says(err, "does not look like a Segment Anything model")


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("kind", ["pickled_code", "whole_module", "truncated", "text"])
def test_unreadable_checkpoint_never_advises_weights_only_false(kind, tmp_path, model):
    path = tmp_path / f"{kind}.pt"
    if kind == "pickled_code":
        torch.save({"model": _Payload()}, path)
    elif kind == "whole_module":
        torch.save(torch.nn.Linear(2, 2), path)
    elif kind == "truncated":
        torch.save(model.state_dict(), path)
        path.write_bytes(path.read_bytes()[:2000])
    else:
        path.write_text("not a checkpoint")
    with pytest.raises(ValueError) as err:
        ns.load_model(path)
    text = str(err.value)
    assert "weights_only=False" not in text and "weights_only` set to `False" not in text
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no PyTorch text
    if kind in ("pickled_code", "whole_module"):
        _says(err, "Python objects besides tensors", "never runs code",
              r"torch\.save\(model\.state_dict\(\), path\)")
    else:
        _says(err, "not a readable PyTorch checkpoint", "Download it again")


# ----------------------------------------------------------------------- downloads, cache
@pytest.fixture
def tiny_spec(tmp_path, model, monkeypatch):
    src = tmp_path / "server" / "tiny.pth"
    src.parent.mkdir()
    torch.save(model.state_dict(), src)
    spec = ModelSpec(name="tiny_dl", architecture="vit_b", url=src.as_uri(),
                     sha256=hashlib.sha256(src.read_bytes()).hexdigest(),
                     size=src.stat().st_size, filename="tiny_dl.pth", description="test",
                     source="test")
    monkeypatch.setitem(reg.REGISTRY, spec.name, spec)
    return spec


def test_download_from_file_url_loads(tiny_spec, tmp_path, monkeypatch, model):
    monkeypatch.setenv(reg.CACHE_ENV, str(tmp_path / "cache"))
    loaded = ns.load_model("tiny_dl")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_cache_dir_that_is_a_file(tiny_spec, tmp_path, monkeypatch):
    afile = tmp_path / "not_a_folder"
    afile.write_text("x")
    monkeypatch.setenv(reg.CACHE_ENV, str(afile))
    with pytest.raises(ModelDownloadError) as err:
        reg.fetch("tiny_dl")
    _says(err, "is a file, not a folder", reg.CACHE_ENV, "Set .* to a folder")
    assert afile.read_text() == "x"


def test_partial_checkpoint_in_read_only_cache(tiny_spec, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny_dl.pth").write_bytes(b"partial")
    monkeypatch.setenv(reg.CACHE_ENV, str(cache))

    def refuse(path):  # what rename does in a read-only folder (root ignores chmod)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(reg, "set_aside", refuse)
    with pytest.raises(ModelDownloadError) as err:
        reg.fetch("tiny_dl")
    assert (cache / "tiny_dl.pth").read_bytes() == b"partial"
    _says(err, "wrong size", "cannot be moved aside", "read-only", reg.CACHE_ENV,
          re.escape(tiny_spec.url), re.escape(str(cache / "tiny_dl.pth")), tiny_spec.sha256)


# ------------------------------------------------------------------------- embed, store
def _user_group(path: Path):
    g = zarr.open_group(str(path), mode="w")
    raw = g.create_array("raw", shape=(3, 40, 48), dtype="uint16", chunks=(1, 40, 48))
    raw[:] = 7
    g.attrs["owner"] = "user"
    return g


def test_store_refuses_a_users_group_and_leaves_it_as_is(model, tmp_path):
    path = tmp_path / "user.zarr"
    g = _user_group(path)
    before = _tree_digest(path)
    with pytest.raises(ValueError) as err:
        ns.embed(g["raw"], model, store=path, device="cpu")
    _says(err, "napari-sam did not create", "'raw'", "never writes into or deletes",
          re.escape(str(tmp_path / "user.embeddings.zarr")))
    assert _tree_digest(path) == before


def test_store_refuses_the_ome_zarr_group_the_stack_came_from(model, tmp_path):
    path = tmp_path / "image.ome.zarr"
    g = zarr.open_group(str(path), mode="w")
    g.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "0"}]}]
    a = g.create_array("0", shape=(3, 40, 48), dtype="uint8", chunks=(1, 40, 48))
    a[:] = np.arange(3 * 40 * 48).reshape(3, 40, 48) % 251
    before = _tree_digest(path)
    with pytest.raises(ValueError) as err:
        ns.embed(a, model, store=path, device="cpu")
    _says(err, "did not create", "'0'")
    assert _tree_digest(path) == before


@pytest.mark.parametrize("what", ["zarr_array", "file", "folder_with_files"])
def test_store_refuses_arrays_files_and_other_folders(model, stack, tmp_path, what):
    path = tmp_path / "target"
    if what == "zarr_array":
        zarr.create_array(store=str(path), shape=(2,), dtype="uint8")[:] = 3
    elif what == "file":
        path.write_text("keep me")
    else:
        path.mkdir()
        (path / "notes.txt").write_text("keep me")
    before = _tree_digest(path) if path.is_dir() else path.read_text()
    with pytest.raises(ValueError) as err:
        ns.embed(stack, model, store=path, device="cpu")
    _says(err, "embeddings.zarr")
    assert (_tree_digest(path) if path.is_dir() else path.read_text()) == before


def test_own_store_with_another_key_replaces_only_its_arrays(model, stack, tmp_path):
    path = tmp_path / "emb.zarr"
    ns.embed(stack, model, store=path, device="cpu", compute=True)
    g = zarr.open_group(str(path), mode="a")
    g.create_array("notes", shape=(2,), dtype="uint8")[:] = 5  # something the user added
    again = ns.embed(stack, model, store=path, device="cpu", compute=True, contrast_limits=(0, 5))
    # new key: recomputed (a store's batch of 3 at 2 threads: 2 slices, then the third
    # padded to one per thread, embeddings.encode_whole_slices)
    assert again.encoder_calls >= 1 and again.stored().all()
    g = zarr.open_group(str(path), mode="r")
    np.testing.assert_array_equal(g["notes"][:], [5, 5])
    assert g.attrs["napari_sam_embeddings"] == {"format": 1}


def test_zarr_array_input_without_contrast_limits(model, stack, tmp_path):
    z = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=stack.shape, dtype=stack.dtype,
                          chunks=(1, *stack.shape[1:]))
    z[:] = stack
    lazy = ns.embed(z, model, device="cpu")
    eager = ns.embed(stack, model, device="cpu")
    assert lazy.contrast_limits == eager.contrast_limits
    torch.testing.assert_close(lazy[1].features, eager[1].features)


def test_list_of_slices_and_bool_stack(model, stack):
    listed = ns.embed(list(stack), model, device="cpu")
    assert listed.shape == stack.shape
    masks = stack > 100
    e = ns.embed(masks, model, device="cpu")
    assert e.contrast_limits == (0.0, 1.0) and torch.isfinite(e[0].features).all()


@pytest.mark.parametrize(
    "bad, kwargs, exc, phrases",
    [
        (np.zeros((3, 3, 20, 20)), {}, ValueError, ["channels-first", r"moveaxis\(stack, 1, -1\)"]),
        (np.zeros((20, 20)), {}, ValueError, [r"\(Z, Y, X\)", "Predictor.set_image"]),
        (np.zeros((2, 2, 5, 20, 20)), {}, ValueError, [r"\(Z, Y, X\)", r"stack\[t\]"]),
        (np.zeros((0, 20, 20)), {}, ValueError, ["empty"]),
        (np.zeros((2, 20, 20)), {"contrast_limits": (5, 1)}, ValueError, ["high >= low"]),
        (np.zeros((2, 20, 20)), {"batch_size": 0}, ValueError, ["batch_size must be"]),
        ("stack.tif", {}, TypeError, ["read it first"]),
        ([np.zeros((20, 20)), np.zeros((10, 10))], {}, ValueError, ["different shapes"]),
    ],
    ids=["channels_first", "2d", "5d", "empty", "contrast_limits", "batch_size", "path",
         "ragged"],
)
def test_bad_stacks_name_the_problem_and_fix(model, bad, kwargs, exc, phrases):
    with pytest.raises(exc) as err:
        ns.embed(bad, model, device="cpu", **kwargs)
    _says(err, *phrases)


# ---------------------------------------------------------------------- segment_volume
def test_segment_volume_given_the_stack_itself(stack, emb):
    with pytest.raises(TypeError) as err:
        ns.segment_volume(stack, {1: [SlicePrompt(0, points=[[5, 5]])]})
    _says(err, r"shape \(3, 40, 48\)", r"emb = napari_sam\.embed\(stack, model\)")
    with pytest.raises(TypeError) as err:
        ns.segment_volume(emb[0], {1: [SlicePrompt(0, points=[[5, 5]])]})
    _says(err, "ImageEmbedding of one 2D image", "Predictor.predict")


def test_same_click_for_two_objects(emb):
    with pytest.raises(ValueError) as err:
        ns.segment_volume(emb, {1: [{"slice": 1, "points": [[20, 20]]}],
                                2: [{"slice": 1, "points": [[20, 20]]}]})
    _says(err, "objects 1 and 2 have the same prompts on slice 1", "its own prompts")


def test_object_that_loses_every_pixel_is_reported_lost():
    gt = cylinders(n_slices=8, objects=((1, (20, 20), 6, 0, 7),))
    prompts = {1: SlicePrompt(3, points=[[20, 20]]), 2: SlicePrompt(3, points=[[21, 21]])}
    with pytest.warns(UserWarning, match=r"objects \[2\] are not in the labels"):
        res = ns.segment_volume(OracleStack(gt), prompts)
    assert set(np.unique(res.labels)) == {0, 1}
    assert set(res.slice_range) == set(res.stop_reasons) == set(res.scores) == {1}
    assert res.object_ids == [1] and list(res.lost) == [2]


def test_lost_objects_are_warned_once_and_the_dock_says_them_instead():
    """segment_volume (SAM 1) warns a LostObjectsWarning naming the ids and why; with
    ``warn_lost=False`` (the dock, which says them in its status line) it warns nothing and
    touches no warning filter (``catch_warnings`` around it was not thread-safe)."""
    from napari_sam.annotate.stack_actions import _describe_lost
    from napari_sam.volume.result import LostObjectsWarning

    gt = cylinders(n_slices=8, objects=((1, (20, 20), 6, 0, 7),))
    prompts = {1: SlicePrompt(3, points=[[20, 20]]), 2: SlicePrompt(3, points=[[21, 21]])}
    with pytest.warns(LostObjectsWarning) as said:
        res = ns.segment_volume(OracleStack(gt), prompts)
    assert [str(w.message) for w in said] == [
        f"objects [2] are not in the labels: {res.lost[2]} (see VolumeResult.lost)"]
    assert said[0].filename == __file__
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        again = ns.segment_volume(OracleStack(gt), prompts, warn_lost=False)
    assert quiet == [] and again.lost == res.lost
    assert _describe_lost(again) == f" Not in the preview: object 2 ({res.lost[2]})."
    assert _describe_lost(ns.segment_volume(OracleStack(gt), {1: prompts[1]})) == ""


@pytest.mark.parametrize(
    "prompt, phrases",
    [
        ({"slice": 3, "points": [[5, 5]]}, [r"slice 3 is out of range .* 3 slices", r"0\.\.2"]),
        ({"slice": -1, "points": [[5, 5]]}, ["out of range", "negative indices"]),
        ({"slice": 0, "points": [[50, 5]]}, ["outside the slices of shape", "pixels of the"]),
        ({"slice": 0, "mask": np.ones((20, 20), bool)}, [r"mask has shape \(20, 20\)",
                                                         "same stack"]),
        ({"slice": 0, "box": [30, 30, 10, 10]}, ["inverted"]),
        ({"slice": 0, "points": [[5, 5]], "labels": [1, 1]}, ["one label per point"]),
        ({"z": 0, "points": [[5, 5]]}, ["unknown slice prompt keys", "allowed"]),
    ],
    ids=["slice_past_end", "negative_slice", "point_outside", "mask_shape", "inverted_box",
         "labels_length", "unknown_key"],
)
def test_bad_volume_prompts(emb, prompt, phrases):
    with pytest.raises(ValueError) as err:
        ns.segment_volume(emb, {1: [prompt]})
    _says(err, *phrases)


# ------------------------------------------------------------------ nothing is modified
def test_inputs_are_byte_identical_after_every_call(model, tmp_path):
    rng = np.random.default_rng(3)
    image = rng.normal(100, 5, (40, 48)).astype(np.float32)
    image[10:25, 12:30] += 50
    image[0, 0] = np.nan
    stack = np.stack([image, image * 1.01, image * 0.99])
    points, labels = np.array([[15.0, 20.0], [2.0, 2.0]]), np.array([1, 0])
    box = np.array([9.0, 11.0, 26.0, 31.0])
    mask = np.zeros((40, 48), bool)
    mask[12:20, 14:26] = True
    zpath = tmp_path / "input.zarr"
    g = zarr.open_group(str(zpath), mode="w")
    zin = g.create_array("0", shape=stack.shape, dtype=stack.dtype, chunks=(1, 40, 48))
    zin[:] = stack
    prompts = {1: [SlicePrompt(1, points=points, labels=labels)],
               2: [{"slice": 0, "mask": mask}], 3: [{"slice": 2, "box": box}]}
    inputs = [image, stack, points, labels, box, mask]
    before = [a.tobytes() for a in inputs]
    zbefore = _tree_digest(zpath)

    p = ns.Predictor(model, device="cpu")
    p.set_image(image)
    _, _, logits = p.predict(points=points, labels=labels, box=box)
    logit_in = logits[:1].copy()
    p.predict(points=points, labels=labels, mask_input=logit_in)
    np.testing.assert_array_equal(logit_in, logits[:1])
    emb = ns.embed(zin, model, device="cpu", store=tmp_path / "emb.zarr", compute=True)
    ns.segment_volume(emb, prompts)
    ns.segment_everything(image, model, points_per_side=4, device="cpu")
    ns.segment_everything(emb, points_per_side=4)
    from napari_sam.volume import prompts_from_labels

    lab = np.zeros(stack.shape, np.int32)
    lab[1][mask] = 4
    lab_before = lab.tobytes()
    ns.segment_volume(emb, prompts_from_labels(lab))
    assert lab.tobytes() == lab_before
    assert [a.tobytes() for a in inputs] == before
    assert _tree_digest(zpath) == zbefore
    assert prompts[2][0]["mask"] is mask and isinstance(prompts[1][0], SlicePrompt)
    assert isinstance(emb[0], ImageEmbedding)


def test_volume_prompt_messages_show_plain_numbers(emb):
    """A point or box outside the stack is named with plain numbers (numpy 2 would print
    np.float64(...) for tuple(array))."""
    from napari_sam import segment_volume

    for prompt, shown in (({"slice": 0, "points": [[400, 5]]}, "(400.0, 5.0)"),
                          ({"slice": 0, "box": [300, 300, 310, 310]},
                           "(300.0, 300.0, 310.0, 310.0)")):
        with pytest.raises(ValueError) as err:
            segment_volume(emb, {1: prompt})
        assert shown in str(err.value) and "np.float64" not in str(err.value)


# ------------------------------------------------ a scripter's mistakes (helper, session 29)
def test_one_rgb_image_given_to_embed_is_refused_not_read_as_a_stack(model):
    """``embed(rgb)`` of one (Y, X, 3) image made 128 "slices" of 128 x 3 px, silently; a
    segment everything on them ran for 7 minutes."""
    rgb = np.zeros((64, 48, 3), np.uint8)
    with pytest.raises(ValueError) as err:
        ns.embed(rgb, model, device="cpu")
    _says(err, r"\(64, 48, 3\) looks like one RGB image", r"image\[None\]", "Predictor.set_image")
    with pytest.warns(UserWarning, match=r"read as 48 slices of 40 x 6 px.*"
                                         r"np\.moveaxis\(stack, -1, 0\)"):
        ns.embed(np.zeros((48, 40, 6), np.uint16), model, device="cpu")


def test_a_napari_layer_given_for_an_array_says_to_pass_its_data(model, pred, emb):
    """A napari layer was refused as "slices of different shapes" or "dtype object"."""
    napari_layers = pytest.importorskip("napari.layers", reason="napari is not installed")
    layer = napari_layers.Image(np.zeros((3, 40, 48), np.uint16), name="nuclei")
    for call in (lambda: ns.embed(layer, model, device="cpu"),
                 lambda: pred.set_image(layer),
                 lambda: ns.segment_everything(layer, model, device="cpu")):
        with pytest.raises(TypeError) as err:
            call()
        _says(err, "got the napari Image layer 'nuclei'", r"layer\.data",
              r"contrast_limits=layer\.contrast_limits")


def test_a_binary_mask_given_as_mask_input_is_refused_at_any_size(model, pred):
    """On an image whose low-resolution side equals its own (128 px with the demo model) a
    bool mask was read as logits and gave empty masks; ``mask_prompt`` converts it."""
    n = pred.low_res_size
    for mask in (np.zeros((n, n), bool), np.zeros((n, n), np.uint8)):
        with pytest.raises(ValueError) as err:
            pred.predict(points=[[15, 20]], mask_input=mask)
        _says(err, f"mask_input is a {mask.dtype} mask", "low-resolution logits",
              r"predictor\.mask_prompt\(mask\)")
    full = np.zeros((40, 48), bool)
    full[10:25, 12:30] = True
    logits = pred.mask_prompt(full)
    assert logits.shape == (n, n) and logits.dtype == np.float32
    assert logits.max() > 5 and logits.min() < -5
    masks, scores, _ = pred.predict(points=[[15, 20]], mask_input=logits, multimask=False)
    assert masks.shape == (1, 40, 48) and np.isfinite(scores).all()
    with pytest.raises(ValueError, match=r"\(40, 48\)"):
        pred.mask_prompt(np.zeros((20, 20), bool))


def test_a_label_image_given_as_one_objects_mask_is_refused(emb):
    """``{"mask": labels[z]}`` with many ids took every labelled pixel as one object."""
    labels = np.zeros((40, 48), np.uint16)
    labels[5:10, 5:10], labels[20:30, 20:30], labels[30:35, 5:10] = 3, 7, 9
    with pytest.raises(ValueError) as err:
        ns.segment_volume(emb, {1: [{"slice": 1, "mask": labels}]})
    _says(err, "slice 1", r"holds 3 label ids \(3, 7, 9\)", r"labels == 3",
          r"napari_sam\.volume\.prompts_from_labels\(labels, slice=1\)")
    res = ns.segment_volume(emb, {1: [{"slice": 1, "mask": labels == 7}]})
    assert res.labels[1][25, 25] == 1
    one = (labels == 7).astype(np.uint8) * 255  # one value: a mask, as before
    assert ns.segment_volume(emb, {1: [{"slice": 1, "mask": one}]}).labels[1][25, 25] == 1


def test_an_object_whose_prompts_give_no_pixel_is_not_said_lost_to_other_objects():
    """A box without area gave "their masks lost every pixel to other objects" where there
    was no other object (helper walk-through, session 29)."""
    gt = cylinders(n_slices=8, objects=((1, (20, 20), 6, 0, 7),))
    with pytest.warns(UserWarning, match=r"objects \[2\] are not in the labels: the model gave "
                                         "an empty mask for its prompts"):
        res = ns.segment_volume(OracleStack(gt), {1: SlicePrompt(3, points=[[20, 20]]),
                                                  2: SlicePrompt(3, points=[[2, 38]])})
    assert "empty mask for its prompts" in res.lost[2] and "other objects" not in res.lost[2]
    assert set(np.unique(res.labels)) == {0, 1}


def test_negative_points_alone_warn_and_two_boxes_point_to_predict_batch(pred):
    """Negative points alone gave empty masks without a word; two boxes were "8 numbers"."""
    with pytest.warns(UserWarning, match="only negative points .* add a positive point or a box"):
        pred.predict(points=[[15, 20]], labels=[0])
    with pytest.raises(ValueError) as err:
        pred.predict(box=[[5, 5, 20, 20], [22, 22, 35, 40]])
    _says(err, "got 2 boxes", r"Predictor\.predict_batch\(boxes=\.\.\.\)")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred.predict(points=[[15, 20], [30, 40]], labels=[1, 0])  # a positive one: no word


def test_mask_prompt_on_a_tiled_image_says_what_to_do(model):
    """The advice for a bool mask_input led to mask_prompt, which said only "the image is
    tiled ... use predict()" (the reviewer, session 29)."""
    p = ns.Predictor(model, device="cpu")
    p.set_image(np.random.default_rng(0).random((4 * model.img_size, 4 * model.img_size)))
    assert p.tiled is not None
    with pytest.raises(RuntimeError, match="set the image with tiling=None to prompt with a mask"):
        p.mask_prompt(np.zeros((4 * model.img_size,) * 2, bool))
