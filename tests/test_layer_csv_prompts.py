"""``napari-sam segment -p layer.csv`` with a napari layer saved as CSV (File > Save Selected
Layers): a points layer (each point its own object, or grouped by an ``id`` feature; the
dock's ``prompt`` feature gives the point's label) or a shapes layer (each closed shape a box
prompt of its own object)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_sam import batch


def _saved(path, data, **kw):
    """A napari Points layer written by napari's own points writer (what File > Save Selected
    Layers runs for a .csv); returns the path."""
    from napari.layers import Points
    from napari_builtins.io import napari_write_points

    layer_data, meta, _ = Points(np.asarray(data, float), **kw).as_layer_data_tuple()
    assert napari_write_points(str(path), layer_data, meta) == str(path)
    return path


def _saved_shapes(path, shapes, shape_type):
    """A napari Shapes layer written by napari's own shapes writer; returns the path."""
    from napari.layers import Shapes
    from napari_builtins.io import napari_write_shapes

    layer = Shapes([np.asarray(v, float) for v in shapes], shape_type=shape_type)
    layer_data, meta, _ = layer.as_layer_data_tuple()
    assert napari_write_shapes(str(path), layer_data, meta) == str(path)
    return path


def test_each_closed_shape_of_a_shapes_layer_is_a_box(tmp_path):
    rect = [[3, 10, 12], [3, 10, 30], [3, 28, 30], [3, 28, 12]]
    ellipse = [[5, 40, 40], [5, 40, 50], [5, 52, 50], [5, 52, 40]]
    poly = [[1, 5, 5], [1, 9, 20], [1, 15, 8]]
    p = _saved_shapes(tmp_path / "boxes.csv", [rect, ellipse, poly],
                      ["rectangle", "ellipse", "polygon"])
    assert p.read_text().splitlines()[0].startswith("index,shape-type,vertex-index,axis-0")
    got = batch.prompts_for(batch.load_prompts(p), tmp_path / "a.tif")
    assert got[1] == [{"slice": 3, "box": [10.0, 12.0, 28.0, 30.0]}]
    assert got[2][0]["slice"] == 5 and got[2][0]["box"] == pytest.approx([40, 40, 52, 50])
    assert got[3] == [{"slice": 1, "box": [5.0, 5.0, 15.0, 20.0]}]
    p2 = _saved_shapes(tmp_path / "boxes2d.csv", [[[10, 12], [10, 30], [28, 30], [28, 12]]],
                       ["rectangle"])
    assert batch.prompts_for(batch.load_prompts(p2), tmp_path / "a.tif") == {
        1: [{"slice": 0, "box": [10.0, 12.0, 28.0, 30.0]}]}


@pytest.mark.parametrize(("shapes", "kinds", "message"), [
    ([[[3, 10, 12], [3, 28, 30]]], ["line"], r"line 2: a line is not a box; draw rectangles"),
    ([[[3, 10, 12], [3, 20, 30], [3, 28, 12]]], ["path"], r"a path is not a box"),
    ([[[3, 10, 12], [3, 10, 30], [4, 28, 30], [4, 28, 12]]], ["rectangle"],
     r"line 2: the rectangle spans slices \[3, 4\]; draw each box on one slice"),
])
def test_a_shapes_layer_that_cannot_be_read_as_boxes_names_the_line(tmp_path, shapes, kinds,
                                                                    message):
    p = _saved_shapes(tmp_path / "bad.csv", shapes, kinds)
    with pytest.raises(batch.BatchError, match=message):
        batch.load_prompts(p)


def test_each_point_of_a_points_layer_is_its_own_object(tmp_path):
    p = _saved(tmp_path / "clicks.csv", [[3, 20, 21.5], [3, 40, 40], [5, 30, 12]])
    assert p.read_text().splitlines()[0].startswith("index,axis-0,axis-1,axis-2")
    got = batch.prompts_for(batch.load_prompts(p), tmp_path / "a.tif")
    assert got == {1: [{"slice": 3, "points": [[20.0, 21.5]], "labels": [1]}],
                   2: [{"slice": 3, "points": [[40.0, 40.0]], "labels": [1]}],
                   3: [{"slice": 5, "points": [[30.0, 12.0]], "labels": [1]}]}
    # a 2D layer: (row, col) on slice 0
    p2 = _saved(tmp_path / "clicks2d.csv", [[20, 21], [40, 40]])
    got = batch.prompts_for(batch.load_prompts(p2), tmp_path / "a.tif")
    assert got == {1: [{"slice": 0, "points": [[20.0, 21.0]], "labels": [1]}],
                   2: [{"slice": 0, "points": [[40.0, 40.0]], "labels": [1]}]}


def test_a_points_layer_over_a_movie_gives_each_point_its_time_point(tmp_path):
    """A 4D points layer (drawn over a TZYX movie: time point, slice, row, col) was refused
    for its 4 coordinate columns; its axis-0 is now each prompt's time point, and a box may
    not span two time points."""
    p = _saved(tmp_path / "clicks.csv", [[0, 1, 20, 20], [1, 2, 44, 40]])
    got = batch.prompts_for(batch.load_prompts(p), tmp_path / "movie.tif")
    assert got == {1: [{"slice": 1, "points": [[20.0, 20.0]], "labels": [1], "time": 0}],
                   2: [{"slice": 2, "points": [[44.0, 40.0]], "labels": [1], "time": 1}]}
    box = _saved_shapes(tmp_path / "box.csv", [[[1, 2, 10, 10], [1, 2, 10, 30], [1, 2, 30, 30],
                                                [1, 2, 30, 10]]], "rectangle")
    got = batch.prompts_for(batch.load_prompts(box), tmp_path / "movie.tif")
    assert got == {1: [{"slice": 2, "box": [10.0, 10.0, 30.0, 30.0], "time": 1}]}
    across = _saved_shapes(tmp_path / "across.csv", [[[0, 2, 10, 10], [0, 2, 10, 30],
                                                      [1, 2, 30, 30], [1, 2, 30, 10]]],
                           "rectangle")
    with pytest.raises(batch.BatchError, match=r"the rectangle spans time points \[0, 1\]"):
        batch.load_prompts(across)


