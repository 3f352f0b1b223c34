"""Review s20 of the SAM 2 paths, as a user meets them: a feature cache given another or an
edited stack, negative points SAM 2 does not use, Meta's SAM 2.0 files, segment everything
and bad ``stop_after_absent`` with a SAM 2 model, a checkpoint file that cannot be read, and
a checkpoint trained from the demo model (not the demo).

Random Hiera-T weights at 128 px (tests/test_sam2_volume.py's ``tiny_sam2``; Meta's file
format from tests/sam2_checkpoint.py)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.models.sam2.feature_cache import Sam2FeatureCache
from napari_sam.sam2_volume import segment_volume_sam2
from sam2_checkpoint import save_sam2_checkpoint
from test_sam2_volume import count_encoder_calls, tiny_sam2

pytestmark = pytest.mark.timeout(600)

PROMPTS = {1: [{"slice": 1, "points": [[12, 14]]}], 2: [{"slice": 4, "points": [[28, 40]]}]}


@pytest.fixture(scope="module")
def model():
    return tiny_sam2()


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(3)
    out = rng.integers(0, 1000, size=(6, 40, 56)).astype(np.uint16)
    out[:, 8:20, 8:22] += 2500  # an object on every slice
    out[:, 24:34, 34:48] += 1800
    return out


class Thing:
    """A Python object in a checkpoint (weights_only loading refuses it)."""


def _run(stack, model, features=None):
    return segment_volume_sam2(stack, PROMPTS, model, stop_after_absent=None,
                               features=features).labels


# ----------------------------------------------------------------------------- 1: cache
def test_a_cache_given_the_same_slices_reversed_gives_the_labels_of_a_fresh_run(stack, model):
    cache = Sam2FeatureCache()
    _run(stack, model, cache)
    rev = stack[::-1].copy()  # same shape, dtype and contrast limits, other pixels per slice
    fresh = _run(rev, model)
    assert np.array_equal(_run(rev, model, cache), fresh)


def test_a_slice_edited_between_runs_is_encoded_again_and_only_it(stack, model):
    model = tiny_sam2()
    calls = count_encoder_calls(model)
    edited = stack.copy()
    cache = Sam2FeatureCache()
    _run(edited, model, cache)
    assert len(cache) == 6
    edited[3] = edited[3][::-1, ::-1]  # the same pixel values: the contrast limits stay
    before = len(calls)
    cached = _run(edited, model, cache)
    assert len(calls) - before == 1  # slice 3 only, once
    assert np.array_equal(cached, _run(edited, model))  # what a run without the cache gives
    before = len(calls)
    _run(edited, model, cache)  # unchanged since: nothing encoded
    assert len(calls) == before


def test_an_edit_that_changes_the_contrast_limits_re_encodes_instead_of_failing(stack, model):
    """The GUI keeps one cache per image layer and passes the stack's percentiles: an edit
    that moves them must give a fresh run's labels, not "another contrast mapping"."""
    edited = stack.copy()
    cache = Sam2FeatureCache()
    _run(edited, model, cache)
    edited[2] = edited[2] // 4  # percentiles of the stack change
    assert np.array_equal(_run(edited, model, cache), _run(edited, model))
    assert np.array_equal(
        segment_volume_sam2(edited, PROMPTS, model, contrast_limits=(0, 2000),
                            stop_after_absent=None, features=cache).labels,
        segment_volume_sam2(edited, PROMPTS, model, contrast_limits=(0, 2000),
                            stop_after_absent=None).labels)


# ----------------------------------------------------------------------------- 2: negatives
def test_negative_points_on_a_slice_without_a_positive_are_named_in_a_warning(stack, model):
    neg = {1: [{"slice": 1, "points": [[12, 14]]},
               {"slice": 3, "points": [[12, 14]], "labels": [0]},
               {"slice": 4, "points": [[12, 14], [30, 40]], "labels": [0, 0]}]}
    with pytest.warns(UserWarning) as got:
        res = segment_volume_sam2(stack, neg, model, stop_after_absent=None)
    (w,) = [str(x.message) for x in got]
    assert w.startswith("object 1: the negative points on slices 3, 4 are not used: SAM 2 uses "
                        "negative points only on a slice that also has a positive point, a box "
                        "or a mask of the object; add one there, or propagate with SAM 1 "
                        "re-prompting")
    assert got[0].filename == __file__  # points at the caller's line
    base = segment_volume_sam2(stack, {1: PROMPTS[1]}, model, stop_after_absent=None)
    assert np.array_equal(res.labels, base.labels)  # they were indeed not used
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # negatives with a positive on their slice: no warning
        segment_volume_sam2(stack, {1: [{"slice": 1, "points": [[12, 14], [30, 40]],
                                         "labels": [1, 0]}]}, model, stop_after_absent=2)


def test_an_object_with_only_negative_points_is_refused_with_what_sam2_does(stack, model):
    neg = {1: [{"slice": 2, "points": [[12, 14]], "labels": [0]}]}
    with pytest.raises(ValueError) as err:
        segment_volume_sam2(stack, neg, model)
    assert str(err.value) == (
        "object 1 has only negative points (slices [2]); negative points alone start nothing: "
        "add a positive point, a box or a mask on at least one slice (SAM 2 uses negative "
        "points only on a slice that also has a positive point, a box or a mask of the object)")
    from napari_sam.volume.annotations import normalize_prompts

    with pytest.raises(ValueError, match=r"at least one slice \(negative points on other slices "
                       r"then constrain the propagated masks there\)$"):
        normalize_prompts(neg, stack.shape)  # SAM 1's wording stays


