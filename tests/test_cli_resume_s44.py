"""Resuming batch runs (session 44): the slices an interrupted serial ``auto`` run saved are
reused by a rerun split into blocks (``--workers N --block-slices K``), and the other
commands word what they kept from the work folder as ``auto`` and ``segment`` do."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import test_cli_resume_s43 as resume
from test_cli_resume_s43 import done_reason

pytestmark = pytest.mark.usefixtures("offline_cli")

#: ``auto`` of one 8-slice stack stopped by Ctrl-C after 3 slices: (argv, output folder).
interrupted_auto = resume.interrupted_auto


def test_a_blocked_rerun_keeps_the_slices_an_interrupted_serial_run_saved(interrupted_auto,
                                                                          capsys):
    """Ctrl-C of a serial ``auto`` run after 3 of 8 slices, then the same command split into
    blocks (``--workers 1 --block-slices 4``): the blocks' run forced ``tiling`` off (blocks
    fill per-slice chunks), which made the work folder's record differ from the serial run's
    (``auto``, untiled at this size): its 3 slices were discarded and all 8 segmented again.
    Slices segmented the same way are kept whichever way the run is split: the 3 are reused
    (their files untouched), 5 computed, and the labels are an uninterrupted run's."""
    argv, out = interrupted_auto
    work = out / ".napari-sam-work" / "b0_labels.tif" / "auto"
    before = {p.name: p.stat().st_mtime_ns for p in work.glob("z*.npz")}
    assert len(before) == 3
    reason, head = done_reason([*argv, "--workers", "1", "--block-slices", "4", "--keep-work"],
                               capsys)
    assert reason == ("resumed: kept 3 of 8 slices an interrupted run finished, computed the "
                      "other 5")
    assert "1 file: 1 done (1 resumed), 0 skipped" in head
    after = {p.name: p.stat().st_mtime_ns for p in work.glob("z*.npz")}  # (--keep-work)
    assert len(after) == 8 and {k: after[k] for k in before} == before
    once = out.parent / "once"
    assert done_reason([*argv[:3], once, *argv[4:]], capsys)[0] == ""
    labels = tifffile.imread(out / "b0_labels.tif")
    assert np.array_equal(labels, tifffile.imread(once / "b0_labels.tif")) and labels.max() > 0


def test_slices_segmented_with_another_tiling_are_discarded_and_it_is_said():
    """The work key holds the tiling the slices were segmented with (``[window, halo]``,
    absent when untiled; a blocked run's record of before said ``None``): slices of a tiled
    serial run are not a blocked (untiled) run's, and the reason names both tilings."""
    from napari_sam.batch.saved_work import key_change, same_key

    untiled = {"signature": {"command": "auto", "model": "m", "points_per_side": 4},
               "input": ["/a/b0.tif", 10, 20, 30], "model_id": "x"}
    tiled = {**untiled, "signature": {**untiled["signature"], "tiling": [128, 16]}}
    blocked = {**untiled, "signature": {**untiled["signature"], "tiling": None}}
    assert same_key(blocked, untiled) and not same_key(tiled, untiled)
    assert key_change(tiled, untiled) == "parameters changed: tiling [128, 16] -> off"
    assert key_change(untiled, tiled) == "parameters changed: tiling off -> [128, 16]"

