"""One-click quality of a demo-model checkpoint on the real development stack.

For every nucleus of ``../shared/data/real-nuclei-3d`` (skipped with a message where it is
absent): one positive click at its most central pixel (``central_point``) on its widest slice.

- ``2D``: the kept mask on that slice against the nucleus there: mean IoU, mean area ratio
  (mask / nucleus), precision and recall; also the best of the three candidates, and the
  same split by the nucleus's brightness (dim / bright half) and size (small / large half).
  These cut the masks at the model's threshold; ``click_2d_model_boundary`` cuts them by
  the model's own rule (``mask_boundary``: on the image's edges for the demo model), as the
  dock and ``Predictor.predict`` after ``set_image`` do.
- ``3D``: all clicks propagated at once by :func:`napari_sam.segment_volume` at its defaults;
  mean 3D IoU of each nucleus with the predicted object of its id, and F1@0.5.

The stack is embedded once with volume-wide contrast (what ``embed`` does for a stack).
Development data only: a model or rule tuned to this one stack shows on other real data.

Usage::

    python benchmarks/eval_real_nuclei.py --model src/napari_sam/weights/demo.pt [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose_main_job import REAL, match  # noqa: E402  (the dev stack, one-to-one F1@0.5)


def evaluate(model_path: str, real: Path = REAL) -> dict:
    import tifffile

    import napari_sam as ns
    from napari_sam.training.prompts import central_point
    from napari_sam.volume import SlicePrompt

    img = tifffile.imread(real / "image.tif")
    gt = tifffile.imread(real / "labels.tif").astype(np.int32)
    model = ns.load_model(model_path)
    emb = ns.embed(img, model)
    pred = ns.Predictor(model)
    ids = [int(i) for i in np.unique(gt)[1:]]
    rows = []
    prompts = {}
    for i in ids:
        m = gt == i
        z = int(m.sum((1, 2)).argmax())
        g = m[z]
        p = central_point(g)
        prompts[i] = [SlicePrompt(slice=z, points=np.array([p], float), labels=np.ones(1))]
        pred.set_embedding(emb[z])
        masks, scores, _ = pred.predict(points=np.array([p], float) + 0.0, labels=np.ones(1),
                                        boundary="threshold")
        ious = [(mm & g).sum() / max(1, (mm | g).sum()) for mm in masks]
        k = int(np.argmax(scores))
        mk = masks[k]
        # what the dock and predict after set_image give: the model's boundary rule
        edge = pred.predict(points=np.array([p], float), labels=np.ones(1), image=img[z])[0][k]
        rows.append(dict(id=i, z=z, area=int(g.sum()), mean=float(img[z][g].mean()),
                         iou=float(ious[k]), best=float(max(ious)),
                         iou_model=float((edge & g).sum() / max(1, (edge | g).sum())),
                         ratio=float(mk.sum() / g.sum()),
                         precision=float((mk & g).sum() / max(1, mk.sum())),
                         recall=float((mk & g).sum() / g.sum())))
    lab = np.asarray(ns.segment_volume(emb, prompts).labels)
    iou3 = []
    for i in ids:
        g, p = gt == i, lab == i
        iou3.append(float((g & p).sum() / max(1, (g | p).sum())))
    f1, _ = match(gt, lab)

    def mean(key, sel=None):
        vals = [row[key] for row in rows if sel is None or sel(row)]
        return float(np.mean(vals)) if vals else float("nan")

    med_mean = float(np.median([r["mean"] for r in rows]))
    med_area = float(np.median([r["area"] for r in rows]))
    return {
        "model": str(model_path), "nuclei": len(ids),
        "click_2d": mean("iou"), "best_of_3_2d": mean("best"), "area_ratio": mean("ratio"),
        "click_2d_model_boundary": mean("iou_model"),
        "precision": mean("precision"), "recall": mean("recall"),
        "click_2d_dim": mean("iou", lambda r: r["mean"] < med_mean),
        "click_2d_bright": mean("iou", lambda r: r["mean"] >= med_mean),
        "click_2d_small": mean("iou", lambda r: r["area"] < med_area),
        "click_2d_large": mean("iou", lambda r: r["area"] >= med_area),
        "propagated_3d": float(np.mean(iou3)), "propagated_f1": f1,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", nargs="+", default=["demo"], help="checkpoint paths or 'demo'")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", action="store_true", help="print one JSON line per model")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not (REAL / "image.tif").exists():
        print(f"real development stack: skipped, {REAL} is absent")
        sys.exit(0)
    for m in args.model:
        res = evaluate(m)
        if args.json:
            print(json.dumps(res))
            continue
        print(f"{m}: {res['nuclei']} nuclei")
        print(f"  2D one click {res['click_2d']:.3f} (best of 3 {res['best_of_3_2d']:.3f}); "
              f"area ratio {res['area_ratio']:.2f}, precision {res['precision']:.3f}, "
              f"recall {res['recall']:.3f}")
        print(f"  2D one click cut by the model's boundary rule (the dock, predict after "
              f"set_image) {res['click_2d_model_boundary']:.3f}")
        print(f"  2D dim / bright {res['click_2d_dim']:.3f} / {res['click_2d_bright']:.3f}; "
              f"small / large {res['click_2d_small']:.3f} / {res['click_2d_large']:.3f}")
        print(f"  3D propagated mean IoU {res['propagated_3d']:.3f}, "
              f"F1@0.5 {res['propagated_f1']:.3f}")


if __name__ == "__main__":
    main()
