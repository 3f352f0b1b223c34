"""The README's main job, timed as a new user runs it (the install excluded).

Runs, in a fresh temporary folder, exactly the README's commands after the install:

    napari-sam sample nuclei-3d -o data/
    napari-sam auto "data/*.tif" -o out/ --preview

and prints the wall time of each and in all, and the main job's 3D F1@0.5 against the ground
truth the sample writes beside it. With ``--busy N`` the same job runs again while N other
processes keep a core each busy (a pure-Python loop), and the ratio busy / idle is printed:
the issue's target is <= 60 s idle on a 2-core machine and at most 1.5x that with one busy
process per core.

``--policies`` compares CPU thread policies in the same run (each ``auto`` in a fresh
process, the policy patched into :mod:`napari_sam.device` before the command starts):

- ``default``: what the CLI does (:func:`napari_sam.device.configure_threads`: busy cores
  measured over 0.2 s, our session's runnable threads told apart from other sessions' CPU
  time; slices segmented by a pool of workers of one torch thread each);
- ``load``: the policy of 2026-12-02 (threads = cores - round(1-minute load average), one
  slice at a time);
- ``free``: threads = the cores free over a 0.2 s window of ``/proc/stat`` (every busy core
  counted as taken), one slice at a time;
- ``workers=N``: ``default`` with N slice workers;
- ``src=DIR``: ``default`` with the package from another checkout's ``src`` folder DIR (put
  first on ``PYTHONPATH``), e.g. a worktree of an earlier commit: before and after a change
  measured in the same run, under the same load.

``--rounds R`` alternates idle and busy runs R times (idle, busy, idle, busy, ...), which
spreads the noise of a shared machine over both conditions; every run prints its load.

Usage::

    python benchmarks/bench_main_job.py              # idle run only
    python benchmarks/bench_main_job.py --busy 2     # idle, then with 2 busy processes
    python benchmarks/bench_main_job.py --busy 2 --rounds 2 --policies default,load,free
    git worktree add /tmp/before HEAD~1
    python benchmarks/bench_main_job.py --busy 2 --rounds 2 --policies default,src=/tmp/before/src

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


def _cli(policy: str = "default") -> list[str]:
    if policy != "default" and not policy.startswith("src="):  # the policy patched in before the CLI's entry point
        return [sys.executable, "-c", _PATCH.format(policy=policy)]
    exe = shutil.which("napari-sam", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "napari_sam.cli"]


_PATCH = """
import sys
import napari_sam.device as d
policy = {policy!r}
if policy == "load":
    d.measure_busy_cores = lambda *a, **k: None  # falls back to the load average
if policy == "free":
    orig_measure = d.measure_busy_cores
    def measure(*a, **k):
        m = orig_measure(*a, **k)
        return None if m is None else d.BusyCores(0.0, m.same_group + m.other_groups)
    d.measure_busy_cores = measure
if policy in ("load", "free"):
    d.MAX_WORKERS_PER_CORE = 0  # one slice worker
if policy.startswith("workers="):
    n = int(policy.split("=")[1])
    orig = d.thread_policy
    d.thread_policy = lambda *a, **k: orig(*a, **k)._replace(workers=n)
from napari_sam.cli.app import entry_point
sys.argv[0] = "napari-sam"
sys.exit(entry_point())
"""


def run_main_job(folder: Path, policy: str = "default") -> dict:
    """Run the README's two commands in ``folder``; return wall times and the 3D F1."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if policy.startswith("src="):  # another checkout's package, first on the path
        src = str(Path(policy[4:]).resolve())
        if not (Path(src) / "napari_sam" / "__init__.py").is_file():
            raise SystemExit(f"{policy}: no napari_sam package in {src}")
        env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    t0 = time.perf_counter()
    subprocess.run([*_cli(), "sample", "nuclei-3d", "-o", "data/"], cwd=folder, env=env,
                   check=True, capture_output=True)
    t1 = time.perf_counter()
    out = subprocess.run([*_cli(policy), "auto", "data/*.tif", "-o", "out/", "--preview"],
                         cwd=folder, env=env, check=True, capture_output=True, text=True)
    t2 = time.perf_counter()
    note = [ln for ln in out.stderr.splitlines() if "device " in ln]
    return {"sample_s": t1 - t0, "auto_s": t2 - t1, "total_s": t2 - t0,
            "f1": score_main_job(folder), "device": note[0].split("device ", 1)[1] if note else "",
            "labels": (folder / "out" / "nuclei-3d_seed10000_labels.tif").read_bytes()}


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
    ap.add_argument("--rounds", type=int, default=1, help="idle/busy alternations")
    ap.add_argument("--policies", default="default",
                    help="comma-separated: default, load, free, workers=N")
    args = ap.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; load before: {os.getloadavg()}")
    conditions = [("idle", 0)] + ([("busy", args.busy)] if args.busy else [])
    results: dict = {}
    labels: dict = {}
    for rnd in range(args.rounds):
        for name, n_busy in conditions:
            for policy in args.policies.split(","):
                r = _timed(policy, n_busy)
                results.setdefault((policy, name), []).append(r["total_s"])
                labels.setdefault(r["labels"], []).append(f"{policy}/{name}")
                print(f"round {rnd + 1} {name:4s} {policy:10s} ({n_busy} busy): sample "
                      f"{r['sample_s']:.1f} s, auto {r['auto_s']:.1f} s, total "
                      f"{r['total_s']:.1f} s; F1@0.5 {r['f1']:.3f}; load {r['load0']:.2f} -> "
                      f"{r['load1']:.2f}; {r['device']}", flush=True)
    print(f"label files: {len(labels)} distinct ({'identical' if len(labels) == 1 else 'DIFFER'})")
    for policy in args.policies.split(","):
        idle = sum(results[(policy, "idle")]) / args.rounds
        line = f"{policy:10s} idle mean {idle:.1f} s (target <= 60 s)"
        if args.busy:
            busy = sum(results[(policy, "busy")]) / args.rounds
            line += f", busy mean {busy:.1f} s, busy / idle {busy / idle:.2f}x (target <= 1.5x)"
        print(line)


def _timed(policy: str, n_busy: int) -> dict:
    """One run of the main job with ``n_busy`` spinning processes started just before."""
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(n_busy)]
    for p in spinners:
        p.start()
    load0 = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            r = run_main_job(Path(tmp), policy)
    finally:
        for p in spinners:
            p.terminate()
            p.join()
    return {**r, "load0": load0, "load1": os.getloadavg()[0]}


if __name__ == "__main__":
    main()
