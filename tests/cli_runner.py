"""Running ``napari-sam`` in-process in tests: its exit code and output, never a traceback
(and as a subprocess, to send it a signal: :func:`start_cli`, :func:`interrupt_in`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def cli(argv, capsys) -> tuple[int, str, str]:
    """Run ``napari-sam ARGV`` in-process: (exit code, stdout, stderr); never a traceback."""
    from napari_sam.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return rc, out, err


def error_line(err: str) -> str:
    """The one ``napari-sam: error:`` line of ``err`` (asserts there is exactly one)."""
    lines = [line for line in err.splitlines() if line.startswith("napari-sam: error:")]
    assert len(lines) == 1, err
    return lines[0]


def noise_image(path, shape=(64, 64), seed=0):
    """Write a uint16 noise TIFF of ``shape`` at ``path`` (folders made); returns the path."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, (rng.random(shape) * 1000).astype(np.uint16),
                     photometric="minisblack")
    return path


def md5s(*paths) -> dict:
    """``{str(path): md5 hex digest of its bytes}``: to check files were left as they were."""
    import hashlib

    return {str(p): hashlib.md5(p.read_bytes()).hexdigest() for p in paths}



def tiny_train_argv(images, labels, out, model, *extra) -> list:
    """``napari-sam train`` arguments for one step of one epoch on one object pair at a time
    (the training CLI tests' smallest schedule), on the CPU, quiet."""
    return ["train", images, labels, "-o", out, "--model", model, "--epochs", "1",
            "--steps-per-epoch", "1", "--batch-size", "1", "--objects-per-image", "2",
            "--device", "cpu", "-q", *extra]


def record_embedding_bars(monkeypatch) -> list:
    """Record the embedding progress bars the commands make (``batch.embedding_stores``):
    returns the list they are appended to, each with ``unit``, ``total`` and ``calls``
    ([(done, total), ...])."""
    from napari_sam.batch import embedding_stores

    bars = []

    class Recording(embedding_stores.JobProgressBar):
        def __init__(self, ctx, desc, total=None, unit="slice"):
            super().__init__(ctx, desc, total, unit)
            self.unit, self.total, self.calls = unit, total, []
            bars.append(self)

        def __call__(self, done, total):
            self.calls.append((done, total))
            super().__call__(done, total)

    monkeypatch.setattr(embedding_stores, "JobProgressBar", Recording)
    return bars


def cli_env(tmp_path: Path, *first: Path) -> dict:
    """The environment of a ``python -m napari_sam.cli`` subprocess: this checkout's
    napari_sam (after the folders ``first``), an empty model cache, one thread."""
    import napari_sam

    paths = [*map(str, first), str(Path(napari_sam.__file__).parents[1])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1",
            "NAPARI_SAM_CACHE_DIR": str(tmp_path / "model-cache"), "PYTHONWARNINGS": "ignore"}


def start_cli(argv, tmp_path) -> subprocess.Popen:
    """``python -m napari_sam.cli ARGV`` started in a subprocess (output captured)."""
    return subprocess.Popen([sys.executable, "-m", "napari_sam.cli", *argv],
                            env=cli_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def interrupt_in(proc: subprocess.Popen, ready, sig=signal.SIGINT, timeout: float = 300) -> str:
    """Send ``sig`` to ``proc`` once ``ready()`` is true; its stdout and stderr after it ended
    (asserts it was still running: else make the input bigger)."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "finished before the signal; make the input bigger"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out + err


def patched_on_import(module: str, patch: str, imports: str = "") -> str:
    """The text of a ``sitecustomize.py`` that runs ``patch`` (Python, the imported module
    bound to ``module``) right after ``module`` is imported, in every process whose
    ``PYTHONPATH`` holds it (the command's and dask's worker processes): a job held, or
    failing, at a chosen step whatever the machine's load."""
    body = "\n".join("            " + line for line in patch.strip("\n").splitlines())
    return f"""
import importlib.abc, importlib.util, sys{', ' + imports if imports else ''}
NAME = {module!r}
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != NAME:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
{body}
        spec.loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Hook())
"""
