"""One click per nucleus on a large image: tiled embeddings vs one shrunk embedding vs crops
(issue #25's acceptance line; not a timed test).

    python benchmarks/bench_tiling.py [--model demo] [--size 4096] [--objects 4000]
                                      [--sample 600] [--seed 0] [--device cpu]

A synthetic ``--size`` x ``--size`` image of fluorescent nuclei 8-20 px across
(``nuclei_2d(radius=(4, 10))``) with ground truth. A seeded sample of ``--sample`` nuclei gets
one positive click each at its central point (the pixel deepest inside the nucleus,
``napari_sam.training.prompts.central_point``, as the model's evaluation does); the mask is
the candidate with the highest predicted IoU. Three ways:

- **tiled**: ``Predictor.set_image(image)`` at ``tiling="auto"`` (windows of the model input's
  size at full resolution), ``Predictor.predict`` per click;
- **untiled**: ``set_image(image, tiling=None)``: the whole image shrunk to the model input;
- **crops**: a crop of the model input's size centred on each nucleus (clipped to the image)
  at full resolution, the same contrast limits: what a user zooming in would get.

Prints the mean IoU of each with the ground truth and the differences (targets: tiled within
0.03 of crops, >= 0.25 above untiled), the tiled encode time, and the peak resident memory
above what the process held before the tiled encode (model, image and ground truth loaded;
target < 1.5 GB), with the machine and its load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _machine import cpu_name  # noqa: E402


def _status_kb(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset the peak resident memory (VmHWM) to the current one (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _nuclei(labels, ids):
    """(slices grown by 2 px, central points) of the nuclei ``ids`` (whole-image frame)."""
    from scipy import ndimage

    from napari_sam.training.prompts import central_point

    objs = ndimage.find_objects(labels)
    h, w = labels.shape
    slices, points = [], []
    for i in ids:
        sr, sc = objs[i - 1]
        sl = (slice(max(sr.start - 2, 0), min(sr.stop + 2, h)),
              slice(max(sc.start - 2, 0), min(sc.stop + 2, w)))
        r, c = central_point(labels[sl] == i)
        slices.append(sl)
        points.append((r + sl[0].start, c + sl[1].start))
    return slices, np.asarray(points, float)


def _iou(mask, labels, i, sl) -> float:
    """IoU of a whole-image mask with nucleus ``i`` (``sl`` holds the nucleus)."""
    g = labels[sl] == i
    inter = int((mask[sl] & g).sum())
    return inter / (int(mask.sum()) + int(g.sum()) - inter)


def _tiled(model, image, limits, labels, ids, slices, points, device):
    from napari_sam import Predictor

    pred = Predictor(model, device=device, precision="fp32")
    before = _status_kb("VmRSS")
    peak_ok = _reset_peak()
    t0 = time.perf_counter()
    emb = pred.set_image(image, contrast_limits=limits)
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ious, cuts, nwin = [], 0, []
    for i, sl, pt in zip(ids, slices, points):
        masks, scores, _ = pred.predict(points=[pt], labels=[1])
        ious.append(_iou(masks[int(np.argmax(scores))], labels, i, sl))
        cuts += pred.last_tiled.cut
        nwin.append(len(pred.last_tiled.windows))
    click_s = (time.perf_counter() - t0) / len(ids)
    peak_mb = (_status_kb("VmHWM") - before) / 1024 if peak_ok else float("nan")
    info = dict(encode_s=encode_s, click_s=click_s, peak_mb=peak_mb, cuts=cuts,
                windows=len(emb.tiling), window=emb.tiling.window, halo=emb.tiling.halo,
                features_mb=emb.nbytes() / 2**20, mean_decoded=float(np.mean(nwin)))
    return np.asarray(ious), info


def _untiled(model, image, limits, labels, ids, slices, points, device):
    from napari_sam import Predictor

    pred = Predictor(model, device=device, precision="fp32")
    emb = pred.set_image(image, contrast_limits=limits, tiling=None)
    ious = []
    for i, sl, pt in zip(ids, slices, points):
        out = pred.predict_batch(emb, points=[[pt]], labels=[[1]], upsample=False)
        best = int(out.scores[0].argmax())
        mask = pred.upsample(out.logits[0, best:best + 1], emb)[0].cpu().numpy()
        ious.append(_iou(mask, labels, i, sl))
    return np.asarray(ious)


def _crops(model, image, limits, labels, ids, slices, points, device, batch=8):
    from napari_sam import Predictor
    from napari_sam.preprocess import to_uint8_rgb

    pred = Predictor(model, device=device, precision="fp32")
    side = pred.img_size
    h, w = image.shape[:2]
    ious = []
    for k in range(0, len(ids), batch):
        origins = [(int(np.clip(round(p[0]) - side // 2, 0, max(h - side, 0))),
                    int(np.clip(round(p[1]) - side // 2, 0, max(w - side, 0))))
                   for p in points[k:k + batch]]
        embs = pred.encode_rgb([to_uint8_rgb(image[r:r + side, c:c + side], limits)
                                for r, c in origins])
        for emb, (r, c), i, sl, pt in zip(embs, origins, ids[k:k + batch],
                                          slices[k:k + batch], points[k:k + batch]):
            out = pred.predict_batch(emb, points=[[pt - [r, c]]], labels=[[1]])
            m = out.masks[0, int(out.scores[0].argmax())].cpu().numpy()
            full = np.zeros((h, w), bool)
            full[r:r + m.shape[0], c:c + m.shape[1]] = m
            ious.append(_iou(full, labels, i, sl))
    return np.asarray(ious)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo", help="registry name or checkpoint (default demo)")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--objects", type=int, default=4000)
    p.add_argument("--sample", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)

    import torch

    import napari_sam as ns
    from napari_sam.preprocess import DEFAULT_PERCENTILES, intensity_limits
    from napari_sam.synthetic import nuclei_2d

    load0 = os.getloadavg()
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load0[0]:.2f} {load0[1]:.2f} "
          f"{load0[2]:.2f}", flush=True)
    t0 = time.perf_counter()
    s = nuclei_2d((a.size, a.size), seed=a.seed, radius=(4, 10), n_objects=a.objects,
                  min_size=20)
    image, labels = s.image, s.labels
    all_ids = np.unique(labels)[1:]
    rng = np.random.default_rng(a.seed)
    ids = np.sort(rng.choice(all_ids, min(a.sample, len(all_ids)), replace=False))
    slices, points = _nuclei(labels, ids)
    limits = intensity_limits(image, DEFAULT_PERCENTILES)
    model = ns.load_model(a.model)
    print(f"image {a.size} x {a.size} {image.dtype}, {len(all_ids)} nuclei (radius 4-10 px), "
          f"{len(ids)} clicked (seed {a.seed}); model {a.model} (input {model.img_size} px); "
          f"made in {time.perf_counter() - t0:.1f} s", flush=True)

    t, info = _tiled(model, image, limits, labels, ids, slices, points, a.device)
    print(f"tiled: {info['windows']} windows of {info['window']} px (halo {info['halo']}), "
          f"encode {info['encode_s']:.1f} s, {info['features_mb']:.0f} MB of features, "
          f"{info['click_s'] * 1000:.0f} ms per click ({info['mean_decoded']:.2f} windows "
          f"decoded per click), {info['cuts']} clicks flagged cut; peak memory above the "
          f"model's own {info['peak_mb']:.0f} MB", flush=True)
    u = _untiled(model, image, limits, labels, ids, slices, points, a.device)
    c = _crops(model, image, limits, labels, ids, slices, points, a.device)
    res = dict(tiled=float(t.mean()), untiled=float(u.mean()), crops=float(c.mean()), **info)
    load1 = os.getloadavg()
    print(f"mean IoU  tiled {res['tiled']:.3f}  untiled {res['untiled']:.3f}  crops "
          f"{res['crops']:.3f}")
    print(f"tiled - crops   {res['tiled'] - res['crops']:+.3f}  (target: within 0.03)")
    print(f"tiled - untiled {res['tiled'] - res['untiled']:+.3f}  (target: >= 0.25)")
    print(f"peak memory above the model's own {info['peak_mb']:.0f} MB (target < 1536 MB)")
    print(f"load average after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    return res


if __name__ == "__main__":
    main()
