"""One session on a lent GPU machine, in one command that ends within a time budget.

The device tool lends a GPU for a few minutes at a time (one command of at most 600 s), so a
session is planned in advance and run as one script:

1. the machine (GPU, driver, torch, numpy) into ``OUT/gpu.txt``;
2. optional benchmarks alone on the GPU (timings need an idle GPU), each with its own
   timeout: the segment-everything benchmark (``--bench-automatic PRECISIONS``), the encoder
   at a batch of 8 (``--bench-encoder``), the training step's rate and profile
   (``--profile-step BATCHES``);
3. demo-model training runs side by side (``--run NAME="ARGS"``, each with ``--common`` in
   front), shortened so that they end within ``--budget`` seconds, with the CUDA tests beside
   them (``--cuda-tests``);
4. float16 copies of each run's best checkpoint (a returned file may hold at most 16 MB), its
   JSON sidecar and its log into ``OUT``.

Examples (the sessions of 2026-11-27, docs/models.md "The demo model", runs 25-27 and 32-33)::

    python benchmarks/gpu_session.py --bench-automatic fp32,tf32,bf16 --bench-encoder \\
        --cuda-tests --minutes 5.5 \\
        --common "--device cuda --threads 1 --workers 3 --batch-size 16 --eval-minutes 2 \\
                  --box-noise 0.03 --warm 0 --balanced 0 --init src/napari_sam/weights/demo.pt" \\
        --run A="--lr 3e-4 --weights nuclei_3d=0.45 --propagation-hops 2 --seed 61" \\
        --run B="--lr 5e-4 --weights nuclei_3d=0.35 --propagation-hops 1 --seed 62"
    python benchmarks/gpu_session.py --profile-step 16,32,64 --cuda-tests --minutes 7.3 \\
        --common "--device cuda --threads 1 --workers 6 --pool-size 320 --eval-minutes 1.5 \\
                  --box-noise 0.03 --propagation-hops 1 --correction-fraction 0.5" \\
        --run A="--batch-size 32 --lr 2e-3 --seed 91" --run B="--batch-size 64 --lr 3e-3 --seed 92"

The quality lines of a returned checkpoint are measured afterwards on the CPU
(``python -m napari_sam.training.demo --check --out FILE``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: seconds a training run needs after its budget to write its best checkpoint
SAVE_MARGIN_S = 55


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"),
                   help="folder for everything that comes back (default: $OUT or /tmp/out)")
    p.add_argument("--budget", type=float, default=535,
                   help="seconds the whole session may take (the device command's limit less "
                        "the time to copy the results; default 535)")
    p.add_argument("--bench-automatic", metavar="PRECISIONS", default=None,
                   help="run benchmarks/bench_automatic.py with these --grid-precision values, "
                        "e.g. fp32,tf32,bf16 or fp32:eager,fp32")
    p.add_argument("--bench-encoder", action="store_true",
                   help="run benchmarks/bench_encoder.py at a batch of 8")
    p.add_argument("--profile-step", metavar="BATCHES", default=None,
                   help="run benchmarks/profile_training_step.py: the step rate at these batch "
                        "sizes (e.g. 16,32,64), then one profiled step at the first")
    p.add_argument("--cuda-tests", action="store_true",
                   help="run tests/test_cuda.py beside the training runs")
    p.add_argument("--minutes", type=float, default=5.0,
                   help="training minutes per run, shortened to fit --budget (default 5)")
    p.add_argument("--common", default="--device cuda --threads 1",
                   help="arguments of napari_sam.training.demo shared by every run")
    p.add_argument("--run", action="append", default=[], metavar='NAME="ARGS"',
                   help="one training run: its name and its own arguments (repeatable)")
    return p.parse_args(argv)


def step(cmd: list[str], log: Path, timeout: float, env: dict[str, str]) -> None:
    """Run one command with a timeout, its output both printed and written to ``log``."""
    t0 = time.monotonic()
    print("$", shlex.join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=max(timeout, 1))
        text = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        text = ((err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes)
                else (err.stdout or "")) + f"\n(timed out after {timeout:.0f} s)\n"
    print(text, flush=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(text)
    print(f"{log.stem}: {time.monotonic() - t0:.0f} s", flush=True)


def record_machine(out: Path, env: dict[str, str]) -> None:
    """GPU name, driver and memory, then the torch and numpy versions, into ``out/gpu.txt``."""
    py = [sys.executable, "-c", "import torch, numpy; "
          "print('torch', torch.__version__, 'numpy', numpy.__version__)"]
    smi = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
           "--format=csv,noheader"]
    for cmd in (smi, py):
        if shutil.which(cmd[0]) or cmd[0] == sys.executable:
            step(cmd, out / "gpu.txt", 60, env)


def run_benchmarks(a: argparse.Namespace, out: Path, env: dict[str, str]) -> None:
    """The benchmarks chosen on the command line, alone on the GPU, one after the other."""
    py = sys.executable
    if a.bench_automatic:
        step([py, "benchmarks/bench_automatic.py", "--device", "cuda", "--threads", "4",
              "--grid-precision", a.bench_automatic], out / "bench_automatic.txt", 200, env)
    if a.bench_encoder:
        step([py, "benchmarks/bench_encoder.py", "--device", "cuda", "--batch", "8",
              "--runs", "5"], out / "bench_encoder.txt", 60, env)
    if a.profile_step:
        common = [py, "benchmarks/profile_training_step.py", "--device", "cuda", "--threads",
                  "1", "--correction-fraction", "0.5", "--workers", "12"]
        step([*common, "--no-profile", "--batch-size", a.profile_step, "--steps", "8"],
             out / "step_rate.txt", 75, env)
        step([*common, "--batch-size", a.profile_step.split(",")[0], "--steps", "4",
              "--top", "12"], out / "step_profile.txt", 40, env)


def train_side_by_side(a: argparse.Namespace, runs: dict[str, str], work: Path, out: Path,
                       remaining_s: float, env: dict[str, str]) -> None:
    """Start every run at once (shortened to end within ``remaining_s``), the CUDA tests
    beside them, and wait for all."""
    minutes = round(min(a.minutes, (remaining_s - SAVE_MARGIN_S - 5) / 60), 2)
    if minutes <= 0:
        print(f"no time left to train ({remaining_s:.0f} s)", flush=True)
        return
    limit = minutes * 60 + SAVE_MARGIN_S
    print(f"training {len(runs)} runs for {minutes} min each (timeout {limit:.0f} s)", flush=True)
    procs = []
    for name, own in runs.items():
        cmd = [sys.executable, "-m", "napari_sam.training.demo", "--no-progress",
               *shlex.split(a.common), "--minutes", str(minutes), *shlex.split(own),
               "--out", str(work / f"{name}.pt")]
        log = open(work / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        procs.append((subprocess.Popen(["timeout", str(int(limit)), *cmd], cwd=ROOT, env=env,
                                       stdout=log, stderr=subprocess.STDOUT), log))
    if a.cuda_tests:
        step([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
              "tests/test_cuda.py", "-rs"], out / "test_cuda.txt", limit, env)
    for proc, log in procs:
        proc.wait()
        log.close()


def return_results(runs: dict[str, str], work: Path, out: Path) -> None:
    """float16 copies of the runs' best checkpoints, their sidecars and logs into ``out``."""
    import torch

    for name in runs:
        ckpt = work / f"{name}.pt"
        if ckpt.is_file():
            sd = torch.load(ckpt, map_location="cpu", weights_only=True)
            torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()},
                       out / f"{name}_fp16.pt")
        for extra in (ckpt.with_suffix(".json"), work / f"{name}.log"):
            if extra.is_file():
                shutil.copy(extra, out / extra.name)
                if extra.suffix == ".log":
                    print(name, "".join(extra.read_text().splitlines(True)[-2:]), flush=True)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    t0 = time.monotonic()
    out = Path(a.out)
    work = out.parent / (out.name + "_work")
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"),
                                          os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    runs = dict(r.split("=", 1) if "=" in r else (r, "") for r in a.run)
    record_machine(out, env)
    run_benchmarks(a, out, env)
    if runs or a.cuda_tests:
        train_side_by_side(a, runs, work, out, a.budget - (time.monotonic() - t0), env)
    return_results(runs, work, out)
    print(f"session: {time.monotonic() - t0:.0f} s; results in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
