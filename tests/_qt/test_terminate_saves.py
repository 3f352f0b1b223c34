"""napari told to end (SIGTERM: a logout or shutdown, ``kill PID``, a cluster job's time
limit) with a hand correction whose autosave had not run yet (it waits for the end of the
stroke): the correction was lost, as on ``kill -9``; now napari autosaves it, then ends as
the signal ends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

_NAPARI_TOLD_TO_END = r"""
import sys
sys.path[:0] = [{helpers!r}, {tests!r}]
import napari
import napari_sam._qt.paint_autosave as P
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication
from sam_qt_helpers import commit_on, open_from_menu, pick_checkpoint

P.PAINT_AUTOSAVE_MS = 600_000  # the stroke's autosave is still waiting when the signal comes
viewer = napari.Viewer(show=False)
viewer.open({stack!r}, plugin="napari")
dock, widget = open_from_menu(viewer)
widget.controller.sync = True
pick_checkpoint(widget, {ckpt!r})
commit_on(viewer, widget, 1)
layer = widget.controller.target_layer
layer.selected_label = 9
layer.brush_size = 3

def stroke():
    layer.paint((1, 40, 40), 9)  # what the paint brush calls for a stroke
    print("PAINTED", flush=True)

QTimer.singleShot(0, stroke)
QApplication.instance().exec()  # napari's event loop, until the signal
"""


def test_sigterm_autosaves_a_hand_correction_before_napari_ends(stack_file, tiny_ckpt):
    from napari_sam import session as S

    script = _NAPARI_TOLD_TO_END.format(helpers=str(HERE), tests=str(HERE.parent),
                                        stack=str(stack_file), ckpt=str(tiny_ckpt))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        t0, line = time.time(), ""
        while "PAINTED" not in line and time.time() - t0 < 240:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "PAINTED" in line, proc.stderr.read()[-3000:]
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGTERM  # it ends as the signal ends it
    saved = S.read_session(stack_file.with_name("blobs.tif.sam-session.json"))
    assert len(saved.operations) == 1
    assert saved.labels[1, 40, 40] == 9  # the correction painted last
    assert sorted(np.unique(saved.labels).tolist()) == [0, 1, 9]
