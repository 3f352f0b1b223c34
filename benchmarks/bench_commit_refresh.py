"""Time a commit on a large image in the dock, and count the layer refreshes it makes.

A commit must not redraw whole label layers: on a 4000 x 4000 image each full
``Labels.refresh`` re-colours the whole slice (~0.16 s on a laptop core) with napari frozen.

Run (a display is needed for napari's window; Xvfb is fine)::

    xvfb-run -a python benchmarks/bench_commit_refresh.py [--size 4000] [--commits 5]

Prints the median commit time and the refreshes per commit, by layer.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "tests"),
                str(Path(__file__).resolve().parents[1] / "tests" / "_qt")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--commits", type=int, default=5)
    args = parser.parse_args()

    import napari
    import torch
    from napari.layers.base.base import Layer
    from sam_qt_helpers import open_from_menu, use_predictor

    from napari_sam.models import SamConfig, build_sam
    from napari_sam.predictor import Predictor
    from tiny_configs import TINY_VIT

    refreshed: Counter = Counter()
    original = Layer.refresh

    spent: Counter = Counter()

    def counting(self, *a, **k):
        refreshed[self.name] += 1
        t = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            spent[self.name] += time.perf_counter() - t

    Layer.refresh = counting
    torch.manual_seed(0)
    viewer = napari.Viewer(show=True)
    rng = np.random.default_rng(0)
    n = args.size
    image = rng.normal(100, 5, (n, n)).astype("float32")
    yy, xx = np.mgrid[:n, :n]
    centres = [(n * (i + 1) // (args.commits + 1), n // 2) for i in range(args.commits)]
    for r, c in centres:  # bright discs to click on
        image[(yy - r) ** 2 + (xx - c) ** 2 < (n // 40) ** 2] += 80
    viewer.add_image(image, name="big")
    _dock, w = open_from_menu(viewer)
    w.preload = False
    w.controller.sync = True
    try:  # the bundled demo model: masks of the disc clicked
        from napari_sam.models.registry import load_model

        model = load_model("demo", device="cpu")
    except Exception:  # noqa: BLE001 - not installed: a tiny random model (masks at random)
        model = build_sam(SamConfig(**TINY_VIT))
    use_predictor(w, Predictor(model, device="cpu"))
    c = w.controller
    c.overwrite = True  # (the tiny random model's masks overlap)
    times = []
    per_commit = []
    for r, col in centres:
        c.add_point(0, r, col)
        w.wait()
        refreshed.clear()
        spent.clear()
        t = time.perf_counter()
        c.commit()
        times.append(time.perf_counter() - t)
        print(f"  commit {len(times)}: {1000 * times[-1]:.0f} ms, "
              f"{int((np.asarray(c.target_layer.data) > 0).sum())} labelled pixels", flush=True)
        per_commit.append(dict(refreshed))
    target = c.target_layer
    shown = np.asarray(target._slice.image.view)  # the colours napari displays
    assert np.array_equal(shown, target._raw_to_displayed(np.asarray(target.data))), \
        "the display lags the commit"
    print(f"image {n} x {n}, {args.commits} commits: median commit "
          f"{1000 * float(np.median(times)):.0f} ms (each: "
          + ", ".join(f"{1000 * t:.0f}" for t in times) + " ms)")
    print("refreshes in the last commit:", per_commit[-1], "taking",
          {name: f"{1000 * t:.0f} ms" for name, t in spent.items()})
    viewer.close()


if __name__ == "__main__":
    main()
