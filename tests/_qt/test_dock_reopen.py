"""Closing the dock and opening it again in the same, shown viewer.

Closing the dock removes its 'SAM boxes' Shapes layer; on Mesa's software OpenGL (Xvfb)
napari then crashed (segmentation fault in ``glDrawArrays``) at the second frame drawn after
it: the reopened dock's first progress bar, a pan (:func:`napari_sam._qt.layers.remove_layer`
says why). A crash kills the process, so the scenario runs in a fresh interpreter with a
shown viewer (a hidden canvas never draws); the test reads its exit status and its result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/_qt"]
import napari, torch
from qtpy.QtWidgets import QApplication
from napari_sam.models import SamConfig, build_sam
from napari_sam.predictor import Predictor
from sam_qt_helpers import blob_stack, open_from_menu, use_predictor
from tiny_configs import TINY_VIT

def pump(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)

torch.manual_seed(0)
predictor = Predictor(build_sam(SamConfig(**TINY_VIT)), device="cpu")
viewer = napari.Viewer(show=True)
viewer.add_image(blob_stack(), name="blobs")
result = {}
for cycle in range(3):
    dock, w = open_from_menu(viewer)
    w.preload = False
    use_predictor(w, predictor)
    job = w.controller.compute_embeddings()  # threaded, with the dock's progress bar
    w.wait()
    for _ in range(3):  # frames drawn with the reopened dock
        viewer.camera.zoom *= 1.05
        pump(0.2)
    result[f"cycle {cycle}"] = {"succeeded": job.succeeded, "threaded": job.worker is not None,
                                "layers": sorted(ly.name for ly in viewer.layers)}
    viewer.window.remove_dock_widget(dock)
    pump(0.3)
result["after"] = sorted(ly.name for ly in viewer.layers)
print(json.dumps(result), flush=True)
viewer.close()
'''


@pytest.mark.skipif(not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
                    reason="needs a display to show the viewer (run under xvfb-run)")
def test_closing_and_reopening_the_dock_keeps_napari_alive(tmp_path):
    out = subprocess.run([sys.executable, "-X", "faulthandler", "-c", SCRIPT, str(TESTS)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, f"napari died (exit status {out.returncode}): {out.stderr[-3000:]}"
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    assert lines, out.stderr[-3000:]
    got = json.loads(lines[-1])
    working = ["SAM boxes", "SAM current object", "SAM points", "blobs"]
    for cycle in range(3):  # each dock's threaded job ran to its end, in its own layers
        assert got[f"cycle {cycle}"] == {"succeeded": True, "threaded": True, "layers": working}
    assert got["after"] == ["blobs"]  # the closed docks left no working layer behind


def _open_work_and_close(viewer, tiny_sam):
    """Open the dock, preview a click (threaded jobs), start embedding the stack and close
    the dock while that runs. Returns weak references to the controller and the predictor,
    and the running job (in a function of its own: a frame's locals snapshot, which a test
    frame may get, would keep them)."""
    import weakref

    from sam_qt_helpers import open_from_menu, use_predictor

    from napari_sam.predictor import Predictor

    predictor = Predictor(tiny_sam, device="cpu")
    dock, widget = open_from_menu(viewer)
    widget.preload = False
    use_predictor(widget, predictor)
    viewer.dims.set_point(0, 3)
    c = widget.controller
    c.add_point(3, 20, 20)  # threaded jobs: the slice's embedding, then the decoding
    widget.wait()
    assert len(c.previews) == 1 and c.job is None
    running = c.compute_embeddings()  # still running when the dock closes: cancelled
    assert running.running and running.worker is not None
    viewer.window.remove_dock_widget(dock)
    return (weakref.ref(c), weakref.ref(predictor)), running


def test_a_closed_dock_frees_its_controller_and_predictor(make_napari_viewer, qtbot, tiny_sam):
    """Closing the dock lets go of its session: the controller, and with it the predictor,
    the embeddings and the prompts (hundreds of MB with a real model), are freed once its
    jobs have ended; a finished worker's Qt connections kept them alive for good."""
    import gc

    from sam_qt_helpers import blob_stack

    viewer = make_napari_viewer()
    viewer.add_image(blob_stack(), name="blobs")
    freed, running = _open_work_and_close(viewer, tiny_sam)
    qtbot.waitUntil(lambda: not running.running, timeout=60_000)
    assert running.cancelled and not running.succeeded
    qtbot.wait(50)
    gc.collect()
    assert [ref() is None for ref in freed] == [True, True]
