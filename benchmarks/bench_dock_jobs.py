"""The dock's jobs with and without napari's own progress bar, in one run.

The dock shows a job's progress in its own bar; until session 37 every job also had a napari
progress bar (napari's activity dock). While one is shown napari's main thread keeps
redrawing its window, which on software OpenGL (Mesa llvmpipe: Xvfb, VMs, remote desktops,
machines without a GPU driver) takes CPU from the job. This benchmark opens the dock as the
Plugins menu does, computes the embeddings of one slice of a 1024 x 1024 stack at a time (25
windows of the demo model: a progress report each), alternating per slice between the dock
as shipped and the dock with napari's bar put back, and prints the median wall and process
CPU time per slice of each and their ratio.

Run (a display is needed for napari's window; Xvfb is fine)::

    xvfb-run -a python benchmarks/bench_dock_jobs.py [--slices 10] [--size 1024]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from _machine import cpu_name  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=10, help="slices timed (10)")
    ap.add_argument("--size", type=int, default=1024, help="slice side in pixels (1024)")
    args = ap.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    import napari_sam._qt.controller as controller_module
    from napari_sam import synthetic as syn

    n = args.slices + 1
    stack = np.stack([syn.nuclei_2d((args.size, args.size), seed=s).image for s in range(n)])
    viewer = napari.Viewer()
    viewer.add_image(stack, name="stack")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam-stacks", "Segment Anything")
    c = widget.controller

    def wait():
        while c.job is not None:
            QApplication.processEvents()
            time.sleep(0.005)

    wait()  # the preload of slice 0
    shipped = controller_module.run_job
    with_napari_bar = functools.partial(_forced_bar, shipped)
    print(f"machine: {cpu_name()}; load before {os.getloadavg()}", flush=True)
    times = {"dock as shipped": [], "with napari's progress bar": []}
    for z in range(1, n):
        name = list(times)[z % 2]
        controller_module.run_job = shipped if z % 2 == 0 else with_napari_bar
        viewer.dims.set_point(0, z)
        wait()
        t, cpu = time.perf_counter(), time.process_time()
        c.compute_embeddings([z])
        wait()
        times[name].append((time.perf_counter() - t, time.process_time() - cpu))
    controller_module.run_job = shipped
    med = {}
    for name, runs in times.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        med[name] = wall
        print(f"{name}: median {wall:.2f} s wall, {cpu:.2f} s CPU per "
              f"{args.size} x {args.size} slice ({len(runs)} slices)", flush=True)
    a, b = med.values()
    print(f"ratio (with napari's bar / as shipped): {b / a:.2f}; "
          f"load after {os.getloadavg()[0]:.2f}")
    viewer.close()


def _forced_bar(run_job, *args, **kwargs):
    """``run_job`` with napari's progress bar shown (what the dock did before)."""
    kwargs["progress_bar"] = True
    return run_job(*args, **kwargs)


if __name__ == "__main__":
    main()
