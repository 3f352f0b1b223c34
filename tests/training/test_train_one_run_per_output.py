"""Two ``napari-sam train ... -o m.pt`` at once: the second is refused at once (exit code 2),
naming the process that trains into ``m.pt`` and what to do; both used to train and write
over each other's checkpoint and training state. A run that was killed (its lock file left
behind) does not block the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from cli_runner import cli, error_line, md5s
from cli_runner import tiny_train_argv as _train


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def _hold(out) -> subprocess.Popen:
    """Another process holding the lock of checkpoint ``out`` (as a run training into it
    does) until it is killed."""
    code = ("import sys, time; from pathlib import Path; "
            "from napari_sam.training.output_lock import holding_output\n"
            "with holding_output(Path(sys.argv[1])):\n"
            "    print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                sys.path)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_into_one_checkpoint_is_refused_until_the_first_is_gone(
        tmp_path, samples, tiny_model, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    out = Path("m.pt")  # named as the user gave it
    argv = _train(samples, samples / "ground_truth", out, tiny_model, "--overwrite")
    rc, _, err = cli(argv, capsys)  # a finished run: m.pt and m.json
    assert rc == 0, err
    before = md5s(out, out.with_suffix(".json"))
    holder = _hold(tmp_path / "m.pt")
    try:
        rc, stdout, err = cli(argv, capsys)
        assert rc == 2
        assert error_line(err) == (
            "napari-sam: error: m.pt is being trained by another napari-sam process (pid "
            f"{holder.pid}): two runs into one checkpoint would write over each other's model "
            "and training state. Wait for that run to end (or stop it), or give this one "
            "another -o / out. A run that was killed holds no lock: if that process is gone, "
            "run again.")
        assert md5s(out, out.with_suffix(".json")) == before  # nothing trained, nothing written
        import napari_sam as ns
        from napari_sam.training.output_lock import TrainingOutputBusy

        with pytest.raises(TrainingOutputBusy, match=f"pid {holder.pid}"):  # the API too
            ns.train(samples, samples / "ground_truth", model=tiny_model, out=out,
                     overwrite=True, progress=False)
    finally:
        holder.send_signal(signal.SIGKILL)  # killed: its lock file stays behind
        holder.wait()
    assert list((tmp_path / ".napari-sam-work" / "locks").glob("m.pt.lock"))
    rc, stdout, err = cli(argv, capsys)  # the killed run's lock blocks nothing
    assert rc == 0, err
    assert f"wrote {out}" in stdout
    assert not (tmp_path / ".napari-sam-work").exists()  # the run removed its lock


def test_a_folder_whose_file_system_cannot_lock_trains_with_a_note(
        tmp_path, samples, tiny_model, capsys, monkeypatch):
    """An NFS mount without lockd answers ``flock`` with ENOLCK (Lustre without flock:
    ENOSYS): the run trains without a lock and says so once; it used to be refused as
    "being trained by another napari-sam process" forever."""
    import errno
    import fcntl

    def cannot_lock(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", cannot_lock)
    out = tmp_path / "nfs" / "m.pt"
    rc, stdout, err = cli(_train(samples, samples / "ground_truth", out, tiny_model), capsys)
    assert rc == 0, err
    assert f"wrote {out}" in stdout
    notes = [ln for ln in err.splitlines() if "cannot lock" in ln]
    assert notes == [
        f"napari-sam: the file system of {tmp_path / 'nfs'} cannot lock files "
        f"({os.strerror(errno.ENOLCK)}): running without a lock, so two napari-sam runs "
        "writing the same output there are not kept apart; run one at a time, or write to "
        "a local disk"]
    assert not (tmp_path / "nfs" / ".napari-sam-work").exists()  # no lock file left


def test_a_checkpoint_named_through_a_link_and_dotdot_shares_its_lock(
        tmp_path, samples, tiny_model, capsys):
    """``-o a/link/../m.pt`` where ``a/link`` points at ``b/c``: the kernel writes ``b/m.pt``,
    so the run takes ``b/m.pt``'s lock (it took ``a/m.pt``'s, ``..`` read as text, and
    trained into the checkpoint another run was training)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "link").symlink_to(tmp_path / "b" / "c")
    holder = _hold(tmp_path / "b" / "m.pt")
    try:
        rc, _, err = cli(_train(samples, samples / "ground_truth",
                                f"{tmp_path}/a/link/../m.pt", tiny_model), capsys)
        assert rc == 2
        assert f"is being trained by another napari-sam process (pid {holder.pid})" in (
            error_line(err))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not (tmp_path / "b" / "m.pt").exists()
