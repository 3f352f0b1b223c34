"""The UI thread's share of each commit's autosave on a long session: before (the session
file parsed on the UI thread at every autosave, to see whose file it is) and now (its bytes
compared with those parsed last; the autosave worker parses what it wrote).

    python benchmarks/bench_session_records.py [--shape 30 512 512] [--commits 300]

Both runs autosave the same session, one commit more each time (the same prompts, a label
painted per commit), into a temporary folder, with the dock's threaded writer (labels of
16 MiB and more are written on its worker; the (30, 512, 512) uint32 labels are 30 MiB).
The "reference" run parses the session file at every autosave, as before (a fresh
``ImageRecords`` each time); "new" is the session as it is. Timed: ``autosave_now()`` on
the calling thread (the UI thread in napari), the worker's write waited for outside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

from napari_sam import session as S  # noqa: E402
from napari_sam.annotate import AnnotationSession  # noqa: E402
from napari_sam.annotate.autosave_writer import AutosaveWriter  # noqa: E402
from napari_sam.annotate.session_records import ImageRecords  # noqa: E402


def operation(i: int, z: int) -> dict:
    """A slice commit as the dock records it: three points of one object."""
    r, c = 20.0 + (i * 7) % 400, 30.0 + (i * 13) % 400
    obj = {"slice": z, "points": [[r, c], [r + 5.5, c + 3.25], [r - 4.0, c + 8.75]],
           "labels": [1, 1, 0], "key": "points", "candidate": 2, "n_candidates": 3,
           "mask_prompt": False}
    return {"op": "commit", "kind": "slice", "slice": z, "overwrite": False, "mask_label": 0,
            "objects": [obj], "written": [[0, 0]], "ids": [i + 1]}


def run(folder: Path, shape, commits: int, reference: bool) -> tuple[list[float], int]:
    """UI-thread seconds of each commit's autosave, and the session file's size at the end."""
    s = AnnotationSession()
    s.set_image(np.zeros(shape, np.uint8), name="stack", path=str(folder / "stack.tif"))
    labels = np.zeros(shape, np.uint32)
    s.labels = labels
    s._log_target = labels  # (the benchmark's commit target: no model, no commit)
    later = []
    s.autosave_writer = AutosaveWriter(later.append)  # (its news: run after the timing)
    ui = []
    for i in range(commits):
        z = i % shape[0]
        labels[z, (i * 7) % (shape[1] - 8):(i * 7) % (shape[1] - 8) + 8, 10:18] = i + 1
        s.log.append(operation(i, z))
        if reference:  # what each autosave did before: parse the file
            s._image_records = ImageRecords()
        t0 = time.perf_counter()
        s.autosave_now()
        ui.append(time.perf_counter() - t0)
        s.wait_autosave()
    for fn in later:
        fn()
    path = S.session_file_for(folder / "stack.tif")
    assert json.loads(path.read_text())["operations"] == s.log  # (no model: not a full read)
    return ui, path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=[30, 512, 512])
    ap.add_argument("--commits", type=int, default=300)
    args = ap.parse_args()
    shape = tuple(args.shape)
    print(f"labels {shape} uint32, {args.commits} commits; {cpu_name()}, {os.cpu_count()} "
          f"cores; load {os.getloadavg()[0]:.2f}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("reference", "new"):
            folder = Path(tmp) / mode
            folder.mkdir()
            ui, size = run(folder, shape, args.commits, mode == "reference")
            last = ui[-50:]
            results[mode] = statistics.median(last)
            print(f"{mode}: UI thread per commit: median {statistics.median(ui) * 1e3:.2f} ms "
                  f"(commits 1-{len(ui)}), {results[mode] * 1e3:.2f} ms over the last "
                  f"{len(last)}, max {max(ui) * 1e3:.2f} ms; session file {size / 1e3:.0f} kB")
    ratio = results["new"] / results["reference"]
    print(f"UI-thread time per commit (last 50), new / reference: {ratio:.3f} "
          f"({results['reference'] * 1e3:.2f} ms -> {results['new'] * 1e3:.2f} ms); "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
