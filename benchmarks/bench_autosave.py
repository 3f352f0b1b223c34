"""The UI thread's share of one autosave of a large labels layer: before (copy, hash,
compress at zlib level 6 and write, all on the calling thread) and now (the labels copied
into the writer's warm buffer; hashing, compressing at level 1 and writing on the worker).

    python benchmarks/bench_autosave.py [--shape 60 2048 2048] [--rounds 3]

The "old" path is the writer without a worker (what every autosave did before) with the TIFF
compressed at zlib's default level, as before; the "new" path is the dock's: a writer whose
``post`` runs its news later (here: after the timing). Both write the same labels into a
temporary folder; the files are read back and compared.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

from napari_sam import io as nio  # noqa: E402
from napari_sam import session as S  # noqa: E402
from napari_sam.annotate import AnnotationSession  # noqa: E402
from napari_sam.annotate.autosave_writer import AutosaveWriter  # noqa: E402


def labels_of(shape) -> np.ndarray:
    """Annotated-looking uint32 labels: 300 boxes of 150 x 150 px through 10 slices."""
    rng = np.random.default_rng(0)
    lab = np.zeros(shape, np.uint32)
    z, y, x = shape
    for i in range(300):
        k, r, c = rng.integers(0, z), rng.integers(0, y - 150), rng.integers(0, x - 150)
        lab[max(0, k - 5):k + 5, r:r + 150, c:c + 150] = i + 1
    return lab


def session_for(folder: Path, labels: np.ndarray, post) -> AnnotationSession:
    image = np.zeros(labels.shape, np.uint8)
    s = AnnotationSession()
    s.set_image(image, name="big", path=str(folder / "big.tif"))
    s.labels = labels
    s._log_target = labels  # (the benchmark's commit target: no model, no commit)
    s.autosave_writer = AutosaveWriter(post)
    return s


def one(s: AnnotationSession, labels: np.ndarray) -> tuple[float, float]:
    """(seconds on the calling thread, seconds until the file is written)."""
    labels[0, 0, 0] += 1  # a change: the TIFF is content-addressed
    t0 = time.perf_counter()
    s.autosave_now()
    ui = time.perf_counter() - t0
    s.wait_autosave()
    return ui, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=[60, 2048, 2048])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    labels = labels_of(tuple(args.shape))
    print(f"labels {tuple(labels.shape)} {labels.dtype}: {labels.nbytes / 2**30:.2f} GiB; "
          f"{cpu_name()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    level6 = functools.partial(nio.write_labels, compression="zlib")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("old", "new"):
            folder = Path(tmp) / mode
            folder.mkdir()
            later = []
            s = session_for(folder, labels, None if mode == "old" else later.append)
            patch = (mock.patch.object(nio, "write_labels", level6) if mode == "old"
                     else mock.patch.object(nio, "write_labels", nio.write_labels))
            with patch:
                times = [one(s, labels) for _ in range(args.rounds)]
            for fn in later:
                fn()
            results[mode] = times
            path = S.session_file_for(folder / "big.tif")
            ref = json.loads(path.read_text())["labels"]  # (no model picked: not a full read)
            saved = tifffile.imread(path.with_name(ref["path"]))
            assert np.array_equal(saved, labels) and S.labels_hash(labels) == ref["hash"], mode
            ui = [t[0] for t in times]
            print(f"{mode}: UI thread {' '.join(f'{v:.3f}' for v in ui)} s (median "
                  f"{statistics.median(ui):.3f}); until written "
                  f"{' '.join(f'{t[1]:.2f}' for t in times)} s")
    old = statistics.median(t[0] for t in results["old"])
    new = statistics.median(t[0] for t in results["new"])
    print(f"UI-thread time new / old: {new / old:.3f} ({old:.2f} s -> {new:.3f} s); "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
