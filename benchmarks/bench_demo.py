"""Latency of the bundled demo model on this machine (not a timed test).

    python benchmarks/bench_demo.py [--threads N] [--repeats 20]

Measures, through the public Predictor on the CPU:
- embedding: ``Predictor.set_image`` of a 512 x 512 uint16 slice (contrast mapping, resize
  to 256, normalisation, CNN encoder), target <= 0.3 s;
- click-to-mask: ``Predictor.predict`` of one positive click (3 candidates, upsampled to
  512 x 512), target <= 15 ms; and one click plus a previous-mask prompt (one candidate).

Prints the median and the best of ``--repeats`` runs and the ratio to each target, plus the
machine and the load average (other jobs on a shared machine slow everything down).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _machine import cpu_name  # noqa: E402


def _time(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def main(argv=None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    import napari_sam as ns
    from napari_sam.models.registry import where
    from napari_sam.synthetic import HELDOUT_SEED_START, nuclei_2d

    if where("demo").is_file():
        model, which = ns.load_model("demo"), "bundled demo weights"
    else:  # same architecture, random weights: the same speed
        from napari_sam.models.build import SamConfig, build_sam
        from napari_sam.training.demo import DEMO_CONFIG

        model, which = build_sam(SamConfig(**DEMO_CONFIG)), "demo architecture, untrained"
    pred = ns.Predictor(model, device="cpu")
    s = nuclei_2d((512, 512), seed=HELDOUT_SEED_START)
    image = s.image
    rc = np.argwhere(s.labels == 1).mean(0).round().tolist()

    # one embedding of the whole slice, as recorded before tiling existed (a 512 px slice is
    # above 1.5 demo inputs, so tiling="auto" would embed it in 4 windows)
    emb_med, emb_min = _time(lambda: pred.set_image(image, tiling=None), a.repeats)
    pred.set_image(image, tiling=None)
    click_med, click_min = _time(lambda: pred.predict(points=[rc], labels=[1]), a.repeats * 5)
    _, _, logits = pred.predict(points=[rc], labels=[1])
    prev = logits[0]
    refine_med, refine_min = _time(
        lambda: pred.predict(points=[rc, [rc[0] + 3, rc[1]]], labels=[1, 1], mask_input=prev,
                             multimask=False),
        a.repeats * 5,
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"model: {which}")
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load:.1f}")
    rows = [
        ("embedding 512x512 slice", emb_med, emb_min, 0.3),
        ("click-to-mask (3 candidates)", click_med, click_min, 0.015),
        ("click + mask prompt (1 mask)", refine_med, refine_min, 0.015),
    ]
    print(f"{'':32s} {'median':>10s} {'best':>10s} {'target':>8s} {'median/target':>14s}")
    for name, med, best, target in rows:
        print(f"{name:32s} {med * 1e3:8.1f}ms {best * 1e3:8.1f}ms {target * 1e3:6.0f}ms "
              f"{med / target:14.2f}")
    return {"embedding_s": emb_med, "click_s": click_med, "refine_s": refine_med}


if __name__ == "__main__":
    main()
