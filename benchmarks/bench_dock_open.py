"""How long napari freezes while the "Segment Anything" dock opens from a fresh process.

The dock opened with napari frozen while PyTorch was imported on the UI thread (2-5 s on a
busy 2-core machine). It now imports torch in a background thread once it is shown. Each
round runs two fresh interpreters that open napari with a (31, 61, 57) stack and then the dock
through ``viewer.window.add_plugin_dock_widget`` (as the Plugins menu does), a 10 ms QTimer
ticking on the UI thread:

* ``dock``: the dock as it ships;
* ``reference``: ``import torch`` on the UI thread right before opening it (what the opening
  used to contain).

Printed per mode (median over the rounds): the longest UI stall from the start of the opening
until the first preload has embedded the shown slice, and that time to ready; the ratio
``dock / reference`` of the stall. The modes alternate, so machine load hits both alike.

    xvfb-run -a python benchmarks/bench_dock_open.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_name  # noqa: E402

ROUND = r'''
import json, sys, time
import numpy as np
import napari
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=False)
rng = np.random.default_rng(0)
viewer.add_image(rng.normal(20, 3, (31, 61, 57)).astype("float32"), name="stack")
for _ in range(10):
    QApplication.processEvents()
    time.sleep(0.01)
ticks = []
timer = QTimer()
timer.setInterval(10)
timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
timer.start()
t0 = time.perf_counter()
ticks.append(t0)
if sys.argv[1] == "reference":
    import torch  # noqa: F401
_, widget = viewer.window.add_plugin_dock_widget("napari-sam-stacks", "Segment Anything")
c = widget.controller
while time.perf_counter() - t0 < 300 and not (
        c.emb is not None and c.ready([c.current_z()]) and c.job is None):
    QApplication.processEvents()
    time.sleep(0.005)
ready = time.perf_counter() - t0
ticks.append(time.perf_counter())
stall = max(b - a for a, b in zip(ticks, ticks[1:]))
print(json.dumps({"stall_s": stall, "ready_s": ready}))
viewer.close()
'''


def run_round(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", ROUND, mode], capture_output=True, text=True,
                         timeout=600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"the {mode} round printed no result:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    got: dict[str, list[dict]] = {"dock": [], "reference": []}
    for r in range(args.rounds):
        for mode in ("dock", "reference"):
            res = run_round(mode)
            got[mode].append(res)
            print(f"round {r + 1} {mode:9s}: longest UI stall {res['stall_s']:.2f} s, "
                  f"ready after {res['ready_s']:.2f} s", flush=True)
    med = {m: {k: statistics.median(x[k] for x in v) for k in ("stall_s", "ready_s")}
           for m, v in got.items()}
    for m, v in med.items():
        print(f"median {m:9s}: longest UI stall {v['stall_s']:.2f} s, ready after "
              f"{v['ready_s']:.2f} s")
    print(f"stall ratio dock / reference: {med['dock']['stall_s'] / med['reference']['stall_s']:.2f}"
          f"; load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
