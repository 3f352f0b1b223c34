"""Counts in messages read as English: "1 object", "2 objects" (no "object(s)")."""

from __future__ import annotations

import pytest

from napari_sam.io.axes import validate_axes
from napari_sam.volume import SlicePrompt
from napari_sam.volume.annotations import normalize_prompts


@pytest.mark.parametrize("axes, said", [
    ("QYX", "letter Q not allowed"),
    ("QWX", "letters Q, W not allowed"),
    ("YYX", "letter Y appears more than once"),
    ("YYXX", "letters X, Y appear more than once"),
])
def test_axes_problems_count_their_letters(axes, said):
    with pytest.raises(ValueError) as err:
        validate_axes(axes, (4,) * len(axes))
    assert said in str(err.value) and "(s)" not in str(err.value)


@pytest.mark.parametrize("points, labels, said", [
    ([[3, 3], [5, 5]], [1, 1], "this one has 2 points (2 positive)"),
    ([[3, 3]], [0], "this one has 1 point (0 positive)"),
])
def test_a_refused_candidate_counts_the_points(points, labels, said):
    with pytest.raises(ValueError) as err:
        normalize_prompts({1: [SlicePrompt(2, points=points, labels=labels, candidate=0)]},
                          (4, 16, 16))
    assert said in str(err.value) and "(s)" not in str(err.value)

