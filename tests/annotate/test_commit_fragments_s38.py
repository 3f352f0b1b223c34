"""A new label committed over a fragment of another (what napari's eraser left of a committed
object; commits do not overwrite other labels) is named with the fragment; a neighbour the mask
only touches, or another object of the same commit, is not."""

from __future__ import annotations

import numpy as np

from napari_sam.annotate.commit_words import describe_commit
from napari_sam.annotation import ObjectMask, apply_objects


def _disc(r0, c0, radius, size=40):
    yy, xx = np.mgrid[:size, :size]
    return (yy - r0) ** 2 + (xx - c0) ** 2 <= radius ** 2


def _describe(labels, objects):
    commit = apply_objects(labels, objects)
    return describe_commit(commit, objects, labels)


def test_a_fragment_inside_the_new_label_is_named():
    labels = np.zeros((2, 40, 40), np.uint16)
    labels[1][_disc(20, 14, 3)] = 1  # what the eraser left of label 1
    labels[1][_disc(20, 33, 5)] = 4  # a neighbour the new mask overlaps by a few pixels
    text = _describe(labels, [ObjectMask(_disc(20, 20, 9), z=1)])
    n = int((labels[1] == 1).sum())
    assert text == (f"Committed label 5 ({int((labels[1] == 5).sum())} pixels). Label 1 ({n} "
                    "pixels) remains inside label 5 on slice 1 (commits do not overwrite other "
                    "labels): to make one object, undo and refine label 1 instead (select it, "
                    "tick 'Refine selected label'), or tick 'Overwrite other labels' and commit "
                    "again.")


def test_a_neighbour_or_an_object_of_the_same_commit_is_not_a_fragment():
    labels = np.zeros((1, 40, 40), np.uint16)
    labels[0][_disc(20, 33, 5)] = 4
    text = _describe(labels, [ObjectMask(_disc(20, 20, 9), z=0),
                              ObjectMask(_disc(20, 20, 12), z=0)])
    assert text.startswith("Committed labels 5, 6 (") and text.endswith("pixels).")