def test_the_docks_points_layer_with_an_id_feature_groups_points_per_object(tmp_path):
    features = pd.DataFrame({"prompt": pd.Categorical(["positive", "negative", "positive"],
                                                      categories=["positive", "negative"]),
                             "id": [2, 2, 7]})
    p = _saved(tmp_path / "sam.csv", [[3, 20, 20], [3, 26, 26], [1, 40, 40]], features=features)
    got = batch.prompts_for(batch.load_prompts(p), tmp_path / "a.tif")
    assert got == {2: [{"slice": 3, "points": [[20.0, 20.0]], "labels": [1]},
                       {"slice": 3, "points": [[26.0, 26.0]], "labels": [0]}],
                   7: [{"slice": 1, "points": [[40.0, 40.0]], "labels": [1]}]}


@pytest.mark.parametrize(("data", "features", "message"), [
    ([[3, 20, 20], [3, 26, 26]], {"prompt": ["positive", "negative"]},
     r"line 3: a negative point, but the file has no 'id' column"),
    ([[0, 0, 3, 20, 20]], None, r"napari points layer with 5 coordinate columns"),
    ([[0.5, 3, 20, 20]], None, r"line 2: axis-0 \(the time point\) is 0.5, between two time"),
    ([[3.5, 20, 20]], None, r"line 2: axis-0 \(the slice\) is 3.5, between two slices"),
    ([[3, 20, 20]], {"prompt": ["maybe"]}, r"line 2: point kind 'maybe'"),
    ([[3, 20, 20]], {"id": [0]}, r"line 2: object id 0 is not allowed"),
])
def test_a_points_layer_that_cannot_be_read_as_prompts_names_the_line(tmp_path, data, features,
                                                                        message):
    p = _saved(tmp_path / "bad.csv", data,
               features=None if features is None else pd.DataFrame(features))
    with pytest.raises(batch.BatchError, match=message):
        batch.load_prompts(p)


def test_segment_runs_a_saved_points_layer(tmp_path, files, offline_cli, monkeypatch, capsys):
    """The CLI takes the layer's file as it is: its points reach segment_volume as one object
    each, the labels hold those ids, and a point outside the stack is refused before any
    embedding with its line."""
    import tifffile

    from cli_runner import cli, error_line
    from napari_sam import volume
    from spy import spy

    seen = spy(monkeypatch, volume, "segment_volume", lambda emb, prompts, **kw: prompts)
    p = _saved(tmp_path / "clicks.csv", [[3, 20, 20], [2, 44, 44]])
    rc, _, err = cli(["segment", files["stack"], "-o", tmp_path / "out", "-p", p, "--model",
                      files["model"], "--iou-threshold", "0", "--min-area", "0", "-q"], capsys)
    assert rc == 0, err
    assert seen == [{1: [{"slice": 3, "points": [[20.0, 20.0]], "labels": [1]}],
                     2: [{"slice": 2, "points": [[44.0, 44.0]], "labels": [1]}]}]
    labels = tifffile.imread(tmp_path / "out" / "blobs_labels.tif")
    # (a tiny random model: its masks need not cover the clicks, but each seeds its slice)
    assert 1 in labels[3] and 2 in labels[2] and set(np.unique(labels)) <= {0, 1, 2}
    far = _saved(tmp_path / "far.csv", [[3, 20, 20], [9, 20, 20]])
    rc, _, err = cli(["segment", files["stack"], "-o", tmp_path / "far", "-p", far, "--model",
                      files["model"], "-q"], capsys)
    assert rc == 2 and len(seen) == 1
    assert "far.csv, line 3: slice 9 is out of range" in error_line(err)


def test_layer_files_that_are_not_prompts_name_the_problem(tmp_path):
    """Found by a review: a header with a gap in its axes, a box a plain click drew, an empty
    layer."""
    gap = tmp_path / "gap.csv"
    gap.write_text("index,axis-0,axis-2\n0,3,4\n")
    with pytest.raises(batch.BatchError, match="napari points layer with 2 coordinate columns"):
        batch.load_prompts(gap)
    tiny = _saved_shapes(tmp_path / "tiny.csv",
                         [[[3, 10, 12], [3, 10, 30], [3, 28, 30], [3, 28, 12]],
                          [[3, 40, 40], [3, 40, 41.5], [3, 41.5, 41.5], [3, 41.5, 40]]],
                         ["rectangle", "rectangle"])
    with pytest.raises(batch.BatchError, match=r"line 6: the rectangle is 1.5 px across, not a box"):
        batch.load_prompts(tiny)
    empty = tmp_path / "empty.csv"
    empty.write_text("index,axis-0,axis-1,axis-2\n")
    with pytest.raises(batch.BatchError, match="is a napari points layer without points"):
        batch.load_prompts(empty)
