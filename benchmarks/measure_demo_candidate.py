"""Measure a demo-model candidate on what the tests ask of the shipped one, before shipping it.

For a checkpoint (default: the installed demo model) it prints:

- issue #3's volume values with the tests' own prompts and volumes (``tests/test_volume.py``:
  one click per nucleus on its middle slice, and two annotated slices; mean 3D IoU and worst
  leak over ``nuclei_3d`` seeds 10000 / 10001 / 10003);
- ``--tune``: segment-everything F1@0.5 on *validation* nuclei (2D 256 x 256 and 3D
  16 x 128 x 128, seeds 9000-9003) over a grid of ``pred_iou_thresh`` x
  ``stability_score_thresh`` (``box_nms_thresh`` 0.3, ``points_per_side`` 32,
  ``foreground="auto"``, ``min_mask_region_area`` 20), and the best by the mean of 2D and 3D
  (ties: the higher 3D): the thresholds to write into the sidecar's ``"automatic"`` entry;
- ``--automatic P,S``: issue #5's test values (``tests/test_automatic.py``, seeds 10000-10002
  in 2D, 10000-10001 in 3D) at those thresholds.

    python benchmarks/measure_demo_candidate.py --model candidate.pt --tune
    python benchmarks/measure_demo_candidate.py --model X.pt --automatic 0.6,0.7 --no-volume

Test seeds are only read here to report; thresholds are chosen on validation seeds. There is no
reference to compare with: this measures a model, it does not time code.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

GRID_IOU = (0.5, 0.6, 0.7)
GRID_STABILITY = (0.7, 0.8)
NUCLEI = dict(points_per_side=32, foreground="auto", min_mask_region_area=20, box_nms_thresh=0.3)


def volume_values(model, seeds=None) -> dict[str, float]:
    """Issue #3's test values: one click per nucleus and two annotated slices (on the
    tests' volumes, or on ``nuclei_3d`` volumes of other ``seeds``)."""
    from test_volume import QUALITY_SEEDS, evaluate, one_click_prompts, two_slice_prompts

    from napari_sam.embeddings import embed
    from napari_sam.synthetic import nuclei_3d
    from napari_sam.volume import segment_volume

    one, two, worst_one, worst_two = [], [], 0.0, 0.0
    for seed in seeds or QUALITY_SEEDS:
        sample = nuclei_3d(seed=seed)
        emb = embed(sample.image, model, batch_size=8, cache_size=64, compute=True)
        ious1, leaks1 = evaluate(segment_volume(emb, one_click_prompts(sample.labels)).labels,
                                 sample.labels)
        ious2, leaks2 = evaluate(segment_volume(emb, two_slice_prompts(sample.labels)).labels,
                                 sample.labels)
        print(f"  seed {seed}: one click {np.mean(list(ious1.values())):.3f} (worst leak "
              f"{max(leaks1.values()):.3f}), two slices {np.mean(list(ious2.values())):.3f}",
              flush=True)
        one += list(ious1.values())
        two += list(ious2.values())
        worst_one = max(worst_one, max(leaks1.values()))
        worst_two = max(worst_two, max(leaks2.values()))
    return {"one_click_iou": float(np.mean(one)), "one_click_worst_leak": worst_one,
            "two_slices_iou": float(np.mean(two)), "two_slices_worst_leak": worst_two}


def _f1_scores(model, samples, three_d: bool, combos) -> dict[tuple[float, float], float]:
    """Mean F1@0.5 over ``samples`` for each (pred_iou_thresh, stability_score_thresh)."""
    from test_automatic import _f1

    from napari_sam.automatic import segment_everything
    from napari_sam.embeddings import embed

    scores: dict[tuple[float, float], list[float]] = {c: [] for c in combos}
    for s in samples:
        emb = embed(s.image, model, compute=True) if three_d else s.image
        for p, st in combos:
            res = segment_everything(emb, model, device="cpu", pred_iou_thresh=p,
                                     stability_score_thresh=st,
                                     **({"min_z_extent": 2} if three_d else {}), **NUCLEI)
            scores[(p, st)].append(_f1(s.labels, res.labels))
    return {c: float(np.mean(v)) for c, v in scores.items()}


def automatic_values(model, combos, seeds_2d, seeds_3d):
    from napari_sam.synthetic import nuclei_2d, nuclei_3d

    f2 = _f1_scores(model, [nuclei_2d((256, 256), seed=s) for s in seeds_2d], False, combos)
    f3 = _f1_scores(model, [nuclei_3d((16, 128, 128), seed=s) for s in seeds_3d], True, combos)
    return f2, f3


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the installed demo)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-volume", action="store_true", help="skip issue #3's values")
    ap.add_argument("--volume-seeds", default=None,
                    help="comma-separated nuclei_3d seeds instead of the tests' (e.g. "
                         "validation seeds 9500,9501,9502)")
    ap.add_argument("--tune", action="store_true",
                    help="choose the automatic thresholds on validation seeds 9000-9003")
    ap.add_argument("--automatic", default=None,
                    help="P,S: issue #5's test F1 at pred_iou_thresh P, stability S")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from napari_sam.models.registry import load_model

    model = load_model("demo") if args.model is None else load_model(Path(args.model))
    print(f"model: {args.model or 'demo'}", flush=True)
    t0 = time.perf_counter()
    if not args.no_volume:
        seeds = [int(x) for x in args.volume_seeds.split(",")] if args.volume_seeds else None
        v = volume_values(model, seeds)
        print(f"issue #3 ({'seeds ' + args.volume_seeds if seeds else 'test volumes'}): " + ", ".join(f"{k} {x:.4f}" for k, x in v.items()),
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.tune:
        t0 = time.perf_counter()
        combos = list(itertools.product(GRID_IOU, GRID_STABILITY))
        f2, f3 = automatic_values(model, combos, range(9000, 9004), range(9000, 9004))
        print("validation F1@0.5 (pred IoU / stability: 2D, 3D, mean):")
        for c in sorted(combos, key=lambda c: (c[1], c[0])):
            print(f"  {c[0]} / {c[1]}: {f2[c]:.3f} {f3[c]:.3f} {(f2[c] + f3[c]) / 2:.3f}")
        best = max(combos, key=lambda c: (round((f2[c] + f3[c]) / 2, 3), f3[c]))
        print(f"best: pred_iou_thresh {best[0]}, stability_score_thresh {best[1]} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.automatic:
        p, s = (float(x) for x in args.automatic.split(","))
        f2, f3 = automatic_values(model, [(p, s)], (10000, 10001, 10002), (10000, 10001))
        print(f"issue #5 (test images) at {p} / {s}: F1 2D {f2[(p, s)]:.3f}, "
              f"3D {f3[(p, s)]:.3f}", flush=True)


if __name__ == "__main__":
    main()
