"""``--scheduler`` addresses where something else listens, and workers that cannot read the
model file (helper walkthrough, session 39):

* an SSH server's port ended after ~20 s in "MemoryError: Unable to allocate 2.82 EiB" (dask
  read the banner as a frame count), and a scheduler's dashboard port (HTTP) hung silently
  for minutes: both are now refused within seconds, saying what answers there;
* a checkpoint the client can read but a worker cannot was reported as "checkpoint file not
  found ...; check the path", which the client's user had checked: the failure now names the
  worker and says that workers need the same paths.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line

pytest.importorskip("distributed")


@pytest.fixture
def ssh_like():
    """A TCP listener that speaks first, as sshd does: its ``tcp://`` address."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            try:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" + bytes(range(256)) * 4)
                conn.settimeout(2)
                conn.recv(65536)
            except OSError:
                pass
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    thread.join()
    srv.close()


@pytest.fixture
def http_port():
    """A local HTTP server (as a scheduler's dashboard is): its ``tcp://`` address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def one_stack(tmp_path):
    inp = tmp_path / "a.tif"
    tifffile.imwrite(inp, np.zeros((2, 32, 32), np.uint16))
    return inp


def test_an_ssh_port_as_scheduler_is_refused_at_once_saying_what_answers(
        ssh_like, one_stack, tmp_path, capsys, offline_cli):
    t0 = time.monotonic()
    rc, _, err = cli(["auto", one_stack, "-o", tmp_path / "out", "--scheduler", ssh_like],
                     capsys)
    line = error_line(err)
    assert rc == 1, err  # as for an address where nothing listens
    assert (f"no dask scheduler answers at {ssh_like} (something else is listening there: "
            "it sent 'SSH-2.0-OpenSSH_9.6')") in line
    assert "MemoryError" not in err
    assert time.monotonic() - t0 < 15
    assert not (tmp_path / "out").exists()


def test_a_dashboard_http_port_as_scheduler_is_refused_with_where_the_scheduler_is(
        http_port, one_stack, tmp_path, capsys, offline_cli):
    t0 = time.monotonic()
    rc, _, err = cli(["auto", one_stack, "-o", tmp_path / "out", "--scheduler", http_port],
                     capsys)
    line = error_line(err)
    assert rc == 1, err
    assert (f"no dask scheduler answers at {http_port} (an HTTP server answers there, e.g. a "
            "scheduler's dashboard: this is not a dask scheduler's port; the scheduler's "
            "address is the tcp://HOST:PORT (default port 8786) that its log prints as "
            "'Scheduler at:', not its dashboard (8787))") in line
    assert time.monotonic() - t0 < 20


def test_a_real_scheduler_passes_the_probe():
    from distributed import LocalCluster

    from napari_sam.batch.scheduler_probe import not_a_scheduler

    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        assert not_a_scheduler(cluster.scheduler_address) is None
    assert not_a_scheduler("inproc://x") is None  # not TCP: dask's client decides


def test_a_worker_without_the_model_file_is_named_and_told_about_shared_paths(
        one_stack, tmp_path, tiny_model):
    """The client checked the checkpoint; the worker (here one in this process, after the
    file moved away) cannot read it: the file fails with the documented prefix, the worker's
    host and address, and what the workers need."""
    import shutil
    import socket

    from distributed import LocalCluster

    from napari_sam import batch

    model = tmp_path / "real.pt"
    shutil.copy(tiny_model, model)
    ctx = batch.Context(command="embed", model=str(model), out_dir=tmp_path / "out",
                        device="cpu", quiet=True)
    jobs = batch.make_jobs([one_stack], ctx)
    model.unlink()  # as on a worker that does not mount the client's file system
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster:
        (res,) = batch.run_jobs(jobs, ctx, scheduler=cluster.scheduler_address)
        worker = next(iter(cluster.scheduler_info["workers"]))
    assert res.status == "failed"
    assert res.reason == (
        f"task failed on the cluster: the worker on {socket.gethostname()} ({worker}) cannot "
        f"read the checkpoint file {model}, which the client could: the workers need the same "
        "paths as the client; keep the model (and the images and -o folder) on a file system "
        "they all mount, at the same path"), res.reason


def _sleep(seconds):
    time.sleep(seconds)
    return seconds


def test_a_worker_lost_while_running_a_file_is_said(capsys):
    """A worker killed mid-file (SIGKILL; its nanny starts another) had its task retried
    without a word: the client now says which worker was lost and which file is retried."""
    import os
    import signal

    from distributed import Client, LocalCluster

    from napari_sam.batch.distributed import say_lost_workers

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        fut = client.submit(_sleep, 60, key="napari-sam-test-a", pure=False)
        say_lost_workers(client, {fut.key: "a.tif"})
        deadline = time.monotonic() + 30
        while not any(client.processing().values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        (worker, pid), = pids.items()
        os.kill(pid, signal.SIGKILL)
        err = ""
        while "lost the worker" not in err and time.monotonic() < deadline + 30:
            time.sleep(0.2)
            err += capsys.readouterr().err
        fut.cancel()
    assert (f"napari-sam: lost the worker {worker} while it ran a.tif; dask retries it on "
            "another worker (after 3 lost workers a file fails, and the summary says so)") in err


def test_a_cluster_run_ends_without_a_scheduler_traceback(one_stack, tmp_path, tiny_model):
    """Listening for lost workers subscribes the client to the scheduler's events: unless it
    unsubscribes before closing, the scheduler sends the client's own removal to the closed
    client and logs "CRITICAL - Closed comm ..." with a traceback after the summary."""
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "napari_sam.cli", "embed", str(one_stack), "-o",
         str(tmp_path / "out"), "--model", str(tiny_model), "--workers", "1", "--device",
         "cpu"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "1 done" in run.stdout
    assert "CRITICAL" not in run.stderr and "Traceback" not in run.stderr, run.stderr
