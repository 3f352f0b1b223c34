"""Batched decoding on the CPU in chunks on worker threads (``napari_sam.decode_pool``) against
one decoder call, idle and with busy cores.

    python benchmarks/bench_decode_chunks.py                  # idle, then 2 busy processes
    python benchmarks/bench_decode_chunks.py --busy 0 --threads 2

What propagation decodes on every slice: N objects, each prompted with a box and its
previous low-resolution logits (a mask prompt), on one embedding, at the model's default
CPU precision. Models: the bundled demo model (N = 48) and ViT-B's decoder with random
weights on a random 64 x 64 embedding (N = 12; the decoder is the same for ViT-B/L/H).
Variants, all in this process and in one run:

- ``one call, 1 thread``: the reference (what ``predict_batch`` did before chunks);
- ``one call, T threads``: the same with T torch (OpenMP) threads;
- ``chunks, 1 thread``: :func:`napari_sam.decode_pool.chunk_slices` decoded one after the
  other (the cache effect alone);
- ``chunks on W workers``: :func:`napari_sam.decode_pool.run_chunks` (what ``predict_batch``
  does now), W = T idle and W = 2 T with busy cores (the thread plan's slice workers).

"busy" starts ``--busy`` processes that spin (``while True: pass``) for the measurements
marked busy. The ratios are against the reference in the same condition. The median of
``--repeats`` runs is printed with the load average.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402


def _spin() -> None:  # a process that keeps one core busy
    while True:
        pass


def _cases():
    """(name, decode(slice) -> None, N) for the demo model and ViT-B's decoder."""
    import numpy as np
    import torch

    import napari_sam as ns
    from napari_sam.models.build import build_sam
    from napari_sam.synthetic import nuclei_3d
    from napari_sam.volume.mask_prompts import box_from_mask

    sample = nuclei_3d(shape=(4, 128, 128), seed=10000)
    emb = ns.embed(sample.image, ns.load_model("demo"), compute=True)
    pred, z = emb.predictor, 2
    ids = [i for i in np.unique(sample.labels[z]) if i]
    boxes = np.concatenate([np.stack([box_from_mask(sample.labels[z] == i) for i in ids])] * 4)
    boxes = boxes[:48]
    low = pred.predict_batch(embedding=emb[z], boxes=boxes, multimask=False,
                             upsample=False).logits[:, 0]
    feats = emb[z].features[None]
    from napari_sam.device import autocast

    def demo(s):
        with torch.inference_mode(), autocast(pred.device, pred.dtype):
            pred.model.decode(feats, boxes=torch.as_tensor(boxes[s], dtype=torch.float32),
                              masks=low[s][:, None], multimask=False)

    vit = build_sam("vit_b").eval()
    g = torch.Generator().manual_seed(0)
    vfeats = torch.randn(1, 256, 64, 64, generator=g)
    vboxes = torch.rand(12, 4, generator=g).sort(-1).values * 1024
    vmasks = torch.randn(12, 1, 256, 256, generator=g)

    def vitb(s):
        with torch.inference_mode(), autocast(pred.device, pred.dtype):
            vit.decode(vfeats, boxes=vboxes[s], masks=vmasks[s], multimask=False)

    return [("demo", demo, len(boxes), feats.shape[-1] ** 2), ("vit_b", vitb, 12, 64 * 64)]


def _median(fn, repeats: int) -> float:
    import numpy as np

    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _rows(cases, threads: int, workers: int, repeats: int) -> list[tuple[str, str, float]]:
    import torch

    from napari_sam.decode_pool import chunk_slices, run_chunks

    out = []
    for name, fn, n, tokens in cases:
        chunks = chunk_slices(n, tokens)
        torch.set_num_threads(1)
        ref = _median(lambda fn=fn, n=n: fn(slice(0, n)), repeats)
        out.append((name, "one call, 1 thread", ref))
        torch.set_num_threads(threads)
        out.append((name, f"one call, {threads} threads", _median(lambda fn=fn, n=n: fn(slice(0, n)), repeats)))
        torch.set_num_threads(1)
        out.append((name, f"{len(chunks)} chunks, 1 thread",
                    _median(lambda fn=fn, chunks=chunks: [fn(c) for c in chunks], repeats)))
        out.append((name, f"{len(chunks)} chunks on {workers} workers",
                    _median(lambda fn=fn, chunks=chunks: run_chunks(fn, chunks, workers), repeats)))
    return out


def _print(rows, condition: str) -> None:
    ref = {}
    for name, variant, t in rows:
        ref.setdefault(name, t)
        print(f"| {condition} | {name} | {variant} | {t * 1000:.0f} ms | {ref[name] / t:.2f}x |",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch threads / workers idle (default: the cores)")
    ap.add_argument("--busy", type=int, default=2, help="spinning processes for the busy rows")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    cases = _cases()
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}")
    print("| condition | model | variant | median | speed-up vs one call, 1 thread |")
    print("| --- | --- | --- | ---: | ---: |")
    _print(_rows(cases, a.threads, a.threads, a.repeats), f"idle (load {os.getloadavg()[0]:.1f})")
    if a.busy:
        spinners = [mp.Process(target=_spin, daemon=True) for _ in range(a.busy)]
        for p in spinners:
            p.start()
        try:
            time.sleep(1.0)
            rows = _rows(cases, a.threads, 2 * a.threads, a.repeats)
            _print(rows, f"{a.busy} busy (load {os.getloadavg()[0]:.1f})")
        finally:
            for p in spinners:
                p.terminate()


if __name__ == "__main__":
    main()
