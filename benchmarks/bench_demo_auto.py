"""Segment everything with the demo model on 256 x 256 slices: time and F1@0.5 per domain.

Compares, in one run and on one CPU thread, the defaults (``points_per_side="auto"``: a point
every 16 px, here 16 x 16, and ``fill_gaps``) with SAM's fixed 32 x 32 grid without the gap
pass (the defaults before #22), on the synthetic test scenes (seeds 10000 and 10001) of each
domain. The issue's target: <= 1 s per 256 x 256 slice on one idle core.

    python benchmarks/bench_demo_auto.py                        # 256 x 256, 1 thread
    python benchmarks/bench_demo_auto.py --size 128 --threads 2
    git show REV:src/napari_sam/automatic/grid_decoder.py > /tmp/gd.py
    python benchmarks/bench_demo_auto.py --baseline-decoder /tmp/gd.py   # defaults, both decoders
"""

from __future__ import annotations

import argparse
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

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="slice side in pixels (256)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    ap.add_argument("--baseline-decoder", metavar="FILE",
                    help="a grid_decoder.py of another version: time the defaults with its "
                         "GridDecoder and with the current one, interleaved, in this run")
    args = ap.parse_args()
    side = args.size
    torch.set_num_threads(args.threads)
    model = ns.load_model("demo")
    gens = {"nuclei": syn.nuclei_2d, "cells": syn.cells_membrane_2d,
            "em": syn.em_organelles_2d, "xray": syn.xray_2d, "underwater": syn.underwater_rgb}
    scenes = {k: [g((side, side), seed=s) for s in (10000, 10001)] for k, g in gens.items()}
    ns.segment_everything(scenes["nuclei"][0].image, model, device="cpu")  # warm-up
    print(f"machine: {cpu_name()}, {args.threads} thread(s); load before {os.getloadavg()}")
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
        print(f"{name}: median {times[name]:.2f} s per {side} x {side} slice (embedding included); "
              f"F1@0.5 {' | '.join(f1s)}", flush=True)
    a, b = times.values()
    print(f"speed-up of the defaults: {b / a:.2f}x; load after {os.getloadavg()[0]:.2f}")
    if args.baseline_decoder:
        compare_decoders(model, scenes, args.baseline_decoder, side)


def compare_decoders(model, scenes, path: str, side: int) -> None:
    """Time the defaults with the GridDecoder of ``path`` and the current one, alternating
    per slice, and check that both give the same labels."""
    import importlib.util

    import napari_sam as ns
    from napari_sam.automatic import crops

    spec = importlib.util.spec_from_file_location("baseline_grid_decoder", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    decoders = {"baseline": mod.GridDecoder, "current": crops.GridDecoder}
    spent = {k: [] for k in decoders}
    same = True
    try:
        for samples in scenes.values():
            for s in samples:
                labels = []
                for name, cls in decoders.items():
                    crops.GridDecoder = cls
                    t = time.perf_counter()
                    labels.append(ns.segment_everything(s.image, model, device="cpu").labels)
                    spent[name].append(time.perf_counter() - t)
                same &= bool(np.array_equal(*labels))
    finally:
        crops.GridDecoder = decoders["current"]
    a, b = (float(np.median(v)) for v in spent.values())
    print(f"defaults, baseline decoder {a:.2f} s, current {b:.2f} s per {side} x {side} slice "
          f"({a / b:.2f}x); same labels: {same}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
