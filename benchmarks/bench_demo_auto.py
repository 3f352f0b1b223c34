"""Segment everything with the demo model on 256 x 256 slices: time and F1@0.5 per domain.

Compares, in one run and on one CPU thread, the defaults (``points_per_side="auto"``: a point
every 16 px, here 16 x 16, and ``fill_gaps``) with SAM's fixed 32 x 32 grid without the gap
pass (the defaults before #22), on the synthetic test scenes (seeds 10000 and 10001) of each
domain. The issue's target: <= 1 s per 256 x 256 slice on one idle core.

    python benchmarks/bench_demo_auto.py                        # 256 x 256, 1 thread
    python benchmarks/bench_demo_auto.py --size 128 --threads 2
    git show REV:src/napari_sam/automatic/grid_decoder.py > /tmp/gd.py
    python benchmarks/bench_demo_auto.py --baseline-decoder /tmp/gd.py   # defaults, both decoders

With ``--baseline-decoder`` the defaults also run with another version's GridDecoder,
alternating per slice, and both print their time and F1@0.5 per domain (#22: the decoder
before the bf16 path, ``git show 0c8b474:src/napari_sam/automatic/grid_decoder.py``).
CPU time (``time.process_time``) is printed beside wall time: on a shared machine it is the
steadier of the two.
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
    ap.add_argument("--seeds", default="10000,10001",
                    help="comma-separated scene seeds per domain (10000,10001)")
    ap.add_argument("--baseline-decoder", metavar="FILE",
                    help="a grid_decoder.py of another version: time the defaults with its "
                         "GridDecoder and with the current one, interleaved, in this run")
    args = ap.parse_args()
    side = args.size
    torch.set_num_threads(args.threads)
    model = ns.load_model("demo")
    gens = {"nuclei": syn.nuclei_2d, "cells": syn.cells_membrane_2d,
            "em": syn.em_organelles_2d, "xray": syn.xray_2d, "underwater": syn.underwater_rgb}
    seeds = [int(v) for v in args.seeds.split(",")]
    scenes = {k: [g((side, side), seed=s) for s in seeds] for k, g in gens.items()}
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
    """Time the defaults with the GridDecoder of ``path`` (at the precision it supports:
    float32 on the CPU before #22) and the current one, alternating per slice, and print
    both F1@0.5 per domain and how many label images are identical."""
    import importlib.util

    import napari_sam as ns
    from napari_sam.automatic import crops

    spec = importlib.util.spec_from_file_location("baseline_grid_decoder", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    current = (crops.GridDecoder, crops.grid_precision)

    def baseline_precision(device, dtype):
        p = current[1](device, dtype)
        return p if p in mod.GridDecoder.PRECISIONS else "fp32"

    decoders = {"baseline": (mod.GridDecoder, baseline_precision), "current": current}
    spent = {k: [] for k in decoders}
    cpu = {k: [] for k in decoders}
    f1s = {k: {d: [] for d in scenes} for k in decoders}
    same = 0
    try:
        for domain, samples in scenes.items():
            for s in samples:
                labels = []
                for name, (cls, prec) in decoders.items():
                    crops.GridDecoder, crops.grid_precision = cls, prec
                    t, c = time.perf_counter(), time.process_time()
                    res = ns.segment_everything(s.image, model, device="cpu")
                    spent[name].append(time.perf_counter() - t)
                    cpu[name].append(time.process_time() - c)
                    f1s[name][domain].append(f1_at(s.labels, res.labels))
                    labels.append(res.labels)
                same += bool(np.array_equal(*labels))
    finally:
        crops.GridDecoder, crops.grid_precision = current
    for name in decoders:
        f1 = " | ".join(f"{d} {np.mean(v):.3f}" for d, v in f1s[name].items())
        print(f"defaults, {name} decoder: median {np.median(spent[name]):.2f} s wall, "
              f"{np.median(cpu[name]):.2f} s CPU per {side} x {side} slice; F1@0.5 {f1}")
    a, b = (float(np.median(v)) for v in spent.values())
    n = sum(len(v) for v in scenes.values())
    print(f"speed-up {a / b:.2f}x (wall); identical label images: {same}/{n}; "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
