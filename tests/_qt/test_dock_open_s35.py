"""Opening the dock from a fresh napari process: PyTorch is imported off the main thread.

Importing torch took 2-5 s of the dock's opening with napari frozen (the device list, the
model cache keys and the automatic thresholds imported it on the main thread). The dock now
opens without it, imports it in a background thread once shown (the Device line says
"loading PyTorch ..."), and its first preload waits for it. Checked in a fresh interpreter,
as a user meets it: the test process has torch imported already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = r'''
import json, sys, threading, time
importer = {}


class Spy:
    def find_spec(self, name, path, target=None):
        if name == "torch" and not importer:
            importer["thread"] = threading.current_thread().name
        return None


sys.meta_path.insert(0, Spy())
import numpy as np
import napari
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=False)
rng = np.random.default_rng(0)
viewer.add_image(rng.normal(20, 3, (4, 64, 64)).astype("float32"), name="stack")
QApplication.processEvents()
_, widget = viewer.window.add_plugin_dock_widget("napari-sam-stacks", "Segment Anything")
opened = {"torch_imported": "torch" in sys.modules, "info": widget._device_info.text()}
beats = []
timer = QTimer()
timer.timeout.connect(lambda: beats.append(time.perf_counter()))
timer.start(20)
t0 = time.perf_counter()
c = widget.controller
while time.perf_counter() - t0 < 120 and not (c.emb is not None and c.ready([c.current_z()])
                                              and c.job is None):
    QApplication.processEvents()
    time.sleep(0.01)
gap = max((b - a for a, b in zip(beats, beats[1:])), default=0.0)
print(json.dumps({**opened, "importer": importer.get("thread"), "ready": c.ready([c.current_z()]),
                  "status": c.status, "info_after": widget._device_info.text(),
                  "devices": [widget._device.itemText(i) for i in range(widget._device.count())],
                  "longest_stall_s": round(gap, 2)}))
viewer.close()
'''


def test_the_dock_opens_without_importing_torch_on_the_main_thread(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        pytest.fail(f"the script printed no result: {out.stderr[-3000:]}")
    got = json.loads(lines[-1])
    print("after the dock opened:", got)  # the longest main-thread stall, for the record
    assert got["torch_imported"] is False  # the dock was built without it
    assert got["info"] == "loading PyTorch ..."
    assert got["importer"] == "napari-sam import torch", got
    assert got["ready"], got  # the preload waited for torch, then embedded the slice
    assert got["status"].startswith("Click on an object in 'stack'"), got
    assert got["info_after"].startswith("cpu, "), got
    assert got["devices"][:2] == ["auto", "cpu"]
