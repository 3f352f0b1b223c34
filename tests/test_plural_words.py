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



def test_counted_and_for_count():
    from napari_sam.words import counted, for_count

    assert [counted(n, "object") for n in (0, 1, 2)] == ["0 objects", "1 object", "2 objects"]
    assert counted(1, "box", "boxes") == "1 box" and counted(3, "box", "boxes") == "3 boxes"
    assert for_count(1, "is", "are") == "is" and for_count(2, "is", "are") == "are"


PROMPT_FILE_CASES = {
    "one unknown column": ("p.csv", "id,slice,row,col,colour\n1,1,10,10,red\n",
                           "unknown column ['colour']; known columns"),
    "two unknown columns": ("p.csv", "id,slice,row,col,colour,shade\n1,1,10,10,red,x\n",
                            "unknown columns ['colour', 'shade']; known columns"),
    "one unknown key": ("p.json", '{"objects": {"1": [{"slice": 1, "point": [3, 3]}]}}',
                        "p.json, object 1, prompt 1: unknown key ['point']"),
    "two unknown keys": ("p.json", '{"objects": {"1": [{"slice": 1, "point": [3, 3], '
                                   '"lbl": 1}]}}',
                         "unknown keys ['lbl', 'point']"),
    "2 points 1 label": ("p.json", '{"objects": {"1": [{"slice": 1, "points": [[3, 3], '
                                   '[4, 4]], "labels": [1]}]}}',
                         "2 points but 1 label; give one label per point"),
    "1 point 2 labels": ("p.json", '{"objects": {"1": [{"slice": 1, "points": [[3, 3]], '
                                   '"labels": [1, 0]}]}}',
                         "1 point but 2 labels; give one label per point"),
    "one top-level key": ("p.json", '{"objects": {}, "x": 1}',
                          "unknown top-level key ['x']; use 'objects' and 'files'"),
    "no input matches": ("p.csv", "file,id,slice,row,col\nother.tif,1,1,10,10\n",
                         "match none of the 1 input (e.g. 'a.tif')"),
}


@pytest.mark.parametrize("case", list(PROMPT_FILE_CASES))
def test_prompts_file_errors_count_in_english(tmp_path, offline_cli, tiny_model, capsys, case):
    """``napari-sam segment -p FILE`` errors read "1 label", "2 points", never "label(s)"."""
    import numpy as np
    import tifffile

    from cli_runner import cli, error_line

    name, text, said = PROMPT_FILE_CASES[case]
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((4, 64, 64), np.uint16), photometric="minisblack")
    (tmp_path / name).write_text(text)
    rc, _, err = cli(["segment", tmp_path / "a.tif", "-o", tmp_path / "out", "-p",
                      tmp_path / name, "--model", tiny_model], capsys)
    line = error_line(err)
    assert rc == 2 and said in line and "(s)" not in line, line


def test_sizes_read_in_a_unit_that_keeps_small_ones_from_reading_as_none():
    from napari_sam.words import size_words

    assert [size_words(n) for n in (0, 1, 512, 4096, 40_000, 100_000, 46_300_000,
                                    7_600_000_000)] == [
        "0 bytes", "1 byte", "512 bytes", "4.1 kB", "40.0 kB", "0.1 MB", "46.3 MB", "7.6 GB"]
