"""Peak memory of `napari-sam auto` and `napari-sam embed` on a stack larger than 2 GB.

    python benchmarks/bench_batch_memory.py                       # 2.1 GB stack, demo model
    python benchmarks/bench_batch_memory.py --gb 4 --size 1024    # another shape
    python benchmarks/bench_batch_memory.py --compressed          # zlib TIFF (read through zarr)
    python benchmarks/bench_batch_memory.py --model tiny          # random tiny model (no demo.pt)

1. Writes a (Z, S, S) uint16 TIFF of at least ``--gb`` GB to ``--workdir`` slice by slice
   (synthetic nuclei: spheres with noise; uncompressed by default, so the command reads it
   memory-mapped, the case where resident memory could grow with the file).
2. Baseline: a separate process imports the package and loads the model exactly as the
   command does (``napari_sam.batch.get_model``): its peak resident set size is "the model's
   own" memory (Python, torch, the weights).
3. Runs ``napari-sam auto --no-propagate`` (the streaming path; propagation holds the label
   volume in memory, as ``segment`` does) and ``napari-sam embed`` (``--commands``) on the stack as
   child processes and reads each one's peak resident set size from the kernel
   (``os.wait4`` -> ``ru_maxrss``, which includes file pages mapped into the process).

Prints the numbers, the peak above the baseline against the 1.5 GB budget, and a markdown
row for docs/benchmarks.md. Exit code 1 when a peak exceeds the budget.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_name, total_ram_gb  # noqa: E402

BUDGET_GB = 1.5


def write_stack(path: Path, n: int, size: int, *, compressed: bool, seed: int = 0) -> float:
    """Write a (n, size, size) uint16 stack of nuclei-like spheres, one slice at a time."""
    import tifffile

    rng = np.random.default_rng(seed)
    n_obj = max(8, int(n * (size / 64) ** 2 / 40))
    cz = rng.uniform(0, n, n_obj)
    cy = rng.uniform(0, size, n_obj)
    cx = rng.uniform(0, size, n_obj)
    rad = rng.uniform(size / 60, size / 25, n_obj)
    zrad = rad / 4  # anisotropic: objects span a few slices
    yy, xx = np.ogrid[:size, :size]

    def slices():
        for z in range(n):
            img = rng.normal(300, 30, (size, size)).astype(np.float32)
            for k in np.nonzero(np.abs(cz - z) < zrad)[0]:
                r = rad[k] * math.sqrt(max(0.0, 1 - ((z - cz[k]) / zrad[k]) ** 2))
                y0, y1 = int(max(0, cy[k] - r - 1)), int(min(size, cy[k] + r + 2))
                x0, x1 = int(max(0, cx[k] - r - 1)), int(min(size, cx[k] + r + 2))
                disc = (yy[y0:y1] - cy[k]) ** 2 + (xx[:, x0:x1] - cx[k]) ** 2 < r * r
                img[y0:y1, x0:x1][disc] += 2500
            yield np.clip(img, 0, 65535).astype(np.uint16)

    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".part")
    tifffile.imwrite(tmp, slices(), shape=(n, size, size), dtype=np.uint16, bigtiff=True,
                     metadata={"axes": "ZYX"}, compression="zlib" if compressed else None,
                     photometric="minisblack")
    os.replace(tmp, path)
    return time.perf_counter() - t0


def run_measured(cmd: list[str], env: dict) -> tuple[int, float, float, str]:
    """(exit code, peak RSS in GB, seconds, stderr tail) of a child process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-2000:]
    seconds = time.perf_counter() - t0
    peak = usage.ru_maxrss * 1024 / 1e9  # Linux reports KiB
    return proc.returncode, peak, seconds, tail


