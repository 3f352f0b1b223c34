"""The first click on a large (tiled) image while the dock still embeds it: click to preview.

    xvfb-run -a python benchmarks/bench_large_first_click.py [--size 3000] [--rounds 2]

A 2D image larger than the model input is embedded in windows (docs/tiling.md): with the
demo model a 3000 x 3000 image has 196 windows of 256 px. The dock starts embedding the
visible slice as soon as an image and a model are chosen (the preload). Until session 38 a
click during that preload waited for every window of the slice; now the preload stops for
it (after the window under way), the click is decoded in the windows holding it, encoded on
demand, and the preload goes on afterwards.

Each round opens a fresh viewer and dock the way napari's Plugins menu does (jobs in worker
threads, the demo model), adds the image, waits until the preload embeds tiles plus
``--think`` seconds, then clicks a nucleus with a real mouse event on the canvas and times
click -> preview drawn on screen. Rounds alternate between the dock as shipped ("click
first") and the reference, the dock with the click waiting for the preload as before (its
``pause_for_click`` and ``decode_on_demand`` switched off), measured in the same run; the
script prints the median of each and their ratio, and how many windows of the slice were
still missing when the preview appeared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "_qt"), str(ROOT / "tests"), str(ROOT / "benchmarks")]
sys.path.insert(0, str(ROOT / "src"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=3000, help="image side in pixels (3000)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each mode (2)")
    ap.add_argument("--think", type=float, default=1.0,
                    help="seconds of tile embedding before the click (1.0)")
    ap.add_argument("--timeout", type=float, default=600.0)
    a = ap.parse_args(argv)

    import napari
    import numpy as np
    from _machine import cpu_name
    from napari.qt import get_qapp
    from sam_qt_helpers import canvas_click, open_from_menu

    from napari_sam._qt.controller import AnnotationController
    from napari_sam.synthetic import HELDOUT_SEED_START, nuclei_2d

    s = nuclei_2d((a.size, a.size), seed=HELDOUT_SEED_START)
    ids = np.unique(s.labels)[1:]
    centres = np.array([np.argwhere(s.labels == v).mean(0) for v in ids])
    target = centres[np.argmin(np.abs(centres - a.size / 2).sum(1))].round().tolist()
    app = get_qapp()
    shipped = {n: getattr(AnnotationController, n, None)
               for n in ("pause_for_click", "decode_on_demand")}
    modes = ["reference", "click first"] if all(shipped.values()) else ["reference"]

    def reference(on: bool) -> None:
        """The click waits for the preload, as before session 38 (on) or as shipped."""
        for name, fn in shipped.items():
            if fn is not None:
                off = "" if name == "pause_for_click" else False
                setattr(AnnotationController, name,
                        (lambda self, *args, off=off: off) if on else fn)

    def pump(until, what: str) -> float:
        end = time.perf_counter() + a.timeout
        while time.perf_counter() < end:
            app.processEvents()
            if until():
                return time.perf_counter()
            time.sleep(0.002)
        raise TimeoutError(f"{what} after {a.timeout} s")

    def one_round(mode: str) -> tuple[float, int, float]:
        reference(mode == "reference")
        viewer = napari.Viewer(show=True)
        _, widget = open_from_menu(viewer)
        c = widget.controller
        app.processEvents()
        viewer.add_image(s.image, name="nuclei")
        pump(lambda: c.job is not None and c.job.phase == "embedding tiles", "no tile embedding")
        t_think = time.perf_counter() + a.think
        pump(lambda: time.perf_counter() >= t_think, "")
        assert c.job is not None and c.job.running, "the preload ended before the click"
        viewer.layers.selection.active = c.points_layer
        t1 = time.perf_counter()
        canvas_click(viewer, *target)

        def drawn():
            if not c.previews or c.preview_layer is None:
                return False
            viewer.window._qt_viewer.canvas.native.repaint()
            return True

        t2 = pump(drawn, "no preview")
        missing = sum(1 for i in range(len(c.emb.tiling)) if c.emb.window_stack(i).missing([0]))
        t3 = pump(lambda: c.job is None and not c.emb.missing([0]), "the slice not embedded")
        print(f"  {mode:>11}: click -> preview {t2 - t1:6.2f} s ({missing} of "
              f"{len(c.emb.tiling)} windows still to embed then); click -> slice embedded "
              f"{t3 - t1:6.2f} s; score {c.previews[0].score:.2f}", flush=True)
        viewer.close()
        app.processEvents()
        return t2 - t1, missing, t3 - t1

    load0 = os.getloadavg()
    print(f"machine: {cpu_name()}; load before {load0}; {a.size} x {a.size} px, demo model, "
          f"click after {a.think:.1f} s of tile embedding", flush=True)
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(a.rounds):
        for mode in modes:
            times[mode].append(one_round(mode)[0])
    reference(False)
    med = {m: statistics.median(v) for m, v in times.items()}
    for m, v in med.items():
        print(f"median click -> preview, {m}: {v:.2f} s")
    if len(med) == 2:
        print(f"ratio reference / click first: x{med['reference'] / med['click first']:.1f}")
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
