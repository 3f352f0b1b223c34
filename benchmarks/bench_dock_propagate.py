"""Propagating one nucleus through a tiled stack in the dock's session: lazy vs embed-all.

The dock's Propagate embedded every tile of every slice before propagating (360 s for one
nucleus of a 120 x 1024 x 1024 stack); it now embeds the slices and tiles the object reaches.
Both are timed here on the same synthetic stack with the bundled demo model (its input is
256 px, so the slices are tiled), in one run:

* ``lazy``: ``AnnotationSession.propagate`` as it ships;
* ``reference``: ``compute_embeddings()`` of the whole stack first (what Propagate did), then
  ``propagate``.

Printed: seconds of each, the windows encoded, the ratio lazy / reference, and whether both
give the same labels.

    python benchmarks/bench_dock_propagate.py --slices 24 --size 768
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


def run(sample, embed_all: bool):
    from scipy import ndimage as ndi

    from napari_sam.annotate import AnnotationSession
    from napari_sam.annotate.model_choice import model_choices

    z = sample.image.shape[0] // 2
    lab = sample.labels[z]
    ids, counts = np.unique(lab[lab > 0], return_counts=True)
    i = int(ids[counts.argmax()])
    r, c = (int(v) for v in ndi.center_of_mass(lab == i))
    s = AnnotationSession()
    s.set_image(sample.image, name="stack")
    s.set_model(next(ch for ch in model_choices() if ch.is_demo))
    s.go_to_slice(z)
    s.add_point(z, r, c)
    t = time.perf_counter()
    if embed_all:
        s.compute_embeddings()
    s.propagate()
    seconds = time.perf_counter() - t
    n, wins = len(s.emb), len(s.emb.tiling)
    encoded = sum(n - len(s.emb.window_stack(w).missing(range(n))) for w in range(wins))
    return seconds, encoded, n * wins, np.asarray(s.volume.labels)


def main(argv=None) -> None:
    from napari_sam import configure_threads, synthetic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--size", type=int, default=768)
    args = parser.parse_args(argv)
    configure_threads()
    sample = synthetic.nuclei_3d((args.slices, args.size, args.size), seed=10_011)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"stack {sample.image.shape}")
    lazy = run(sample, embed_all=False)
    ref = run(sample, embed_all=True)
    for name, (sec, enc, total, _) in (("lazy", lazy), ("reference", ref)):
        print(f"{name:9s}: {sec:7.1f} s, {enc} of {total} slice windows encoded")
    print(f"ratio lazy / reference: {lazy[0] / ref[0]:.2f}; same labels: "
          f"{np.array_equal(lazy[3], ref[3])}; load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
