"""Resuming batch runs as a user sees it (session 43): the words of a rerun after Ctrl-C, after
an input was replaced, after an option changed, and the note of an output folder that cannot
lock with worker processes. Real subprocesses where a signal or worker processes matter."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile

pytestmark = pytest.mark.usefixtures("offline_cli")

#: Makes ``flock`` of napari-sam's lock files fail as on an NFS mount without lockd (ENOLCK),
#: in every process started with it on PYTHONPATH (worker processes too).
NO_LOCKS = """
import errno, fcntl, os
_flock = fcntl.flock
def flock(fd, op):
    if ".napari-sam-work" in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    return _flock(fd, op)
fcntl.flock = flock
"""


def cli_env(tmp_path: Path, *first: Path) -> dict:
    """The environment of a ``python -m napari_sam.cli`` subprocess: this checkout's
    napari_sam (after the folders ``first``), an empty model cache, one thread."""
    import napari_sam

    paths = [*map(str, first), str(Path(napari_sam.__file__).parents[1])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1",
            "NAPARI_SAM_CACHE_DIR": str(tmp_path / "model-cache"), "PYTHONWARNINGS": "ignore"}


def blob_folder(folder: Path, n: int = 3, z: int = 6, size: int = 64) -> Path:
    """``n`` blob stacks ``b0.tif``... (different noise) in ``folder``."""
    from stacks import blob_stack

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tifffile.imwrite(folder / f"b{i}.tif", blob_stack(z=z, size=size, seed=i),
                         photometric="minisblack")
    return folder


def auto_argv(inputs, out, model, *extra) -> list[str]:
    """``auto`` arguments that find the blobs with the tiny model."""
    return [str(a) for a in ("auto", inputs, "-o", out, "--model", model, "--points-per-side",
                             "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
                             "--axes", "ZYX", *extra)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_an_unlockable_folder_is_said_once_in_the_summary_with_workers(tmp_path, tiny_model):
    """With ``--workers 2`` every worker process said "cannot lock" itself (twice, amid the
    files' lines); the summary says it once, from the main process."""
    (tmp_path / "nolocks").mkdir()
    (tmp_path / "nolocks" / "sitecustomize.py").write_text(NO_LOCKS)
    blob_folder(tmp_path / "data", n=4, z=2)
    proc = subprocess.run(
        [sys.executable, "-m", "napari_sam.cli",
         *auto_argv(tmp_path / "data", tmp_path / "out", tiny_model, "--workers", "2")],
        env=cli_env(tmp_path, tmp_path / "nolocks"), capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "4 files: 4 done" in proc.stdout, proc.stdout
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "cannot lock" in ln]
    assert said == [
        f"Note: the file system of {(tmp_path / 'out').resolve()} cannot lock files "
        f"({os.strerror(errno.ENOLCK)}): its jobs ran without a lock, so two "
        "napari-sam runs writing the same output there are not kept apart; run one at a "
        "time, or write to a local disk."], proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith(said[0])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"b{i}_labels.tif{s}" for i in range(4) for s in ("", ".json"))
