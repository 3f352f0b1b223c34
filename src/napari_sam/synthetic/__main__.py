"""``python -m napari_sam.synthetic``: time the generators, or save a PNG overview of all
domains (``--montage PNG``). Manual tools, not part of the API.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .fields import boundaries
from .registry import DOMAINS, DOMAINS_3D, HELDOUT_SEED_START


def benchmark(repeats: int = 5) -> dict[str, float]:  # pragma: no cover - manual tool
    """Mean generation time per domain at the default shapes; prints wall and CPU ms.

    CPU time (``time.process_time``) is the better number on a shared machine.
    Targets: 2D (256, 256) well under 50 ms, 3D (32, 128, 128) under ~500 ms.
    """
    out = {}
    for reg, tag in ((DOMAINS, "2d"), (DOMAINS_3D, "3d")):
        for name, fn in reg.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for s in range(repeats):
                fn(seed=HELDOUT_SEED_START + s)
            wall = (time.perf_counter() - t0) / repeats * 1e3
            cpu = (time.process_time() - c0) / repeats * 1e3
            out[f"{name}_{tag}"] = cpu
            print(f"{name + '_' + tag:22s} wall {wall:8.1f} ms   cpu {cpu:8.1f} ms")
    return out


def montage(path: str, seeds: Sequence[int] = (10_000, 10_001, 10_002, 10_003)) -> np.ndarray:
    """Save a PNG overview: one row per domain (2D, then 3D mid-slices), image | outlines.

    A visual check, not part of the API; needs Pillow. Returns the (H, W, 3) uint8 montage.
    """  # pragma: no cover - manual tool
    from PIL import Image

    def tile(img, lab, size=256):
        img = img.astype(np.float32)
        lo, hi = np.percentile(img, (0.5, 99.8))
        g = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = (np.repeat(g[..., None], 3, -1) if g.ndim == 2 else g) * 255
        f = max(1, size // max(lab.shape))
        rgb = np.kron(rgb, np.ones((f, f, 1))).astype(np.uint8)
        lab = np.kron(lab, np.ones((f, f), lab.dtype))
        over = rgb.copy()
        over[boundaries(lab)] = (255, 60, 60)
        out = np.zeros((size, 2 * size + 2, 3), np.uint8)
        out[: rgb.shape[0], : rgb.shape[1]] = rgb
        out[: rgb.shape[0], size + 2 : size + 2 + rgb.shape[1]] = over
        return out

    rows = []
    for reg in (DOMAINS, DOMAINS_3D):
        for fn in reg.values():
            tiles = []
            for seed in seeds:
                smp = fn(seed=seed)
                z = smp.image.shape[0] // 2 if smp.ndim == 3 else slice(None)
                tiles += [tile(smp.image[z], smp.labels[z]), np.full((256, 6, 3), 90, np.uint8)]
            rows += [np.concatenate(tiles, 1), np.full((6, len(seeds) * 520, 3), 90, np.uint8)]
    im = np.concatenate(rows, 0)
    Image.fromarray(im).save(path)
    return im


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(description="Benchmark the generators or save a montage.")
    parser.add_argument("--montage", metavar="PNG", help="save an overview of all domains")
    args = parser.parse_args()
    if args.montage:
        montage(args.montage)
        print(f"saved {args.montage}")
    else:
        benchmark()