# ----------------------------------------------------------------------------- 3: SAM 2.0
def test_a_sam20_checkpoint_is_named_with_the_sam21_download(tmp_path):
    path = save_sam2_checkpoint(tmp_path / "sam2_hiera_tiny.pt")
    state = torch.load(path, weights_only=True)["model"]
    v20 = {k: v for k, v in state.items()
           if not k.startswith(("no_obj_embed_spatial", "obj_ptr_tpos_proj"))}
    assert len(v20) == len(state) - 3
    torch.save({"model": v20}, path)
    with pytest.raises(ValueError) as err:
        ns.load_model(path)
    assert str(err.value) == (
        f"{path}: this is a SAM 2.0 checkpoint (like Meta's sam2_hiera_tiny.pt, without SAM "
        "2.1's tensors); napari-sam runs SAM 2.1: `napari-sam models download "
        "sam2.1_hiera_tiny` (the same size), then use that model")
    broken = {k: v for k, v in state.items() if ".blocks.3." not in k}
    broken["extra.weight"] = torch.zeros(1)
    torch.save({"model": broken}, path)
    with pytest.raises(ValueError) as err:
        ns.load_model(path)
    text = str(err.value)
    assert text.startswith(f"{path}: the checkpoint's tensors do not match SAM 2.1 "
                           "sam2.1_hiera_tiny: 14 missing tensors (e.g. image_encoder.trunk."
                           "blocks.3.")
    assert "; 1 unexpected tensors (e.g. extra.weight); use Meta's sam2.1_hiera_*.pt" in text
    assert len(text) < 500 and "HieraConfig" not in text


# ----------------------------------------------------------------------------- 4 and 5
@pytest.mark.parametrize("image", ["2d", "stack"])
def test_segment_everything_refuses_a_sam2_model_up_front(stack, model, image):
    x = stack[2] if image == "2d" else stack[:3]
    with pytest.raises(ValueError) as err:
        ns.segment_everything(x, model, points_per_side=4)
    assert str(err.value) == (
        "segment_everything needs a SAM 1 model (e.g. 'demo', 'vit_b_lm', 'vit_b'), but this is "
        "a SAM 2.1 checkpoint (custom); SAM 2.1 models propagate prompts through a stack: "
        "napari_sam.sam2_volume.segment_volume_sam2(stack, prompts, model)")


@pytest.mark.parametrize("bad", [-1, True, 1.5, "2"])
def test_stop_after_absent_must_be_a_whole_number_of_slices(stack, model, bad):
    model = tiny_sam2()
    calls = count_encoder_calls(model)
    with pytest.raises(ValueError) as err:
        segment_volume_sam2(stack, PROMPTS, model, stop_after_absent=bad)
    assert str(err.value) == (
        "stop_after_absent must be a whole number of slices >= 1, or None or 0 to track to the "
        f"ends of the stack; got {bad!r}")
    assert not calls  # before any work


# ----------------------------------------------------------------------------- 6: the demo
def test_a_checkpoint_trained_from_the_demo_is_not_the_demo(tmp_path):
    from napari_sam.models.checkpoint import read_checkpoint
    from napari_sam.models.registry import where

    demo_path = where("demo")
    if not demo_path.is_file():
        pytest.skip("the bundled demo model is not installed")
    assert ns.load_model("demo").is_demo
    assert ns.load_model(str(demo_path)).is_demo  # the bundled file by its path
    state, _ = read_checkpoint(demo_path)
    state = {k: v.float() + (0.01 if k.endswith(".bias") else 0.0) for k, v in state.items()}
    tuned = tmp_path / "tuned.pt"
    torch.save(state, tuned)
    shutil.copy(demo_path.with_suffix(".json"), tmp_path / "tuned.json")  # its config
    model = ns.load_model(tuned)
    assert model.config.encoder == "cnn" and model.model_id.startswith("file:")
    assert not model.is_demo
    meta = json.loads(demo_path.with_suffix(".json").read_text())
    assert meta["config"]["encoder"] == "cnn"


# ----------------------------------------------------------------------------- 7: file pick
def test_a_truncated_checkpoint_is_refused_when_it_is_picked(tmp_path):
    from napari_sam.annotate.errors import UserError
    from napari_sam.annotate.model_choice import checkpoint_family, file_choice

    path = save_sam2_checkpoint(tmp_path / "sam2.pt")
    assert file_choice(path).family == "sam2"
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        file_choice(cut)
    assert str(err.value).startswith("cut.pt cannot be read as a PyTorch checkpoint "
                                     "(RuntimeError): a truncated download or another file "
                                     "format? Download it again")
    assert checkpoint_family(cut) == "sam1"  # unchanged: loading it says what is wrong

    objects = tmp_path / "objects.pt"
    torch.save({"thing": Thing()}, objects)  # not truncated: loading explains the refusal
    assert file_choice(objects).family == "sam1"