def tiny_model(workdir: Path) -> Path:
    import torch

    from napari_sam.models.build import SamConfig, build_sam

    cfg = SamConfig(encoder="cnn", img_size=256, cnn_widths=(16, 32, 48, 64),
                    cnn_depths=(1, 1, 1, 1), cnn_fpn_dim=64, name="tiny_cnn")
    torch.manual_seed(0)
    path = workdir / "tiny.pt"
    torch.save(build_sam(cfg).state_dict(), path)
    path.with_name("tiny.pt.json").write_text(json.dumps({"config": cfg.to_dict()}))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=2.0, help="minimum stack size on disk (GB)")
    ap.add_argument("--size", type=int, default=2048, help="slice side in pixels")
    ap.add_argument("--model", default="demo", help='"demo", "tiny" (random) or a path/name')
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--compressed", action="store_true", help="zlib-compressed TIFF")
    ap.add_argument("--auto-args", default="", help='extra `auto` options, e.g. "--pred-iou-thresh 0.5"')
    ap.add_argument("--commands", default="auto,embed", help="which commands to measure")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--keep", action="store_true", help="keep the stack and outputs")
    args = ap.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_batch_memory_"))
    workdir.mkdir(parents=True, exist_ok=True)
    n = math.ceil(args.gb * 1e9 / (args.size * args.size * 2))
    stack = workdir / f"stack_{n}x{args.size}x{args.size}.tif"
    try:
        if not stack.exists():
            secs = write_stack(stack, n, args.size, compressed=args.compressed)
            print(f"wrote {stack} in {secs:.0f} s")
        disk_gb = stack.stat().st_size / 1e9
        data_gb = n * args.size * args.size * 2 / 1e9
        print(f"stack: ({n}, {args.size}, {args.size}) uint16, {data_gb:.2f} GB of pixels, "
              f"{disk_gb:.2f} GB on disk, {'zlib' if args.compressed else 'uncompressed'}")
        model = str(tiny_model(workdir)) if args.model == "tiny" else args.model
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        env.pop("DISPLAY", None)

        code = (f"from napari_sam import batch; m, _ = batch.get_model({model!r}, 'cpu'); "
                "print(sum(p.numel() for p in m.parameters()))")
        rc, base, _, tail = run_measured([sys.executable, "-c", code], env)
        if rc != 0:
            print(tail)
            return 2
        print(f"baseline (python + torch + model {args.model!r}): peak RSS {base:.2f} GB")

        rows = []
        commands = {
            "auto": ["auto", str(stack), "-o", str(workdir / "out"), "--model", model,
                     "--device", "cpu", "--points-per-side", str(args.points_per_side), "-q",
                     "--overwrite", "--no-propagate",  # the streaming path: constant memory
                     *args.auto_args.split()],
            "embed": ["embed", str(stack), "-o", str(workdir / "emb"), "--model", model,
                      "--device", "cpu", "-q", "--overwrite"],
        }
        runs = [(c, commands[c]) for c in args.commands.split(",")]
        ok = True
        for name, cli_args in runs:
            rc, peak, secs, tail = run_measured(
                [sys.executable, "-m", "napari_sam.cli", *cli_args], env)
            if rc != 0:
                print(f"{name}: exit code {rc}\n{tail}")
                return 2
            above = peak - base
            ok &= above < BUDGET_GB
            rows.append((name, peak, above, secs))
            print(f"napari-sam {name}: peak RSS {peak:.2f} GB = baseline + {above:.2f} GB "
                  f"(budget {BUDGET_GB} GB: {'OK' if above < BUDGET_GB else 'EXCEEDED'}), "
                  f"{secs:.0f} s ({secs / n:.2f} s/slice)")
        from napari_sam import io as nio

        out = workdir / "out" / f"{stack.stem}_labels.tif"
        if out.exists():
            sc = nio.read_sidecar(out)
            lab = nio.read_image(out, lazy=True)
            print(f"auto output: {out.name} {lab.shape} {lab.dtype}, {len(sc['objects'])} "
                  f"objects, {out.stat().st_size / 1e6:.1f} MB")
        print("\nmarkdown row (docs/benchmarks.md, Batch memory):")
        for name, peak, above, secs in rows:
            print(f"| `napari-sam {name}` | ({n}, {args.size}, {args.size}) uint16, "
                  f"{disk_gb:.2f} GB {'zlib' if args.compressed else 'raw'} | {base:.2f} GB | "
                  f"{peak:.2f} GB | **{above:.2f} GB** | {secs:.0f} s |")
        print(f"\nmachine: {cpu_name()}, {os.cpu_count()} CPUs, {total_ram_gb():.0f} GB RAM, "
              f"torch threads default, model {args.model!r}")
        return 0 if ok else 1
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
