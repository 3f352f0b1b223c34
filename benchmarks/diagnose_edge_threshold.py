"""Would an edge-aligned mask threshold help one-click masks? (a diagnosis, not a default)

For every object (one positive click at its most central pixel, the candidate with the
highest predicted IoU, as ``napari_sam.training.evaluation.evaluate``): the IoU of the mask
at each logit threshold of ``--thresholds``, at the model's own threshold (0), and at the
threshold whose mask boundary lies on the strongest image edges (the largest mean gradient
magnitude, Gaussian sigma 1 px, of the contrast-normalised image along the boundary of the
clicked component). Run on the real development stack (widest slice of each nucleus) when
it is there, and on the synthetic held-out scenes of every 2D domain.

    python benchmarks/diagnose_edge_threshold.py
    python benchmarks/diagnose_edge_threshold.py --thresholds=-2,-1,0,1 --model path/to/model.pt

Docs: docs/benchmarks.md, "An edge-aligned mask threshold (#23, 2026-12-04, session 21)".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose_main_job import REAL  # noqa: E402  (the development stack)


def edge_strength(image: np.ndarray) -> np.ndarray:
    """(Y, X) gradient magnitude of the image scaled to its 0.5-99.5 percentiles."""
    lo, hi = np.percentile(image, (0.5, 99.5))
    x = np.clip((image.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    return ndi.gaussian_gradient_magnitude(x, 1.0)


def clicked_ious(pred, emb, image, objects, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) IoU and boundary edge strength of each object's clicked component per threshold."""
    from napari_sam.automatic.statistics import UpsamplingGeometry
    from napari_sam.training.prompts import central_point

    pred.set_embedding(emb)
    model = pred.model
    geom = UpsamplingGeometry(4 * model.embedding_size, pred.img_size, emb.input_size,
                              emb.original_size, "cpu")
    edges = edge_strength(image)
    ious, strengths = [], []
    for g in objects:
        r, c = central_point(g)
        _, scores, logits = pred.predict(points=np.array([[r, c]], float), labels=np.ones(1))
        k = int(np.argmax(scores))
        up = geom.upsample(torch.as_tensor(logits[k : k + 1]))[0].numpy()
        row_i, row_s = [], []
        for t in thresholds:
            comp, _ = ndi.label(up > t)
            lab = comp[int(r), int(c)]
            if lab == 0:
                row_i.append(0.0)
                row_s.append(-1.0)
                continue
            m = comp == lab
            row_i.append((m & g).sum() / max(1, (m | g).sum()))
            ring = m & ~ndi.binary_erosion(m)
            row_s.append(float(edges[ring].mean()) if ring.any() else -1.0)
        ious.append(row_i)
        strengths.append(row_s)
    return np.array(ious), np.array(strengths)


def report(name: str, ious: np.ndarray, strengths: np.ndarray, thresholds) -> None:
    zero = int(np.argmin(np.abs(np.asarray(thresholds))))
    picked = ious[np.arange(len(ious)), strengths.argmax(1)]
    per_t = "  ".join(f"{t:+.1f}: {v:.3f}" for t, v in zip(thresholds, ious.mean(0)))
    print(f"{name:12s} n={len(ious):3d}  threshold 0: {ious[:, zero].mean():.3f}  "
          f"edge-aligned: {picked.mean():.3f}  |  {per_t}", flush=True)


def main(argv=None) -> None:
    import tifffile

    import napari_sam as ns
    from napari_sam import synthetic as syn

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo", help="registry name or checkpoint path")
    ap.add_argument("--thresholds", default="-1,-0.5,0,0.5,1",
                    help="logit thresholds to choose from (must include 0)")
    ap.add_argument("--seeds", default="10000,10001", help="synthetic scene seeds")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ts = [float(v) for v in args.thresholds.split(",")]
    if 0.0 not in ts:
        ap.error("--thresholds must include 0 (the model's own threshold)")
    model = ns.load_model(args.model)
    pred = ns.Predictor(model)
    if (REAL / "image.tif").exists():
        img = tifffile.imread(REAL / "image.tif")
        gt = tifffile.imread(REAL / "labels.tif").astype(np.int32)
        emb = ns.embed(img, model)
        rows = []
        for i in np.unique(gt)[1:]:
            m = gt == i
            z = int(m.sum((1, 2)).argmax())
            rows.append(clicked_ious(pred, emb[z], img[z], [m[z]], ts))
        report("real nuclei", np.concatenate([r[0] for r in rows]),
               np.concatenate([r[1] for r in rows]), ts)
    else:
        print(f"real development stack: skipped, {REAL} is absent")
    gens = {"nuclei": syn.nuclei_2d, "cells": syn.cells_membrane_2d,
            "em": syn.em_organelles_2d, "xray": syn.xray_2d, "underwater": syn.underwater_rgb}
    for name, gen in gens.items():
        parts = []
        for seed in (int(v) for v in args.seeds.split(",")):
            s = gen((256, 256), seed=seed)
            emb = ns.embed(s.image[None], model)[0]
            ids = [i for i in np.unique(s.labels)[1:] if (s.labels == i).sum() >= 30][:25]
            grey = s.image if s.image.ndim == 2 else s.image.mean(-1)
            parts.append(clicked_ious(pred, emb, grey, [s.labels == i for i in ids], ts))
        report(name, np.concatenate([p[0] for p in parts]),
               np.concatenate([p[1] for p in parts]), ts)


if __name__ == "__main__":
    main()
