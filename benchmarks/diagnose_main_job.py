"""Why the README's main job scores what it scores: ceilings of its 3D F1 with perfect prompts.

The main job (``napari-sam sample nuclei-3d`` then ``napari-sam auto``) finds nuclei in a
32 x 128 x 128 synthetic stack (seed 10000: 98 nuclei, strongly blurred along z) with the
bundled demo model. Its 3D F1@0.5 (0.46 with run 36, 0.48 with run 37; README) is short of
issue #22's 0.70. This script separates what detection, propagation and the model each cost,
on the same sample, with prompts taken from the ground truth (an oracle no real run has):

- ``oracle click, propagated``: one positive click per nucleus at its deepest pixel on its
  widest slice, all nuclei propagated at once by :func:`napari_sam.segment_volume` at its
  defaults. The best any detector can give the current pipeline (detect, then propagate).
- ``oracle click on every slice``: one click per nucleus on every slice of its true z-range,
  the best candidate kept: the model's per-slice masks with detection and z-range perfect.
- ``blob clicks``: clicks on every local maximum of a difference of Gaussians (what a blob
  detector gives) on a few slices; the share of the nuclei there that some click recovers
  with 2D IoU >= 0.5.

With ``--real`` the same is printed for the real development stack
(``../shared/data/real-nuclei-3d``; skipped with a message where it is absent).

Usage::

    python benchmarks/diagnose_main_job.py [--real] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-nuclei-3d"


def match(gt: np.ndarray, lab: np.ndarray) -> tuple[float, float]:
    """(F1@0.5 with one-to-one matching, mean over ground-truth objects of the best IoU)."""
    from scipy.optimize import linear_sum_assignment
    from skimage.metrics import contingency_table

    ct = contingency_table(gt.ravel(), lab.ravel()).toarray().astype(np.float64)
    na, nb = ct.sum(1), ct.sum(0)
    iou = (ct / (na[:, None] + nb[None, :] - ct + 1e-9))[1:, 1:]
    n_gt, n_pred = int((na[1:] > 0).sum()), int((nb[1:] > 0).sum())
    if iou.size == 0:
        return 0.0, 0.0
    r, c = linear_sum_assignment(-iou)
    tp = int((iou[r, c] >= 0.5).sum())
    best = iou[na[1:] > 0].max(1)
    return 2 * tp / max(1, n_gt + n_pred), float(best.mean())


def deepest_point(mask: np.ndarray) -> np.ndarray:
    """(1, 2) (row, col) of the pixel of ``mask`` farthest from its border."""
    from scipy import ndimage

    dist = ndimage.distance_transform_edt(mask)
    return np.array([np.unravel_index(int(dist.argmax()), dist.shape)], np.float64)


def oracle_propagated(emb, gt: np.ndarray) -> tuple[float, float]:
    """One click per nucleus on its widest slice, propagated at the defaults."""
    import napari_sam as ns
    from napari_sam.volume import SlicePrompt

    prompts = {}
    for i in np.unique(gt)[1:]:
        m = gt == i
        z = int(m.sum((1, 2)).argmax())
        prompts[int(i)] = [SlicePrompt(slice=z, points=deepest_point(m[z]), labels=np.ones(1))]
    return match(gt, np.asarray(ns.segment_volume(emb, prompts).labels))


def oracle_per_slice(emb, gt: np.ndarray, model) -> tuple[float, float]:
    """One click per nucleus on every slice of its true z-range (best of 3 candidates)."""
    import napari_sam as ns

    pred = ns.Predictor(model)
    out = np.zeros(gt.shape, np.int32)
    for z in range(gt.shape[0]):
        ids = [i for i in np.unique(gt[z])[1:] if (gt[z] == i).sum() >= 5]
        if not ids:
            continue
        pred.set_embedding(emb[z])
        for i in ids:
            masks, scores, _ = pred.predict(points=deepest_point(gt[z] == i), labels=np.ones(1))
            m = masks[int(np.argmax(scores))] & (out[z] == 0)
            out[z][m] = i
    return match(gt, out)


def blob_recall(emb, img: np.ndarray, gt: np.ndarray, model, slices) -> float:
    """Share of the nuclei (>= 30 px on the slice) that a click on some difference-of-Gaussians
    maximum recovers with 2D IoU >= 0.5, over ``slices``."""
    from scipy import ndimage
    from skimage.feature import peak_local_max

    import napari_sam as ns

    pred = ns.Predictor(model)
    found = total = 0
    for z in slices:
        pred.set_embedding(emb[z])
        plane = img[z].astype(np.float32)
        sigma = max(1.0, np.sqrt(np.median(np.bincount(gt[z].ravel())[1:] + 1) / np.pi) / 2)
        dog = ndimage.gaussian_filter(plane, sigma) - ndimage.gaussian_filter(plane, 3 * sigma)
        peaks = peak_local_max(dog, min_distance=max(1, int(sigma)), threshold_abs=0)
        ids = [i for i in np.unique(gt[z])[1:] if (gt[z] == i).sum() >= 30]
        best = dict.fromkeys(ids, 0.0)
        for p in peaks:
            masks, scores, _ = pred.predict(points=p[None] + 0.5, labels=np.ones(1))
            m = masks[int(np.argmax(scores))]
            for i in ids:
                g = gt[z] == i
                best[i] = max(best[i], (m & g).sum() / max(1, (m | g).sum()))
        found += sum(v >= 0.5 for v in best.values())
        total += len(ids)
    return found / max(1, total)


def diagnose(name: str, img: np.ndarray, gt: np.ndarray) -> None:
    """Print the three ceilings for one stack."""
    import napari_sam as ns

    model = ns.load_model("demo")
    t0 = time.perf_counter()
    emb = ns.embed(img, model)
    print(f"\n{name}: {img.shape} {img.dtype}, {len(np.unique(gt)) - 1} nuclei "
          f"(embedding {time.perf_counter() - t0:.1f} s)")
    f1, iou = oracle_propagated(emb, gt)
    print(f"  oracle click, propagated      F1@0.5 {f1:.3f}  mean best IoU {iou:.3f}")
    f1, iou = oracle_per_slice(emb, gt, model)
    print(f"  oracle click on every slice   F1@0.5 {f1:.3f}  mean best IoU {iou:.3f}")
    zs = np.linspace(gt.shape[0] * 0.25, gt.shape[0] * 0.75, 3).astype(int)
    recall = blob_recall(emb, img, gt, model, zs)
    print(f"  blob clicks (slices {[int(z) for z in zs]})  nuclei recovered {recall:.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", action="store_true", help="also the real development stack")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from napari_sam import synthetic

    print(f"{cpu_name()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__}, {args.threads} thread(s)")
    sample = synthetic.nuclei_3d((32, 128, 128), seed=10_000)
    diagnose("main job sample (nuclei-3d, seed 10000)", sample.image, sample.labels)
    if args.real:
        if not (REAL / "image.tif").exists():
            print(f"\nreal development stack: skipped, {REAL} is absent")
        else:
            import tifffile

            diagnose("real development stack", tifffile.imread(REAL / "image.tif"),
                     tifffile.imread(REAL / "labels.tif").astype(np.int32))


if __name__ == "__main__":
    main()
