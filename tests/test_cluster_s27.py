"""``--precision`` on a cluster (helper sweep, session 27): the CLI passed it to the workers
only through its own environment (``NAPARI_SAM_PRECISION``), which the workers of a
``--scheduler`` cluster never see, so a ``--precision fp32`` run computed in bf16 on them,
and nothing said so. Now every task runs with the batch's precision in its thread
(``napari_sam.device.precision_in_this_thread``), and the output metadata records the
precision used."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_sam import batch
from napari_sam import io as nio
from napari_sam.device import PRECISION_ENV, precision_in_this_thread, resolve_precision

CPU = torch.device("cpu")


def test_precision_in_this_thread_comes_before_the_environment(monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    assert resolve_precision("auto", CPU) == torch.bfloat16
    seen = []
    with precision_in_this_thread("fp32"):
        assert resolve_precision("auto", CPU) == torch.float32
        assert resolve_precision("fp16", CPU) == torch.float16  # an explicit one stays
        other = threading.Thread(target=lambda: seen.append(resolve_precision("auto", CPU)))
        other.start()
        other.join()
        with precision_in_this_thread("auto"):  # changes nothing
            assert resolve_precision("auto", CPU) == torch.float32
    assert seen == [torch.bfloat16]  # another thread: the environment's
    assert resolve_precision("auto", CPU) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        with precision_in_this_thread("fp8"):
            pass


@pytest.mark.slow
def test_a_cluster_run_uses_the_batchs_precision_not_the_workers_environment(
        tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    from tiny_configs import save_tiny_cnn

    (tmp_path / "model").mkdir()
    model = save_tiny_cnn(tmp_path / "model")
    rng = np.random.default_rng(0)
    img = (rng.random((4, 48, 48)) * 1000).astype(np.uint16)
    img[:, 10:30, 12:34] += 3000
    inp = tmp_path / "s.tif"
    import tifffile

    tifffile.imwrite(inp, img, photometric="minisblack")
    params = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    kw = dict(command="auto", model=str(model), device="cpu", quiet=True, params=params)
    monkeypatch.setenv(PRECISION_ENV, "bf16")  # what the workers' own environment says
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        monkeypatch.delenv(PRECISION_ENV)  # the client's: a machine of its own
        ctx = batch.Context(out_dir=tmp_path / "cluster", precision="fp32", **kw)
        (res,) = batch.run_jobs(batch.make_jobs([inp], ctx), ctx,
                                scheduler=cluster.scheduler_address)
    assert res.status == "done", res.reason
    assert nio.read_sidecar(res.output)["model"]["precision"] == "fp32"
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    serial = batch.Context(out_dir=tmp_path / "serial", precision="fp32", **kw)
    (ser,) = batch.run_jobs(batch.make_jobs([inp], serial), serial)
    np.testing.assert_array_equal(nio.read_image(res.output).data,
                                  nio.read_image(ser.output).data)
    assert nio.read_sidecar(ser.output)["model"]["precision"] == "fp32"


def test_an_empty_scheduler_address_is_refused_before_any_work(tmp_path, capsys, offline_cli):
    """The cluster recipe's ``--scheduler $(python -c ...)`` expands to '' when the scheduler
    has not written its file yet: it was an internal TypeError."""
    from cli_runner import cli, error_line

    inp = tmp_path / "a.tif"
    import tifffile

    tifffile.imwrite(inp, np.zeros((2, 32, 32), np.uint16))
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "out", "--scheduler", ""], capsys)
    assert rc == 2 and "--scheduler is empty: give the scheduler's address" in error_line(err)
    assert not (tmp_path / "out").exists()


def test_device_cuda_with_a_scheduler_is_the_workers_not_the_clients(tmp_path, capsys,
                                                                      offline_cli):
    """The docs' SLURM recipes run the client on a machine without a GPU: ``--device cuda
    --scheduler ADDRESS`` was refused there ("CUDA is not available here"). Now it reaches
    the scheduler (here: none listens, which is what the run says), and a device name that
    is not one is still refused at once."""
    import napari_sam.batch.distributed as D
    from cli_runner import cli, error_line

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(D, "SCHEDULER_TIMEOUT", "1s")
    inp = tmp_path / "a.tif"
    import tifffile

    tifffile.imwrite(inp, np.zeros((2, 32, 32), np.uint16))
    try:
        rc, _, err = cli(["auto", inp, "-o", tmp_path / "out", "--device", "cuda",
                          "--scheduler", "tcp://127.0.0.1:9"], capsys)
        assert "cannot reach a dask scheduler at tcp://127.0.0.1:9" in err, err
        assert "CUDA is not available" not in err
        rc, _, err = cli(["auto", inp, "-o", tmp_path / "out2", "--device", "gpu",
                          "--scheduler", "tcp://127.0.0.1:9"], capsys)
        assert rc == 2 and "--device 'gpu': use auto, cpu, cuda, cuda:N or mps" in error_line(err)
    finally:
        monkeypatch.undo()


def test_a_scheduler_without_workers_is_said_not_a_silent_hang(capsys):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from napari_sam.batch.distributed import say_if_no_workers

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            say_if_no_workers(client, cluster.scheduler_address)
    err = capsys.readouterr().err
    assert f"the dask scheduler at {cluster.scheduler_address} has no workers yet" in err
    assert "dask worker" in err


def test_a_bad_checkpoint_is_refused_before_a_cluster_starts(tmp_path, capsys, offline_cli):
    """Cluster runs skipped the client's model check: every file failed with the same
    message, exit 1, and an empty output folder was left (helper sweep, session 27)."""
    import tifffile

    from cli_runner import cli, error_line

    inp = tmp_path / "a.tif"
    tifffile.imwrite(inp, np.zeros((2, 32, 32), np.uint16))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "out", "--model", bad, "--workers", "2"],
                     capsys)
    line = error_line(err)
    assert rc == 2 and f"--model {bad}: cannot load it as a model" in line
    assert "not a readable PyTorch checkpoint" in line and "Download it again" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address", ["garbage", "tcp://localhost:99999", "tcp://host:0"])
def test_a_scheduler_address_that_is_none_is_refused_at_once(tmp_path, capsys, offline_cli,
                                                             address):
    """'missing port number in address' without the form to give, or 30 s of waiting for a
    port that cannot exist (helper sweep, session 27)."""
    import tifffile

    from cli_runner import cli, error_line

    inp = tmp_path / "a.tif"
    tifffile.imwrite(inp, np.zeros((2, 32, 32), np.uint16))
    rc, _, err = cli(["auto", inp, "-o", tmp_path / "out", "--scheduler", address], capsys)
    assert rc == 2
    assert f"--scheduler {address}: not a scheduler address; give it as tcp://HOST:PORT" \
        in error_line(err)


def test_block_slices_with_segment_is_said_to_be_ignored(tmp_path, capsys, offline_cli,
                                                         monkeypatch):
    import tifffile

    import napari_sam.batch.distributed as D
    from cli_runner import cli

    monkeypatch.setattr(D, "SCHEDULER_TIMEOUT", "1s")
    inp = tmp_path / "a.tif"
    tifffile.imwrite(inp, np.zeros((5, 32, 32), np.uint16), photometric="minisblack")
    prompts = tmp_path / "p.csv"
    prompts.write_text("file,id,slice,row,col\na.tif,1,1,16,16\n")
    _, _, err = cli(["segment", inp, "-o", tmp_path / "out", "-p", prompts, "--block-slices",
                     "2", "--scheduler", "tcp://127.0.0.1:9"], capsys)
    assert "--block-slices is ignored: segment propagates slice after slice" in err, err


def test_a_local_cluster_says_nothing_of_a_busy_port_8787(tmp_path, tiny_model):
    """With port 8787 taken (another dask dashboard, a notebook server), `--workers N` printed
    distributed's "UserWarning: Port 8787 is already in use. Perhaps you already have a
    cluster running? Hosting the HTTP server on port ... instead" and its source line."""
    import socket
    import subprocess
    import sys

    import tifffile

    inp = tmp_path / "s.tif"
    tifffile.imwrite(inp, np.random.default_rng(0).integers(0, 255, (3, 48, 48), np.uint8),
                     photometric="minisblack")
    holder = socket.socket()
    try:
        holder.bind(("", 8787))
        holder.listen()
    except OSError:  # taken already by something else: the case itself
        pass
    try:
        run = subprocess.run(
            [sys.executable, "-m", "napari_sam.cli", "embed", str(inp), "-o",
             str(tmp_path / "out"), "--model", str(tiny_model), "--workers", "1", "--device",
             "cpu"], capture_output=True, text=True, timeout=300)
    finally:
        holder.close()
    assert run.returncode == 0, run.stderr
    assert "1 done" in run.stdout
    assert "8787" not in run.stderr and "already in use" not in run.stderr, run.stderr
