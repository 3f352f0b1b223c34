"""SAM 2.1 propagation: ours (Sam2Tracker, frames from an array) against Meta's video
predictor on the same random Hiera-T weights and the same frames, in one run.

Each side runs in its own subprocess (so peak memory is its own): N objects, each clicked
once on the middle slice, tracked forwards and backwards through Z slices. Prints wall
time, peak resident memory (CPU) or peak allocated memory (CUDA) and the fraction of mask
pixels on which the two agree.

    python benchmarks/bench_sam2.py                      # CPU: 10 objects, 64 slices, 256 px
    python benchmarks/bench_sam2.py --size 1024 --device cuda

Needs Meta's ``sam2`` (SAM2_BUILD_CUDA=0 pip install --no-build-isolation --no-deps sam2;
hydra-core and iopath, from the testing extra; the model is built without hydra's configs).
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
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "models"))


def _weights(size: int, seed: int = 3) -> dict:
    from test_sam2 import _reference_sam2

    ref = _reference_sam2(size)
    gen = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(v.shape, generator=gen) * 0.05 for k, v in ref.state_dict().items()}
    sd["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] = torch.tensor([3.0])
    return sd


def _clicks(args) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(0.1, 0.9, size=(args.objects, 2)) * args.size  # (x, y)


def run_ours(args, frames, sd) -> tuple[np.ndarray, float]:
    from napari_sam.models.sam2.decoder import decoder_keys_from_meta
    from napari_sam.models.sam2.model import Sam2Config, Sam2Model
    from napari_sam.models.sam2.propagation import Sam2Prompts, Sam2Tracker

    model = Sam2Model(Sam2Config(image_size=args.size)).to(args.device).eval()
    model.load_state_dict(decoder_keys_from_meta(sd))
    tracker = Sam2Tracker(model, lambda z: frames[z], len(frames))
    objects = {i: Sam2Prompts(points={len(frames) // 2: (torch.tensor([xy], dtype=torch.float32),
                                                          torch.tensor([1]))})
               for i, xy in enumerate(_clicks(args))}
    masks = np.zeros((len(frames), args.objects), bool)
    start = time.perf_counter()
    with torch.inference_mode():
        out_masks = {}
        for z, oid, out in tracker.propagate_all(objects):
            out_masks[(z, oid)] = (out.low_res_masks > 0).cpu().numpy()[0, 0]
    wall = time.perf_counter() - start
    masks = np.stack([np.stack([out_masks[(z, o)] for o in range(args.objects)])
                      for z in range(len(frames))])
    return masks, wall


def run_meta(args, frames, sd) -> tuple[np.ndarray, float]:
    import sam2.sam2_video_predictor as svp
    from test_sam2 import _reference_sam2

    base = _reference_sam2(args.size)
    ref = svp.SAM2VideoPredictor.__new__(svp.SAM2VideoPredictor)
    ref.__dict__ = base.__dict__
    ref.fill_hole_area, ref.non_overlap_masks = 0, False
    ref.clear_non_cond_mem_around_input = ref.add_all_frames_to_correct_as_cond = False
    ref.binarize_mask_from_pts_for_mem_enc = True
    ref.load_state_dict(sd)
    ref.to(args.device).eval()
    svp.load_video_frames = lambda **kw: (frames, args.size, args.size)
    start = time.perf_counter()
    state = ref.init_state("frames-in-memory")
    mid = len(frames) // 2
    for i, xy in enumerate(_clicks(args)):
        ref.add_new_points_or_box(state, mid, i, points=torch.tensor([xy], dtype=torch.float32),
                                  labels=torch.tensor([1]))
    low = {}
    with torch.inference_mode():
        for reverse in (False, True):
            for z, _, _ in ref.propagate_in_video(state, reverse=reverse):
                low[z] = np.stack([(state["output_dict_per_obj"][o]["cond_frame_outputs"].get(z)
                                    or state["output_dict_per_obj"][o]["non_cond_frame_outputs"][z]
                                    )["pred_masks"].float().cpu().numpy()[0, 0] > 0
                                   for o in range(args.objects)])
    wall = time.perf_counter() - start
    return np.stack([low[z] for z in range(len(frames))]), wall


def child(args) -> None:
    torch.manual_seed(0)
    sd = _weights(args.size)
    gen = torch.Generator().manual_seed(9)
    frames = torch.randn(args.slices, 3, args.size, args.size, generator=gen).to(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    masks, wall = (run_ours if args.side == "ours" else run_meta)(args, frames, sd)
    peak = (torch.cuda.max_memory_allocated() if args.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    np.save(args.out, masks)
    print(json.dumps({"wall_s": wall, "peak_bytes": int(peak)}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--slices", type=int, default=64)
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--side", choices=["ours", "meta"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.side:
        child(args)
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("meta", "ours"):
            out = os.path.join(tmp, f"{side}.npy")
            cmd = [sys.executable, __file__, "--side", side, "--out", out] + [
                f"--{k}={getattr(args, k)}" for k in ("size", "slices", "objects", "device",
                                                      "threads")]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout
            results[side] = json.loads(line.strip().splitlines()[-1])
            results[side]["masks"] = np.load(out)
    agree = float((results["ours"]["masks"] == results["meta"]["masks"]).mean())
    print(f"SAM 2.1 Hiera-T (random weights), {args.objects} objects x {args.slices} slices, "
          f"{args.size} px, {args.device}, load {os.getloadavg()[0]:.1f}")
    for side in ("meta", "ours"):
        r = results[side]
        print(f"  {side:5s} {r['wall_s']:8.1f} s   peak {r['peak_bytes'] / 2**20:8.0f} MiB")
    print(f"  ours / meta time: {results['ours']['wall_s'] / results['meta']['wall_s']:.2f}x;"
          f" masks agree on {100 * agree:.3f} % of low-resolution pixels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
