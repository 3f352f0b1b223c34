"""The README's main job, timed as a new user runs it (the install excluded).

Runs, in a fresh temporary folder, exactly the README's commands after the install:

    napari-sam sample nuclei-3d -o data/
    napari-sam auto "data/*.tif" -o out/ --preview

and prints the wall time of each and in all, and the main job's 3D F1@0.5 against the ground
truth the sample writes beside it. With ``--busy N`` the same job runs again while N other
processes keep a core each busy (a pure-Python loop), and the ratio busy / idle is printed:
the issue's target is <= 60 s idle on a 2-core machine and at most 1.5x that with one busy
process per core.

Usage::

    python benchmarks/bench_main_job.py              # idle run only
    python benchmarks/bench_main_job.py --busy 2     # idle, then with 2 busy processes

Record the output, with the machine and its load (printed), in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402


def _spin() -> None:  # a process that keeps one core busy
    while True:
        pass


def _cli() -> list[str]:
    exe = shutil.which("napari-sam", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "napari_sam.cli"]


def run_main_job(folder: Path) -> dict:
    """Run the README's two commands in ``folder``; return wall times and the 3D F1."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    t0 = time.perf_counter()
    subprocess.run([*_cli(), "sample", "nuclei-3d", "-o", "data/"], cwd=folder, env=env,
                   check=True, capture_output=True)
    t1 = time.perf_counter()
    subprocess.run([*_cli(), "auto", "data/*.tif", "-o", "out/", "--preview"], cwd=folder,
                   env=env, check=True, capture_output=True)
    t2 = time.perf_counter()
    return {"sample_s": t1 - t0, "auto_s": t2 - t1, "total_s": t2 - t0,
            "f1": score_main_job(folder)}


def score_main_job(folder: Path) -> float:
    """3D F1@0.5 of the main job's labels against the sample's ground truth (mean over files)."""
    import numpy as np
    import tifffile

    scores = []
    for gt_path in sorted((folder / "data" / "ground_truth").glob("*.tif")):
        out = folder / "out" / f"{gt_path.stem}_labels.tif"
        scores.append(f1_at(tifffile.imread(gt_path), tifffile.imread(out), 0.5))
    return float(np.mean(scores))


def f1_at(gt, pred, thresh: float = 0.5) -> float:
    """F1 of one-to-one instance matching (Hungarian on IoU) at IoU >= ``thresh``."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    gt, pred = np.asarray(gt, np.int64), np.asarray(pred, np.int64)
    ng, npred = int(gt.max()), int(pred.max())
    if ng == 0 or npred == 0:
        return float(ng == npred)
    both = (gt > 0) & (pred > 0)
    inter = np.zeros((ng + 1, npred + 1))
    np.add.at(inter, (gt[both], pred[both]), 1)
    ag = np.bincount(gt.ravel(), minlength=ng + 1)
    ap = np.bincount(pred.ravel(), minlength=npred + 1)
    iou = (inter / np.maximum(ag[:, None] + ap[None] - inter, 1))[1:, 1:]
    ri, ci = linear_sum_assignment(-iou)
    return 2 * int((iou[ri, ci] >= thresh).sum()) / (ng + npred)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy", type=int, default=0, metavar="N",
                    help="also run with N busy processes (one per core to load the machine)")
    args = ap.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; load before: {os.getloadavg()}")
    runs = [("idle", 0)] + ([("busy", args.busy)] if args.busy else [])
    results = {}
    for name, n_busy in runs:
        spinners = [mp.Process(target=_spin, daemon=True) for _ in range(n_busy)]
        for p in spinners:
            p.start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                r = run_main_job(Path(tmp))
        finally:
            for p in spinners:
                p.terminate()
        results[name] = r
        print(f"{name:5s} ({n_busy} busy processes): sample {r['sample_s']:.1f} s, auto "
              f"{r['auto_s']:.1f} s, total {r['total_s']:.1f} s; 3D F1@0.5 {r['f1']:.3f}; "
              f"load after {os.getloadavg()[0]:.2f}", flush=True)
    if "busy" in results:
        ratio = results["busy"]["total_s"] / results["idle"]["total_s"]
        print(f"busy / idle: {ratio:.2f}x (target <= 1.5x)")
    print(f"idle total: {results['idle']['total_s']:.1f} s (target <= 60 s on an idle 2-core "
          f"machine)")


if __name__ == "__main__":
    main()
