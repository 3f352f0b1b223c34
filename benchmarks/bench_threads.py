"""CPU thread policy: torch's default threads vs the options, idle and with busy cores.

    python benchmarks/bench_threads.py                 # both jobs, as found and with busy cores
    python benchmarks/bench_threads.py --job small --busy 2

Each configuration runs in a fresh process (OpenMP reads its environment when torch loads):

- ``torch default``: one thread per core, OpenMP's default wait policy (threads spin a while
  at each barrier);
- ``PASSIVE``: the same threads with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep);
- ``1 thread``: ``OMP_NUM_THREADS=1``;
- ``policy``: :func:`napari_sam.device.configure_threads` (the cores other sessions keep
  busy are left to them, threads of our own session, such as the spinners here, are met with
  one torch thread per core; PASSIVE). Slice workers do not apply to these jobs (one image at
  a time): ``benchmarks/bench_main_job.py`` measures them.

Jobs: ``small`` is segment everything with the demo model on 128 x 128 slices (seconds per
slice); ``large`` is ViT-B (random weights) embedding one 1024 x 1024 image through
``Predictor.set_image`` at its default precision (seconds). "busy" starts ``--busy`` processes
that spin (``while True: pass``), one per core, for the whole measurement. The load average is
printed with every row. No reference implementation: the ratios are against torch's default in
the same condition.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "torch default": {},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "policy": None,  # configure_threads() in the child
}


def _child(job: str, config: str, repeats: int) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    if config == "policy":
        from napari_sam.device import configure_threads

        configure_threads()
    import numpy as np
    import torch

    import napari_sam as ns

    times = []
    if job == "small":
        from napari_sam.synthetic import nuclei_2d

        model = ns.load_model("demo")
        imgs = [nuclei_2d((128, 128), seed=9000 + i).image for i in range(repeats + 1)]
        for i, img in enumerate(imgs):
            t0 = time.perf_counter()
            ns.segment_everything(img, model, device="cpu")
            if i:  # the first one is a warm-up
                times.append(time.perf_counter() - t0)
    else:
        from napari_sam.models import CONFIGS as MC
        from napari_sam.models import build_sam

        torch.manual_seed(0)
        pred = ns.Predictor(build_sam(MC["vit_b"]), device="cpu")
        rng = np.random.default_rng(0)
        pred.set_image(rng.random((256, 256)))  # warm-up (kernels, allocations)
        for _ in range(repeats):
            img = rng.random((1024, 1024))
            t0 = time.perf_counter()
            pred.set_image(img)
            times.append(time.perf_counter() - t0)
    print(json.dumps({"threads": torch.get_num_threads(), "seconds": float(np.median(times)),
                      "wait": os.environ.get("OMP_WAIT_POLICY", "(default)")}))


def _run(job: str, config: str, repeats: int) -> dict:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "NAPARI_SAM_THREADS", "MKL_NUM_THREADS"):
        env.pop(k, None)
    env.update(CONFIGS[config] or {})
    out = subprocess.run([sys.executable, __file__, "--child", job, config, str(repeats)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--job", choices=("small", "large", "both"), default="both")
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 2,
                    help="spinning processes for the busy condition (default: one per core)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--conditions", default="as found,busy")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return _child(a.child[0], a.child[1], int(a.child[2]))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _machine import cpu_name

    print(f"# {cpu_name()}, {os.cpu_count()} logical CPUs")
    jobs = ("small", "large") if a.job == "both" else (a.job,)
    for cond in a.conditions.split(","):
        spinners = []
        if cond == "busy":
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                        for _ in range(a.busy)]
            time.sleep(5)
        try:
            for job in jobs:
                base = None
                for config in CONFIGS:
                    load0 = os.getloadavg()[0]
                    r = _run(job, config, a.repeats)
                    base = base or r["seconds"]
                    print(f"{cond:8s} {job:5s} {config:14s} threads={r['threads']} "
                          f"{r['seconds']:8.2f} s  x{base / r['seconds']:5.2f} vs default  "
                          f"load {load0:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            for p in spinners:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
