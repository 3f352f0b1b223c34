"""Grouping of points and boxes into objects (no Qt)."""

import numpy as np

from napari_sam.annotate.prompt_groups import POINT_OBJECT, boxes_from_shapes, group_prompts


def test_points_form_one_object_across_slices():
    pts = [[2, 10, 10], [2, 12, 11], [5, 30, 30], [5, 0, 0]]
    objs = group_prompts(pts, [1, 0, 1, 0], np.zeros((0, 5)))
    assert [o.key for o in objs] == [POINT_OBJECT]
    assert sorted(objs[0].slices) == [2, 5]
    assert list(objs[0].slices[2].labels) == [1, 0]


def test_boxes_are_objects_and_take_points_inside():
    boxes = boxes_from_shapes(
        [np.array([[3, 10, 10], [3, 10, 20], [3, 20, 20], [3, 20, 10]]),
         np.array([[3, 40, 40], [3, 50, 50], [3, 40, 50], [3, 50, 40]])]
    )
    assert boxes.tolist() == [[3, 10, 10, 20, 20], [3, 40, 40, 50, 50]]
    pts = [[3, 15, 15], [3, 60, 60], [4, 15, 15]]
    objs = group_prompts(pts, [1, 1, 1], boxes)
    keys = [o.key for o in objs]
    assert keys == [POINT_OBJECT, ("box", 0), ("box", 1)]
    assert len(objs[1].slices[3].points) == 1  # the point inside box 0
    assert sorted(objs[0].slices) == [3, 4]  # the others


def test_lone_negative_points_join_nearest_box_or_are_ignored():
    boxes = np.array([[0, 10, 10, 20, 20], [0, 40, 40, 50, 50]], float)
    objs = group_prompts([[0, 22, 22], [1, 5, 5]], [0, 0], boxes)
    assert [o.key for o in objs] == [("box", 0), ("box", 1)]
    assert objs[0].slices[0].labels.tolist() == [0]
    assert len(objs[1].slices[0].points) == 0
