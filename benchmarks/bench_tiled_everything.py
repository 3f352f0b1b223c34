"""Segment everything on a large image with tiling vs untiled vs the crops' reference (#25).

A synthetic nuclei image (default 4096 x 4096, radius 4-10 px, about one nucleus per
4000 px^2, seeded) is segmented with the demo model:

- tiled (``tiling="auto"``: 256 px windows, 32 px halo),
- untiled (``tiling=None``: the image shrunk to the model input),
- the crops' reference: segment everything on separate 256 px crops (a seeded sample of
  ``--crops`` of them), each its own image, scored on the nuclei and predictions inside a
  crop without touching its edges; the tiled result is scored on the same nuclei.

Prints F1@0.5 of each, the tiled-vs-crops difference (target: within 0.03), the nuclei on
window borders lost, split or duplicated (target 0), wall times, the peak RSS above the
model's own (target < 1.5 GB) and the machine load.

    PYTHONPATH=src python benchmarks/bench_tiled_everything.py --size 2048 --crops 16
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tests" / "automatic"))

from _machine import cpu_name  # noqa: E402


def rss_gb() -> float:
    """Current RSS of this process, GB (peak so far where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


class PeakRss:
    """The largest current RSS seen while the ``with`` block runs (sampled every 0.1 s)."""

    def __enter__(self):
        import threading

        self.peak, self._stop = rss_gb(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, rss_gb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_gb())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--crops", type=int, default=24, help="crops in the reference sample")
    ap.add_argument("--seed", type=int, default=25)
    ap.add_argument("--no-untiled", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("NAPARI_SAM_PRECISION", "fp32")

    from test_tiled_everything import (
        PARAMS,
        border_report,
        crop_boxes,
        crop_matched,
        crops_reference,
        matches,
        same_nuclei,
    )

    from napari_sam import load_model, segment_everything
    from napari_sam.synthetic import nuclei_2d
    from napari_sam.tiling import choose_tiling
    from test_automatic import _f1  # the suite's one instance-matching F1

    n = args.size
    print(f"machine: {cpu_name()}, {os.cpu_count()} cpus, load {os.getloadavg()}")
    t = time.perf_counter()
    scene = nuclei_2d((n, n), seed=args.seed, radius=(4, 10), n_objects=n * n // 4200,
                      min_size=20)
    print(f"scene {n} x {n}: {scene.labels.max()} nuclei ({time.perf_counter() - t:.0f} s)")
    model = load_model("demo")
    segment_everything(scene.image[:256, :256], model, tiling=None, **PARAMS)  # warm up
    base = rss_gb()
    tiling = choose_tiling((n, n), model.img_size)
    print(f"tiling: {len(tiling)} windows of {tiling.window} px, halo {tiling.halo}; "
          f"RSS (current) after the image, model and warm-up {base:.2f} GB")

    t = time.perf_counter()
    with PeakRss() as watch:
        tiled = segment_everything(scene.image, model, **PARAMS)
    t_tiled = time.perf_counter() - t
    peak = watch.peak - base
    print(f"tiled: {tiled.labels.max()} objects in {t_tiled:.0f} s "
          f"({t_tiled / len(tiling):.2f} s/window); peak RSS above the model's "
          f"{peak:.2f} GB (target < 1.5); stats {tiled.stats}; load {os.getloadavg()}")

    f1_untiled = float("nan")
    if not args.no_untiled:
        t = time.perf_counter()
        untiled = segment_everything(scene.image, model, tiling=None, **PARAMS)
        f1_untiled = _f1(scene.labels, untiled.labels)
        print(f"untiled: {untiled.labels.max()} objects in {time.perf_counter() - t:.0f} s")

    boxes = crop_boxes((n, n), model.img_size)
    pick = np.random.default_rng(args.seed).choice(len(boxes), min(args.crops, len(boxes)),
                                                   replace=False)
    boxes = [boxes[i] for i in sorted(pick)]
    t = time.perf_counter()
    gt_sel, crop_pred, _ = crops_reference(scene.image, scene.labels, model, model.img_size,
                                           boxes=boxes, **PARAMS)
    t_crops = time.perf_counter() - t
    f1_crops = _f1(gt_sel, crop_pred)
    f1_tiled = _f1(gt_sel, same_nuclei(tiled.labels, boxes))
    print(f"crops' reference: {len(boxes)} crops in {t_crops:.0f} s, {gt_sel.max()} nuclei")
    print(f"F1@0.5 whole image: tiled {_f1(scene.labels, tiled.labels):.3f}, "
          f"untiled {f1_untiled:.3f}")
    print(f"F1@0.5 on the crops' nuclei: crops {f1_crops:.3f}, tiled {f1_tiled:.3f}, "
          f"tiled - crops {f1_tiled - f1_crops:+.3f} (target >= -0.03)")
    counts = border_report(scene.labels, tiled.labels,
                           crop_matched(scene.labels, gt_sel, crop_pred), tiling)
    print(f"nuclei on window borders: {counts} (target: lost 0, split_or_duplicated 0)")
    if counts["lost_ids"]:  # what the lost ones are: the crops' and the tiled best IoU
        _, _, crop_best = matches(scene.labels, crop_pred)
        _, _, tiled_best = matches(scene.labels, tiled.labels)
        for i in counts["lost_ids"]:
            rr, cc = np.nonzero(scene.labels == i)
            owners = sorted({tiling.owner(r, c).index for r, c in zip(rr, cc)})
            print(f"  lost nucleus {i}: {rr.size} px, crops' best IoU {crop_best[i]:.2f}, "
                  f"tiled best IoU {tiled_best[i]:.2f}, window cores {owners}")
    print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
