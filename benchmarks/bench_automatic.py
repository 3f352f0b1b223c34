"""Segment everything: napari_sam.segment_everything against Meta's SamAutomaticMaskGenerator.

Both run on the same ViT-B weights and the same image embedding, so the timings compare what
the generators do after the image encoder (identical for both and excluded): decoding the point
grid, filtering, NMS, upsampling and building the outputs. Each side runs in its own
subprocess (peak memory is the growth of that process's peak RSS while segmenting), with the
same number of torch threads.

Weights. Random ViT-B weights (seeded) with three changes so that masks survive the filters:
the hypernetwork outputs are scaled up (random decoders predict logits of about 0.01), the IoU
head is shifted to about 0.5, and the transposed-convolution weights are shared by the 2x2
output positions. The embedding is a smooth random field, so masks are smooth like real ones.

Masks. Meta's generator runs once with ``box_nms_thresh=1.0`` (no suppression: every
candidate that passes the IoU and stability filters), and its NMS at the benchmark threshold is
applied to that output afterwards (exactly what ``generate`` would return; the NMS is timed and
added). Ours runs at both thresholds. Masks are matched one to one by IoU.

    python benchmarks/bench_automatic.py                 # ViT-B, 1024 x 1024, 32 x 32 points
    python benchmarks/bench_automatic.py --quick         # 16 x 16 points
    python benchmarks/bench_automatic.py --threads 2

Needs segment-anything==1.0 (torchvision is replaced by the test stand-in when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_inputs(workdir: Path, size: int, seed: int = 0) -> None:
    """Random ViT-B weights (made to produce masks) and a smooth (256, 64, 64) embedding."""
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT / "tests"))
    from _mask_weights import make_masks_survive_
    from napari_sam.models import CONFIGS, build_sam

    torch.manual_seed(seed)
    sam = build_sam(CONFIGS["vit_b"])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        md = sam.mask_decoder
        for name, p in md.named_parameters():
            if ("norm" in name and name.endswith("weight")) or name == "output_upscaling.1.weight":
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    make_masks_survive_(sam, logit_scale=3000)
    torch.save(sam.state_dict(), workdir / "vit_b.pt")
    e = sam.embedding_size
    feats = F.interpolate(torch.randn(1, 256, 8, 8, generator=g), (e, e), mode="bicubic")[0]
    feats = feats + 0.1 * torch.randn(256, e, e, generator=g)
    torch.save({"features": feats, "size": size}, workdir / "embedding.pt")


def _save_masks(path: Path, masks: list[np.ndarray], ious, boxes_rcrc) -> None:
    arr = np.stack(masks) if masks else np.zeros((0, 1, 1), bool)
    np.savez_compressed(
        path,
        bits=np.packbits(arr.reshape(len(arr), arr.shape[1] * arr.shape[2]), axis=1),
        shape=np.array(arr.shape),
        iou=np.asarray(ious, np.float32),
        boxes=np.asarray(boxes_rcrc, np.int64).reshape(-1, 4),
    )


def _load_masks(path: Path):
    d = np.load(path)
    n, h, w = d["shape"]
    masks = np.unpackbits(d["bits"], axis=1, count=h * w).reshape(n, h, w).astype(bool)
    return masks, d["iou"], d["boxes"]


def worker_meta(args) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from _reference import import_segment_anything

    sa = import_segment_anything()
    wd = Path(args.workdir)
    dev = torch.device(args.device)
    sam = sa.sam_model_registry["vit_b"](checkpoint=str(wd / "vit_b.pt")).eval().to(dev)
    e = torch.load(wd / "embedding.pt")
    features = e["features"][None].to(dev)
    size = int(e["size"])
    gen = sa.SamAutomaticMaskGenerator(
        sam,
        points_per_side=args.points_per_side,
        points_per_batch=64,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=1.0,
    )

    def set_image(image, image_format="RGB"):  # the shared embedding instead of the encoder
        p = gen.predictor
        p.reset_image()
        p.original_size = image.shape[:2]
        p.input_size = p.transform.get_preprocess_shape(
            *image.shape[:2], sam.image_encoder.img_size
        )
        p.features = features
        p.is_image_set = True

    gen.predictor.set_image = set_image
    image = np.zeros((size, size, 3), np.uint8)
    if dev.type == "cuda":  # CUDA start-up, kernel loading and autotuning stay out of the time
        with torch.no_grad():
            gen.generate(image)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    with torch.no_grad():
        anns = gen.generate(image)
    t_all = time.perf_counter() - t0
    peak = _peak_mb() - rss0
    # Meta's own NMS at the benchmark threshold on that output (anns are sorted by IoU)
    t0 = time.perf_counter()
    boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
    ious = torch.tensor([a["predicted_iou"] for a in anns])
    keep = sa.automatic_mask_generator.batched_nms(
        boxes, ious, torch.zeros(len(anns)), iou_threshold=args.box_nms_thresh
    )
    t_nms = time.perf_counter() - t0
    for name, idx in (("meta_all", range(len(anns))), ("meta_nms", keep.tolist())):
        sel = [anns[i] for i in idx]
        _save_masks(
            wd / f"{name}.npz",
            [a["segmentation"] for a in sel],
            [a["predicted_iou"] for a in sel],
            [[b[1], b[0], b[1] + b[3], b[0] + b[2]] for b in (a["bbox"] for a in sel)],
        )
    return {"seconds": t_all + t_nms, "peak_mb": peak, "masks_all": len(anns), "masks": len(keep),
            "gpu_peak_mb": _gpu_peak_mb(dev)}


def _gpu_peak_mb(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")


def worker_ours(args) -> dict:
    from napari_sam.automatic import grid_decoder, segment_everything
    from napari_sam.models import sam_from_state_dict
    from napari_sam.predictor import ImageEmbedding

    wd = Path(args.workdir)
    model = sam_from_state_dict(torch.load(wd / "vit_b.pt", weights_only=True)).eval()
    e = torch.load(wd / "embedding.pt")
    size = int(e["size"])
    # a square image is resized to fill the model input (as Meta's set_image does)
    emb = ImageEmbedding(e["features"], (size, size), (model.img_size,) * 2, model.model_id)
    dev = torch.device(args.device)
    out = {}
    runs = [(f"ours_nms_{g}", args.box_nms_thresh, g) for g in args.grid] + [
        (f"ours_all_{g}", 1.0, g) for g in args.grid
    ]
    for name, nms, grid in runs:
        # "fp32": exact float32; "bf16": precision="bf16" (the grid decoder's bfloat16 path,
        # what precision="auto" runs on a CPU with native bf16); "tf32": what
        # precision="auto" runs on a GPU with GRID_PRECISION_CUDA set to it (the embedding is
        # float32 either way); ":eager" without the fused Triton kernel of the upscaling head
        prec, _, eager = grid.partition(":")
        if prec == "tf32":
            grid_decoder.GRID_PRECISION_CUDA = prec
        grid_decoder.GRID_FUSED_HEAD_CUDA = not eager
        kwargs = dict(
            device=dev,
            precision={"fp32": "fp32", "bf16": "bf16"}.get(prec, "auto"),
            points_per_side=args.points_per_side,
            points_per_batch=args.points_per_batch,
            pred_iou_thresh=args.pred_iou_thresh,
            stability_score_thresh=args.stability_score_thresh,
            box_nms_thresh=nms,
        )
        if dev.type == "cuda":  # as for Meta's: warm-up run untimed
            segment_everything(emb, model, **kwargs)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rss0 = _rss_mb()
        peak0 = _peak_mb()
        t0 = time.perf_counter()
        res = segment_everything(emb, model, **kwargs)
        seconds = time.perf_counter() - t0
        recs = res.records + res.hidden
        _save_masks(
            wd / f"{name}.npz",
            [r.mask((size, size)) for r in recs],
            [r.predicted_iou for r in recs],
            [r.bbox for r in recs],
        )
        out[name] = {
            "seconds": seconds,
            # growth of the peak over the RSS before this run (0 if below an earlier peak)
            "peak_mb": max(_peak_mb(), peak0) - rss0,
            "masks": len(recs),
            "gpu_peak_mb": _gpu_peak_mb(dev),
            "stats": {k: v for k, v in res.stats.items() if k != "fast_decoder"},
        }
    return out


def match(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """(pairs with IoU >= 0.99, smallest IoU of the one-to-one matching)."""
    from scipy.optimize import linear_sum_assignment

    if len(a) == 0 or len(b) == 0:
        return 0, float("nan")
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    iou = inter / np.maximum(fa.sum(1)[:, None] + fb.sum(1)[None] - inter, 1)
    ri, ci = linear_sum_assignment(-iou)
    return int((iou[ri, ci] >= 0.99).sum()), float(iou[ri, ci].min())


def run_worker(which: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", which, "--workdir", args.workdir]
    for k in ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
              "box_nms_thresh", "threads", "device"):  # fmt: skip
        if getattr(args, k) is not None:
            cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    cmd += ["--grid-precision", ",".join(args.grid)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the {which} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="image side (pixels)")
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--points-per-batch", type=int, default=None,
                    help="ours only (default: segment_everything's, 64 on CPU, 256 on GPU); "
                         "Meta's generator uses its default 64")
    ap.add_argument("--pred-iou-thresh", type=float, default=0.6)
    ap.add_argument("--stability-score-thresh", type=float, default=0.8)
    ap.add_argument("--box-nms-thresh", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--quick", action="store_true", help="16 x 16 points")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (both generators run there)")
    ap.add_argument("--grid-precision", default="fp32",
                    help="ours: comma-separated GridDecoder precisions to time (fp32, bf16, "
                         "tf32; tf32 applies on CUDA only, where precision='auto' uses it; "
                         "bf16 is what precision='auto' uses on a CPU with native bf16); "
                         "a suffix ':eager' turns off the fused Triton head (CUDA)")
    ap.add_argument("--worker", choices=["meta", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.points_per_side = 16
    args.grid = [g.strip() for g in args.grid_precision.split(",") if g.strip()]
    bad = [g for g in args.grid if g.removesuffix(":eager") not in ("fp32", "bf16", "tf32")]
    if bad or not args.grid:
        ap.error(f"--grid-precision takes fp32, bf16 and tf32 (each optionally with ':eager'), "
                 f"not {args.grid_precision!r}")
    torch.set_num_threads(args.threads)
    if args.worker:
        res = worker_meta(args) if args.worker == "meta" else worker_ours(args)
        print(json.dumps(res))
        return

    with tempfile.TemporaryDirectory() as tmp:
        args.workdir = tmp
        make_inputs(Path(tmp), args.size)
        print(
            f"ViT-B decoder, image {args.size} x {args.size}, {args.points_per_side}**2 points, "
            f"pred_iou_thresh={args.pred_iou_thresh}, stability_score_thresh="
            f"{args.stability_score_thresh}, box_nms_thresh={args.box_nms_thresh}, "
            f"torch threads={args.threads}, CPU cores={os.cpu_count()}, device={args.device}"
            + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "") + ", "
            f"load average={os.getloadavg()[0]:.1f}"
        )
        ours = run_worker("ours", args)
        meta = run_worker("meta", args)
        ours_again = run_worker("ours", args)  # load drifts on shared machines: bracket Meta
        wd = Path(tmp)
        results = {}
        for grid in args.grid:
            for tag, (mname, oname) in {
                "nms": ("meta_nms", f"ours_nms_{grid}"),
                "all": ("meta_all", f"ours_all_{grid}"),
            }.items():
                ma, _, _ = _load_masks(wd / f"{mname}.npz")
                mo, _, _ = _load_masks(wd / f"{oname}.npz")
                good, worst = match(ma, mo)
                results[grid, tag] = (len(ma), len(mo), good, worst)
    for grid in args.grid:
        first, again = ours[f"ours_nms_{grid}"], ours_again[f"ours_nms_{grid}"]
        t_ours = min(first["seconds"], again["seconds"])
        print(f"\n{'GridDecoder precision ' + grid:34s}{'Meta':>12s}{'ours':>12s}")
        print(
            f"{'time (s), box_nms_thresh=' + str(args.box_nms_thresh):34s}{meta['seconds']:12.3f}{t_ours:12.3f}"
        )
        print(f"{'peak memory growth (MB)':34s}{meta['peak_mb']:12.0f}{first['peak_mb']:12.0f}")
        for tag, label in (("nms", f"masks (NMS {args.box_nms_thresh})"), ("all", "masks (no NMS)")):
            n_meta, n_ours, good, worst = results[grid, tag]
            print(
                f"{label:34s}{n_meta:12d}{n_ours:12d}   matched IoU>=0.99: {good}/{n_meta}, min IoU {worst:.4f}"
            )
        print(f"{'time (s), no NMS':34s}{'':12s}{ours[f'ours_all_{grid}']['seconds']:12.3f}")
        if args.device.startswith("cuda"):
            print(f"{'peak GPU memory (MB)':34s}{meta['gpu_peak_mb']:12.0f}{first['gpu_peak_mb']:12.0f}")
        print(f"pipeline counts (ours): {first['stats']}")
        print(f"speed-up ({grid}): {meta['seconds'] / t_ours:.1f}x  (ours runs: "
              f"{first['seconds']:.3f} s, {again['seconds']:.3f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
