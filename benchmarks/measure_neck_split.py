"""Segment everything on stacks (``napari-sam auto`` at its defaults, demo model) with and
without the split of linked objects at necks along z (``napari_sam.automatic.split_at_necks``),
scored by 3D F1@0.5 and the mean best IoU per ground-truth object.

Data: the README's sample (``nuclei-3d`` seed 10000) and other synthetic volumes (nuclei-3d
seeds 10001, 10002, 10003, 9500; xray-3d, em-3d, cells-3d seed 10000), written by
``napari-sam sample`` into a scratch folder, and the real development stack
(``../shared/data/real-nuclei-3d``; skipped with a message where it is absent).

Usage::

    python benchmarks/measure_neck_split.py [--ratios 0.5 0.6] [--floor 0.2] [--threads 1]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose_main_job import REAL, match  # noqa: E402

SYNTHETIC = [("nuclei-3d", 10000), ("nuclei-3d", 10001), ("nuclei-3d", 10002),
             ("nuclei-3d", 10003), ("nuclei-3d", 9500), ("xray-3d", 10000), ("em-3d", 10000),
             ("cells-3d", 10000)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratios", type=float, nargs="*", default=[0.5])
    ap.add_argument("--floor", type=float, default=None, help="default: the product's")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import tifffile
    import torch

    import napari_sam.automatic.linking as L
    import napari_sam.automatic.stack as S
    from napari_sam.cli import main as cli

    torch.set_num_threads(args.threads)
    product = S.split_at_necks
    floor = L.NECK_FLOOR if args.floor is None else args.floor
    root = Path(tempfile.mkdtemp(prefix="necks-"))
    data = []
    for kind, seed in SYNTHETIC:
        folder = root / f"{kind}-{seed}"
        cli(["sample", kind, "-o", str(folder), "-n", "1", "--seed", str(seed), "-q"])
        (img,) = folder.glob("*.tif")
        data.append((f"{kind} {seed}", img, folder / "ground_truth" / img.name))
    if (REAL / "image.tif").is_file():
        data.append(("real development stack", REAL / "image.tif", REAL / "labels.tif"))
    else:
        print(f"skipped the real development stack: {REAL} is not here")
    variants = [("without", None)] + [(f"ratio {r:g}, floor {floor:g}", r) for r in args.ratios]
    print("| stack | " + " | ".join(v for v, _ in variants) + " |")
    print("| --- |" + " ---: |" * len(variants))
    try:
        for name, img, gt in data:
            truth = tifffile.imread(gt)
            row = []
            for _, ratio in variants:
                S.split_at_necks = ((lambda lab: (np.asarray(lab).copy(), {})) if ratio is None
                                    else (lambda lab, r=ratio: product(lab, ratio=r, floor=floor)))
                out = root / "out"
                shutil.rmtree(out, ignore_errors=True)
                cli(["auto", str(img), "-o", str(out), "-q"])
                labels = tifffile.imread(glob.glob(str(out / "*_labels.tif"))[0])
                f1, best = match(truth, labels)
                row.append(f"{f1:.3f} / {best:.3f}")
            print(f"| {name} | " + " | ".join(row) + " |", flush=True)
    finally:
        S.split_at_necks = product
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
