"""Tests of napari_sam.prompts: the prompt primitives shared by the predictor, volume
propagation and the annotation decoder (their surfaces are tested in test_predictor.py,
test_volume.py and test_api_bad_inputs.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_sam.prompts import (
    PromptKind,
    box_problem,
    check_box,
    check_points,
    clip_box,
    group_by_kind,
    low_res_scale,
    mask_to_logits,
    pad_points,
    points_outside,
    stack_prompts,
    upsample_logits,
)


def test_only_a_single_click_asks_for_three_candidates():
    assert PromptKind.of(1, False, False) == PromptKind(True, False, False, True)
    assert not PromptKind.of(2, False, False).multimask
    assert not PromptKind.of(1, True, False).multimask
    assert not PromptKind.of(1, False, True).multimask
    assert PromptKind.of(0, True, True) == PromptKind(False, True, True, False)


def test_group_by_kind_keeps_first_appearance_and_item_order():
    a, b = PromptKind.of(1, False, False), PromptKind.of(0, True, False)
    groups = group_by_kind([(b, "x"), (a, "y"), (b, "z")])
    assert list(groups) == [b, a] and groups[b] == ["x", "z"] and groups[a] == ["y"]


def test_pad_points_pads_with_ignored_points():
    pts, lab = pad_points([np.array([[1.0, 2.0]]), np.array([[3, 4], [5, 6], [7, 8]])],
                          [np.array([1]), np.array([1, 0, 1])], dtype=np.float32)
    assert pts.dtype == np.float32 and pts.shape == (2, 3, 2) and lab.dtype == np.int64
    np.testing.assert_array_equal(lab, [[1, -1, -1], [1, 0, 1]])
    np.testing.assert_array_equal(pts[0], [[1, 2], [0, 0], [0, 0]])


def test_stack_prompts_gives_only_the_kinds_prompts():
    kind = PromptKind.of(0, True, False)
    kw = stack_prompts(kind, [np.zeros((0, 2))], [np.zeros(0)], [np.array([1, 2, 3, 4])])
    assert set(kw) == {"boxes"} and kw["boxes"].dtype == np.float64
    kind = PromptKind.of(1, True, False)
    kw = stack_prompts(kind, [np.array([[5, 6]])], [np.array([1])], [np.array([1, 2, 3, 4])],
                       dtype=np.float32)
    assert set(kw) == {"points", "labels", "boxes"} and kw["points"].shape == (1, 1, 2)


def test_point_and_box_predicates():
    pts = np.array([[-0.5, 0], [-0.6, 0], [39.5, 47.5], [39.6, 0], [0, 47.6]])
    np.testing.assert_array_equal(points_outside(pts, (40, 48)), [False, True, False, True, True])
    assert box_problem(np.array([1.0, 2, 3]), (40, 48)) == "shape"
    assert box_problem(np.array([1.0, 2, 3, np.nan]), (40, 48)) == "shape"
    assert box_problem(np.array([5.0, 5, 1, 9]), (40, 48)) == "inverted"
    assert box_problem(np.array([40.0, 0, 50, 9]), (40, 48)) == "outside"
    assert box_problem(np.array([-5.0, -5, 100, 100]), (40, 48)) is None
    np.testing.assert_array_equal(clip_box(np.array([-5.0, -5, 100, 100]), (40, 48)),
                                  [0, 0, 39, 47])


def test_checks_return_clean_arrays_and_name_the_problem():
    pts, lab = check_points([3, 4], None, (40, 48))
    assert pts.shape == (1, 2) and pts.dtype == np.float64 and lab.tolist() == [1]
    np.testing.assert_array_equal(check_box([-5, -5, 100, 100], (40, 48)), [0, 0, 39, 47])
    with pytest.raises(ValueError, match=r"did you mean \(10\.0, 5\.0, 20\.0, 30\.0\)"):
        check_box([20, 30, 10, 5], (40, 48))
    with pytest.raises(ValueError, match=r"\(100\.0, 5\.0\) is outside the image"):
        check_points([[100, 5]], [1], (40, 48))


def test_low_res_scale_maps_image_pixels_to_the_mask_grid():
    emb = SimpleNamespace(original_size=(100, 80), input_size=(64, 51))
    np.testing.assert_allclose(low_res_scale(emb, 64, 16), [16 / 100, 16 / 64 * 51 / 80])


def test_upsample_logits_keeps_leading_axes_and_inverts_mask_to_logits():
    emb = SimpleNamespace(original_size=(30, 60), input_size=(32, 64))
    mask = np.zeros((30, 60), bool)
    mask[5:20, 10:40] = True
    low = mask_to_logits(mask, (30, 60), (32, 64), img_size=64, low_res_size=16)
    back = upsample_logits(torch.stack([low, -low])[None], emb, 64)
    assert back.shape == (1, 2, 30, 60) and back.dtype == torch.float32
    inside = back[0, 0].numpy() > 0
    assert (inside & mask).sum() / (inside | mask).sum() > 0.9
    assert np.array_equal(back[0, 1].numpy() > 0, ~(back[0, 0].numpy() >= 0))
