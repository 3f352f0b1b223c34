"""Detections that propagation leaves out are kept (session 33's time-lapse walk-through: at a
division, ``auto`` propagated the mother and dropped a daughter for six frames that
``--no-propagate`` found at IoU 0.88-0.96)."""

from __future__ import annotations

import numpy as np

from napari_sam.automatic.stack import keep_uncovered_detections


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_a_run_next_to_the_propagated_slices_extends_the_object_and_one_apart_is_new():
    linked = np.zeros((10, 40, 40), np.int32)
    vol = np.zeros_like(linked)
    a, b = _disc((40, 40), 10, 10, 5), _disc((40, 40), 28, 28, 5)
    linked[:, a], linked[:, b] = 1, 2
    vol[:5, a] = 1                       # object 1 propagated over 0-4 only
    vol[:3, b] = 2                       # object 2 over 0-2; slices 3-4 held by object 3
    vol[3:5, b] = 3
    ranges = {1: (0, 4), 2: (0, 2), 3: (3, 4)}
    put = keep_uncovered_detections(linked, vol, ranges, min_z_extent=3)
    assert ranges[1] == (0, 9) and (vol[5:, a] == 1).all()
    assert ranges[4] == (5, 9) and (vol[5:, b] == 4).all()  # apart from 0-2: a new object
    assert (vol[3:5, b] == 3).all()      # what a propagated object holds stays its
    assert put == {**{(z, 1): 1 for z in range(5, 10)}, **{(z, 2): 4 for z in range(5, 10)}}


def test_a_short_run_apart_and_a_covered_detection_are_left_out():
    linked = np.zeros((8, 40, 40), np.int32)
    vol = np.zeros_like(linked)
    a = _disc((40, 40), 20, 20, 6)
    linked[:, a] = 1
    vol[:3, a] = 1
    vol[4:6, a] = 2                      # held by another object on 4-5
    ranges = {1: (0, 2), 2: (4, 5)}
    before = vol.copy()
    put = keep_uncovered_detections(linked, vol, ranges, min_z_extent=3)
    # slice 3 touches object 1's slices: it extends it; 6-7 (two slices, apart) are dropped
    assert put == {(3, 1): 1} and ranges == {1: (0, 3), 2: (4, 5)}
    assert (vol[3, a] == 1).all() and np.array_equal(vol[[0, 1, 2, 4, 5, 6, 7]],
                                                      before[[0, 1, 2, 4, 5, 6, 7]])


def test_auto_keeps_both_daughters_of_a_dividing_cell(tmp_path, capsys):
    """The helper's movie: a cell moving, a mother dividing at frame 5; `auto` at its
    defaults (propagation on) with the demo model labels both daughters on every frame
    (where the mother's propagated mask drifts onto a daughter, at least half of it)."""
    import tifffile

    from cli_runner import cli

    t, yy, xx = 12, *np.mgrid[:128, :128]
    img = np.full((t, 128, 128), 20, np.uint8)
    gt = np.zeros((t, 128, 128), np.uint16)

    def disk(f, cy, cx, r, lab):
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[f][m], gt[f][m] = 190, lab

    for f in range(t):
        disk(f, 40, 20 + 3 * f, 10, 1)
        if f < 5:
            disk(f, 95, 60, 12, 2)
        else:
            d = 4 + 3 * (f - 5)
            disk(f, 95, 60 - d, 9, 2)
            disk(f, 95, 60 + d, 9, 3)
    tifffile.imwrite(tmp_path / "div.tif", img, imagej=True, metadata={"axes": "TYX"})
    rc = cli(["auto", str(tmp_path / "div.tif"), "-o", str(tmp_path / "out"), "-q"], capsys)[0]
    assert rc == 0
    lab = tifffile.imread(tmp_path / "out" / "div_labels.tif")
    # (without: daughter 2 was labelled on 0 % of its pixels in frames 10 and 11)
    for daughter in (2, 3):
        covered = [float((lab[f][gt[f] == daughter] > 0).mean()) for f in range(5, 12)]
        assert min(covered) >= 0.5 and min(covered[-2:]) >= 0.8, (daughter, covered)
