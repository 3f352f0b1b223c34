"""Leftovers of interrupted or failed runs (helper sweep, session 39): a ``--workers`` run
stopped by SIGTERM left ``.napari-sam-work/locks/*.lock`` files of its killed workers and
``"partial"`` sidecars without an output; a serial run stopped while a file ran left that
file's ``"partial"`` sidecar; an ``-o`` folder the run created stayed behind, empty, after
a run that failed or was interrupted before it wrote anything; and the summary told a user
whose own file sat at an output path to "fix it and rerun the same command"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_runner import cli, noise_image, patched_on_import
from napari_sam import batch
from napari_sam import io as nio

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp: Path, *first: Path) -> dict:
    env = dict(os.environ)
    env["NAPARI_SAM_CACHE_DIR"] = str(tmp / "model-cache")
    env["PYTHONWARNINGS"] = "ignore"
    env["PYTHONPATH"] = os.pathsep.join([*map(str, first), str(ROOT / "src"),
                                         env.get("PYTHONPATH", "")])
    env.pop("DISPLAY", None)
    return env


def _napari_sam(tmp: Path, *args, first: tuple = ()) -> subprocess.Popen:
    """``napari-sam ARGS`` as its own process group (``timeout -s TERM`` signals the group);
    ``first``: folders before napari-sam's on its path (a ``sitecustomize``)."""
    return subprocess.Popen([sys.executable, "-m", "napari_sam.cli", *map(str, args)],
                            cwd=tmp, env=_env(tmp, *first), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


#: ``sitecustomize``: ``auto`` holds (sleeps) once it saved its first slice, until a signal
#: stops it, so a signal sent then lands while the job runs, however loaded the machine is
#: (the 8 slices of the demo model took under a second: a SIGTERM 0.5 s after the job
#: started could land after it finished, in main's clean-up).
HOLD_AFTER_ONE_SLICE = patched_on_import("napari_sam.batch.auto_runner", """
real = module._save_slice
def save(*args):
    real(*args)
    while True:
        time.sleep(0.05)
module._save_slice = save
""", imports="time")


def _sample(tmp: Path, n: int, shape: str = "6,96,96") -> Path:
    subprocess.run([sys.executable, "-m", "napari_sam.cli", "sample", "nuclei-3d", "-o",
                    "data", "-n", str(n), "--shape", shape, "-q"], cwd=tmp, env=_env(tmp),
                   check=True, capture_output=True)
    return tmp / "data"


def _term_once_running(proc, out: Path, timeout: float = 240,
                       ready=lambda: True) -> tuple[int, str]:
    """SIGTERM to ``proc``'s group as soon as a job of it runs (its lock file and its
    ``"partial"`` sidecar exist) and ``ready()``; returns (exit code, stdout)."""
    locks = out / batch.WORK_DIR / "locks"
    deadline = time.monotonic() + timeout
    try:
        while not (list(locks.glob("*.lock")) and list(out.glob("*.json")) and ready()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, stdout


def _partial_without_output(out: Path) -> list[str]:
    return [p.name for p in out.glob("*.json")
            if (nio.read_output_metadata(p.with_suffix("")) or {}).get("status") == "partial"
            and not p.with_suffix("").exists()]


@pytest.mark.slow
def test_sigterm_of_a_workers_run_leaves_no_locks_and_no_partial_sidecars(tmp_path):
    pytest.importorskip("distributed")
    data = _sample(tmp_path, 2, "8,96,96")
    out = tmp_path / "out"
    proc = _napari_sam(tmp_path, "auto", data, "-o", out, "--model", "demo", "--workers", "2")
    rc, stdout = _term_once_running(proc, out)
    assert rc == 130 and "Interrupted" in stdout
    locks = out / batch.WORK_DIR / "locks"
    assert not locks.exists() or list(locks.iterdir()) == []  # the killed workers' locks
    assert _partial_without_output(out) == []


def test_sigterm_of_a_serial_run_leaves_no_partial_sidecar(tmp_path):
    """SIGTERM while the job runs (held after its first slice: a signal 0.5 s after the job
    started could land after it finished, the test's -2 under load) exits 130 and leaves
    no "partial" sidecar without an output."""
    data = _sample(tmp_path, 1, "8,96,96")
    out = tmp_path / "out"
    (tmp_path / "hold").mkdir()
    (tmp_path / "hold" / "sitecustomize.py").write_text(HOLD_AFTER_ONE_SLICE)
    proc = _napari_sam(tmp_path, "auto", data, "-o", out, "--model", "demo",
                       first=(tmp_path / "hold",))
    rc, _ = _term_once_running(
        proc, out, ready=lambda: any((out / batch.WORK_DIR).rglob("z*.npz")))
    assert rc == 130
    assert not (out / batch.WORK_DIR / "locks").exists()
    assert not (out / "nuclei-3d_seed10000_labels.tif.json").exists()
    assert not out.exists() or _partial_without_output(out) == []  # (empty: removed)


def test_a_lock_of_a_process_that_no_longer_runs_is_taken_over(tmp_path, tiny_model, capsys,
                                                              offline_cli):
    """A lock file left by a killed process (its pid no longer runs) and its "partial"
    sidecar: the next run takes the lock over, computes the output and removes the file."""
    inp = noise_image(tmp_path / "in" / "a.tif", (2, 48, 48))
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = out / batch.WORK_DIR / "locks" / "a_labels.tif.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{dead.pid}\n")
    nio.write_json_atomic(out / "a_labels.tif.json", {"status": "partial", "pid": dead.pid})
    rc, stdout, _ = cli(["auto", inp, "-o", out, "--model", tiny_model, "-q"], capsys)
    assert rc == 0 and "1 done" in stdout
    assert nio.read_output_metadata(out / "a_labels.tif")["status"] == "complete"
    assert not lock.exists()
    doc = " ".join((ROOT / "docs" / "cli.md").read_text().split())
    assert "a lock of a process that no longer runs is taken over" in doc


def test_an_output_folder_this_run_made_is_removed_when_nothing_was_written(
        tmp_path, tiny_model, capsys, offline_cli):
    """Every file failed (exit code 1): the ``-o`` this run made is removed; one that
    existed before the run stays."""
    bad = tmp_path / "in" / "a.tif"
    bad.parent.mkdir()
    bad.write_bytes(b"II*\x00" + b"\x00" * 64)  # a damaged TIFF: the file fails
    out = tmp_path / "new" / "out"
    rc, stdout, _ = cli(["auto", bad, "-o", out, "--model", tiny_model, "-q"], capsys)
    assert rc == 1 and "1 failed" in stdout
    assert not out.exists() and not out.parent.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    rc, _, _ = cli(["auto", bad, "-o", kept, "--model", tiny_model, "-q"], capsys)
    assert rc == 1 and kept.is_dir()


def test_an_output_folder_of_a_run_interrupted_before_any_work_is_removed(tmp_path):
    """A ``--scheduler`` that never answers, then SIGTERM (exit code 130, or a connection
    error): the empty ``-o`` the run made is removed."""
    pytest.importorskip("distributed")
    import socket

    data = _sample(tmp_path, 1)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts, never speaks dask
    out = tmp_path / "out"
    try:
        proc = _napari_sam(tmp_path, "auto", data, "-o", out, "--model", "demo",
                           "--scheduler", f"tcp://127.0.0.1:{silent.getsockname()[1]}")
        deadline = time.monotonic() + 120
        while not out.exists() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        silent.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (130, 1, 2)
    assert not out.exists()


def test_the_summary_after_a_refusal_to_replace_a_users_file_says_move_it(
        tmp_path, tiny_model, capsys, offline_cli):
    inp = noise_image(tmp_path / "in" / "a.tif", (2, 48, 48))
    out = tmp_path / "out"
    noise_image(out / "a_labels.tif", (2, 48, 48), seed=3)  # the user's file, no sidecar
    rc, stdout, _ = cli(["auto", inp, "-o", out, "--model", tiny_model], capsys)
    assert rc == 1
    flat = " ".join(stdout.split())
    assert "move that file away or choose another -o" in flat
    assert "fix it and rerun" not in flat
