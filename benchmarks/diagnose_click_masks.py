"""Where one-click masks go wrong, per synthetic domain (a diagnosis, no reference).

For each object of a few held-out images (seeds >= 10000): one positive click at its most
central pixel, the candidate with the highest predicted IoU kept (the protocol of
``napari_sam.training.evaluation.evaluate``). Prints the mean IoU, the best candidate by true
IoU and by other rules (stability score, predicted IoU x stability, largest mask, always
the second candidate: is the selection the problem?), precision and recall, how much of the mask lies on other
objects (merges) or on the background (spills), and the mask's area against the object's.

    python benchmarks/diagnose_click_masks.py --domain cells_membrane --images 4
    python benchmarks/diagnose_click_masks.py --domain nuclei --model path/to/model.pt
    python benchmarks/diagnose_click_masks.py --domain nuclei --images 6 --validation
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy import ndimage as ndi


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--domain", default="cells_membrane",
                    help="a 2D domain of napari_sam.synthetic.DOMAINS")
    ap.add_argument("--images", type=int, default=4, help="held-out images (256 x 256)")
    ap.add_argument("--max-objects", type=int, default=40, help="objects per image at most")
    ap.add_argument("--model", default="demo", help="registry name or checkpoint path")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--validation", action="store_true",
                    help="validation seeds (9000 + i) instead of held-out ones (10000 + i)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    import napari_sam as ns
    from napari_sam import synthetic as syn
    from napari_sam.automatic import stability_score
    from napari_sam.predictor import Predictor
    from napari_sam.training.prompts import central_point

    if args.domain not in syn.DOMAINS:
        ap.error(f"--domain {args.domain!r}: choose one of {', '.join(syn.DOMAINS)}")
    pred = Predictor(ns.load_model(args.model), device="cpu", precision="fp32")
    rows = []
    first_seed = 9000 if args.validation else syn.HELDOUT_SEED_START
    for i in range(args.images):
        s = syn.DOMAINS[args.domain]((256, 256), seed=first_seed + i)
        lab = s.labels
        pred.set_image(s.image)
        for oid in np.unique(lab[lab > 0])[: args.max_objects]:
            gt = lab == oid
            masks, scores, logits = pred.predict(points=[central_point(gt)], labels=[1],
                                                 multimask=True)
            ious = np.array([(m & gt).sum() / max((m | gt).sum(), 1) for m in masks])
            # SAM's stability score (offset 1) on the low-resolution logits
            stability = stability_score(torch.as_tensor(logits), 0.0, 1.0).numpy()
            m = masks[int(np.argmax(scores))]
            inter = (m & gt).sum()
            interior = ndi.binary_erosion(gt, iterations=3)
            rows.append({
                "IoU (kept)": ious[int(np.argmax(scores))],
                "IoU (best of 3)": ious.max(),
                "IoU (by stability)": ious[int(np.argmax(stability))],
                "IoU (by pred. IoU x stab.)": ious[int(np.argmax(scores * stability))],
                "IoU (largest mask)": ious[int(np.argmax(masks.sum((1, 2))))],
                "IoU (second candidate)": ious[1],
                "precision": inter / max(m.sum(), 1),
                "recall": inter / gt.sum(),
                "recall, interior (3 px in)": (m & interior).sum() / max(interior.sum(), 1),
                "mask on other objects": (m & (lab > 0) & ~gt).sum() / max(m.sum(), 1),
                "mask on background": (m & (lab == 0)).sum() / max(m.sum(), 1),
                "mask area / object area": m.sum() / gt.sum(),
            })
    kind = "validation" if args.validation else "held-out"
    print(f"{args.domain}: {len(rows)} objects in {args.images} {kind} images "
          f"(seeds {first_seed}-{first_seed + args.images - 1}), model {args.model}")
    for key in rows[0]:
        print(f"  {key:28s} {np.mean([r[key] for r in rows]):.3f}")
    big = sum(r["mask area / object area"] > 1.3 for r in rows)
    small = sum(r["mask area / object area"] < 0.7 for r in rows)
    print(f"  masks > 1.3x the object's area: {big}; < 0.7x: {small}")


if __name__ == "__main__":
    main()
