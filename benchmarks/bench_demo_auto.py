"""Segment everything with the demo model on 256 x 256 slices: time and F1@0.5 per domain.

Compares, in one run and on one CPU thread, the defaults (``points_per_side="auto"``: a point
every 16 px, here 16 x 16, and ``fill_gaps``) with SAM's fixed 32 x 32 grid without the gap
pass (the defaults before #22), on the synthetic test scenes (seeds 10000 and 10001) of each
domain. The issue's target: <= 1 s per 256 x 256 slice on one idle core.

    python benchmarks/bench_demo_auto.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402
from bench_main_job import f1_at  # noqa: E402

CONFIGS = {
    "defaults (auto grid + fill_gaps)": {},
    "SAM's 32 x 32 grid, no gap pass": {"points_per_side": 32, "fill_gaps": False},
}


def main() -> None:
    import napari_sam as ns
    from napari_sam import synthetic as syn

    torch.set_num_threads(1)
    model = ns.load_model("demo")
    gens = {"nuclei": syn.nuclei_2d, "cells": syn.cells_membrane_2d,
            "em": syn.em_organelles_2d, "xray": syn.xray_2d, "underwater": syn.underwater_rgb}
    scenes = {k: [g((256, 256), seed=s) for s in (10000, 10001)] for k, g in gens.items()}
    ns.segment_everything(scenes["nuclei"][0].image, model, device="cpu")  # warm-up
    print(f"machine: {cpu_name()}, 1 thread; load before {os.getloadavg()}")
    times = {}
    for name, kw in CONFIGS.items():
        f1s, spent = [], []
        for k, samples in scenes.items():
            scores = []
            for s in samples:
                t = time.perf_counter()
                res = ns.segment_everything(s.image, model, device="cpu", **kw)
                spent.append(time.perf_counter() - t)
                scores.append(f1_at(s.labels, res.labels))
            f1s.append(f"{k} {np.mean(scores):.3f}")
        times[name] = float(np.median(spent))
        print(f"{name}: median {times[name]:.2f} s per 256 x 256 slice (embedding included); "
              f"F1@0.5 {' | '.join(f1s)}", flush=True)
    a, b = times.values()
    print(f"speed-up of the defaults: {b / a:.2f}x; load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
