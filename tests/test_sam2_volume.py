"""segment_volume_sam2 beyond equality with Meta's: prompts checked by normalize_prompts,
stop markers, features kept between runs, and a memory bank that stays bounded on a long
stack. Random Hiera-T weights at 128 px whose object head says "present"."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.models.sam2.feature_cache import Sam2FeatureCache
from napari_sam.models.sam2.model import Sam2Config, Sam2Model
from napari_sam.models.sam2.propagation import Sam2Prompts, Sam2Tracker
from napari_sam.sam2_volume import segment_volume_sam2

pytestmark = pytest.mark.timeout(600)


def tiny_sam2(size: int = 128, seed: int = 11) -> Sam2Model:
    model = Sam2Model(Sam2Config(image_size=size)).eval()
    gen = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in model.state_dict().items()}
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] = torch.tensor([3.0])
    model.load_state_dict(sd)
    model.model_id = f"random:{seed}"
    return model


@pytest.fixture(scope="module")
def model():
    return tiny_sam2()


def count_encoder_calls(model) -> list:
    calls = []
    model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    return calls


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, size=(6, 40, 56)).astype(np.uint16)


def test_a_second_run_with_a_correction_reuses_every_slices_features(stack):
    model = tiny_sam2()
    calls = count_encoder_calls(model)
    cache = Sam2FeatureCache()
    first = segment_volume_sam2(stack, {1: [{"slice": 2, "points": [[20, 30]]}]}, model,
                                stop_after_absent=None, features=cache)
    encoded = len(calls)
    assert encoded >= 6 and len(cache) == 6 and cache.misses == 6
    corrected = {1: [{"slice": 2, "points": [[20, 30]]},
                     {"slice": 4, "points": [[22, 31], [5, 5]], "labels": [1, 0]}]}
    second = segment_volume_sam2(stack, corrected, model, stop_after_absent=None,
                                 features=cache)
    assert len(calls) == encoded  # no slice encoded again
    assert cache.misses == 6 and cache.hits >= 6
    # the same features give the same result as a run without the cache
    fresh = segment_volume_sam2(stack, corrected, model, stop_after_absent=None)
    assert np.array_equal(second.labels, fresh.labels)
    assert first.labels.shape == second.labels.shape == stack.shape
    with pytest.raises(ValueError, match="holds the features of another model or stack shape "
                       ".* make a new Sam2FeatureCache"):
        segment_volume_sam2(stack[:5], {1: [{"slice": 2, "points": [[20, 30]]}]}, model,
                            features=cache)


def test_a_feature_cache_is_bounded_in_bytes(model, stack):
    cache = Sam2FeatureCache(max_bytes=600_000)  # about two 128 px slices
    segment_volume_sam2(stack, {1: [{"slice": 0, "points": [[20, 30]]}]}, model,
                        stop_after_absent=None, features=cache)
    assert len(cache) == 2 and cache.nbytes <= 600_000
    with pytest.raises(ValueError, match="max_bytes must be a whole number >= 0, got -1"):
        Sam2FeatureCache(max_bytes=-1)


def test_prompts_are_checked_by_normalize_prompts(model, stack):
    with pytest.raises(ValueError, match=r"object 1, slice 2: point \(row, col\) = "
                       r"\(50\.0, 30\.0\) is outside the slices of shape \(40, 56\)"):
        segment_volume_sam2(stack, {1: [{"slice": 2, "points": [[50, 30]]}]}, model)
    with pytest.raises(ValueError, match="object 1 has no prompts"):
        segment_volume_sam2(stack, {1: [{"slice": 2, "stop": True}]}, model)
    with pytest.raises(ValueError, match="object ids must be positive integers"):
        segment_volume_sam2(stack, {"a": [{"slice": 2, "points": [[5, 5]]}]}, model)
    with pytest.raises(ValueError, match="slice 6, outside the stack's 6 slices"):
        segment_volume_sam2(stack, {1: [{"slice": 6, "points": [[5, 5]]}]}, model)


def test_a_stop_marker_ends_the_run_before_its_slice(model, stack):
    result = segment_volume_sam2(stack, {4: [{"slice": 1, "box": [5, 5, 30, 40]},
                                             {"slice": 4, "stop": True}]}, model,
                                 stop_after_absent=None)
    assert 4 in result.object_ids
    present = np.flatnonzero((result.labels == 4).any(axis=(1, 2)))
    assert present.max() <= 3 and 1 in present
    assert result.stop_reasons[4]["up"] == "stop_marker"
    assert result.stop_reasons[4]["down"] == "edge"


def test_a_long_stack_keeps_a_bounded_memory_bank(model, monkeypatch):
    """200 slices, an object prompted in the middle: the memories held per object stay
    under the documented bound whatever the stack's length; pointers stay for all. (The
    slices repeat 8 encoded images: the bank, not the encoder, is under test.)"""
    n = 200
    frames = torch.randn(8, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        encoded = [model.encode_image(frames[i: i + 1]) for i in range(8)]
    monkeypatch.setattr(model, "encode_image", lambda image: encoded[int(image.flatten()[0])])
    tracker = Sam2Tracker(model, lambda z: torch.tensor([float(z % 8)]), n)
    prompts = Sam2Prompts(points={100: (torch.tensor([[60.0, 60.0]]), torch.tensor([1]))})
    seen = set()
    with torch.inference_mode():
        for z, _, _out in tracker.propagate_all({1: prompts}):
            seen.add(z)
    assert seen == set(range(n))
    config = model.config
    reach = max(config.num_maskmem, config.max_object_pointers)
    bank = tracker.banks[1]
    held = sum(o.memory is not None for o in bank.tracked.values())
    masks = sum(o.low_res_masks is not None for o in bank.tracked.values())
    assert tracker.peak_memories <= 3 * reach + 3 == 51
    assert held <= 3 * reach + 3 and masks <= 3 * reach + 3
    assert len(bank.tracked) == n - 1  # a pointer for every tracked slice
    assert tracker.encoder_calls <= 1 + n + 101  # prompt, forwards, backwards


def test_a_chosen_candidate_starts_the_object_on_its_slice(model, stack, monkeypatch):
    """A single click's ``candidate`` (the dock's Shift+M) picks which of SAM 2's three masks
    starts the object on its slice; None keeps the best scoring one."""
    frame = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        encoded = model.encode_image(frame)
    monkeypatch.setattr(model, "encode_image", lambda image: encoded)
    tracker = Sam2Tracker(model, lambda z: torch.zeros(1), 6)
    click = (torch.tensor([[60.0, 40.0]]), torch.tensor([1]))
    low = {}
    with torch.inference_mode():
        for c in (None, 0, 1, 2):
            out = tracker.prompt(2, Sam2Prompts(points={2: click},
                                                candidates={} if c is None else {2: c}))
            low[c] = out.low_res_masks[0, 0].clone()
    best = int(out.iou[0].argmax())
    assert torch.equal(low[None], low[best])
    assert all(not torch.equal(low[a], low[b]) for a, b in ((0, 1), (0, 2), (1, 2)))
    monkeypatch.undo()
    # segment_volume_sam2 hands each prompted slice's candidate to the decoder
    seen = []
    heads = model.heads
    monkeypatch.setattr(model, "heads", lambda *a, **k: seen.append(k.get("candidate"))
                        or heads(*a, **k))
    segment_volume_sam2(stack, {1: [{"slice": 2, "points": [[20, 30]], "candidate": 1}],
                                2: [{"slice": 3, "points": [[10, 10]]}]}, model,
                        stop_after_absent=1)
    assert seen[:2] == [1, None] and set(seen[2:]) == {None}
    with pytest.raises(ValueError, match="'candidate' belongs to a single click"):
        segment_volume_sam2(stack, {1: [{"slice": 2, "box": [5, 5, 30, 40], "candidate": 1}]},
                            model)


def test_an_object_that_loses_every_voxel_is_warned_about(model, stack):
    """Object 2's masks lie inside object 1's and lose every pixel to it: it had no voxel in
    the labels, no stop reason, and only ``result.lost`` said why (a tester's walk)."""
    full = np.ones(stack.shape[1:], bool)
    part = np.zeros(stack.shape[1:], bool)
    part[10:30, 10:40] = True
    prompts = {1: [{"slice": 2, "mask": full}],
               2: [{"slice": 2, "mask": part}, {"slice": 1, "stop": True},
                   {"slice": 3, "stop": True}]}
    with pytest.warns(UserWarning, match=r"objects \[2\] are not in the labels: its masks lost "
                                         r"every pixel to other objects .*VolumeResult\.lost"
                      ) as said:
        res = segment_volume_sam2(stack, prompts, model, stop_after_absent=None)
    from napari_sam.volume.result import LostObjectsWarning

    lost = [w for w in said if issubclass(w.category, LostObjectsWarning)]
    assert len(lost) == 1 and lost[0].filename == __file__  # points at the caller's line
    assert set(np.unique(res.labels)) == {0, 1} and list(res.lost) == [2]
    assert set(res.stop_reasons) == set(res.slice_range) == {1}
    # warn_lost=False (the dock, which says them in its status line): result.lost only
    import warnings

    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always")
        again = segment_volume_sam2(stack, prompts, model, stop_after_absent=None,
                                    warn_lost=False)
    assert not [w for w in quiet if issubclass(w.category, LostObjectsWarning)]
    assert again.lost == res.lost and np.array_equal(again.labels, res.labels)


def test_an_object_the_model_never_finds_is_said_absent_not_taken():
    from napari_sam.sam2_volume import LOST_EMPTY, _result

    res = _result(np.zeros((2, 4, 4), np.uint8), {1: {}}, {}, {1: None}, found=set())
    assert res.lost == {1: LOST_EMPTY} and "absent on every slice" in LOST_EMPTY


def test_progress_is_called_inside_a_slice_so_a_raising_callback_stops_the_run_there(
        stack, monkeypatch):
    """A slice took 20-30 s on a CPU (Hiera-T at 1024 px) and ``progress`` was called only
    after it: the dock's Cancel (a callback that raises) waited for the slice to end. It is
    called again, with the count unchanged, between the model's blocks."""
    import napari_sam.sam2_volume as sv

    monkeypatch.setattr(sv, "CHECK_EVERY_S", 0.0, raising=False)  # every block: a slow CPU
    model = tiny_sam2()
    encoded = count_encoder_calls(model)
    prompts = {1: [{"slice": 2, "points": [[20, 30]]}]}
    reports = []
    sv.segment_volume_sam2(stack, prompts, model, stop_after_absent=None,
                           progress=lambda done, total: reports.append((done, total)))
    assert reports[-1] == (6, 6) and len(encoded) == 6
    assert reports == sorted(reports) and len(reports) > 6 * 10  # inside slices, never back
    assert sorted(set(reports)) == [(i, 6) for i in range(7)]  # same counts as before

    class Stop(Exception):
        pass

    def cancel(done, total):
        raise Stop

    with pytest.raises(Stop):
        sv.segment_volume_sam2(stack, prompts, model, progress=cancel)
    assert len(encoded) == 6  # stopped inside the first slice's image encoder
    # nothing is left hooked on the model: a run without a callback runs to the end
    assert sv.segment_volume_sam2(stack, prompts, model).slice_range[1][0] <= 2
