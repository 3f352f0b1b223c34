"""A ``--scheduler`` address where something accepts connections and never speaks (session 40).

dask's client waits for the scheduler's answer to its handshake without a timeout: ``auto``,
``segment`` and ``embed`` hung there forever (its own 30 s timeout covers the connection
only). The probe now refuses such a listener after its handshake timeout (the client's 30 s:
a real scheduler whose event loop is blocked for seconds still answers, review of session 40),
before any work, naming the address and what to do; and an address where nothing answers at
all (a firewall dropping packets) is said to be that, not "something listens there".
"""

from __future__ import annotations

import socket
import time

import pytest

from cli_runner import cli, error_line, noise_image

pytest.importorskip("distributed")


@pytest.fixture
def silent_listener():
    """A TCP listener that accepts connections (the kernel's backlog does) and never sends a
    byte: its ``tcp://`` address."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    srv.close()


@pytest.mark.timeout(90)  # it hung forever
@pytest.mark.parametrize("command", ["auto", "embed"])
def test_a_silent_listener_as_scheduler_is_refused_within_seconds(
        command, silent_listener, tmp_path, capsys, offline_cli):
    image = noise_image(tmp_path / "a.tif", shape=(2, 32, 32))
    t0 = time.monotonic()
    rc, _, err = cli([command, image, "-o", tmp_path / "out", "--scheduler", silent_listener],
                     capsys)
    assert rc == 1, err  # as for an address where nothing listens, or something else speaks
    assert error_line(err) == (
        f"napari-sam: error: no dask scheduler answers at {silent_listener} (something "
        "accepts connections there but sent nothing within 30 s of dask's handshake: not a "
        "dask scheduler, or one too busy to answer); start one there (e.g. `dask scheduler "
        "--port PORT` and `dask worker ADDRESS` on the workers), check the address, or leave "
        "out --scheduler to run here (--workers N for a local cluster)")
    assert time.monotonic() - t0 < 50  # 5 s of handshake, 4 s looking, 25 s of handshake
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGSTOP"), reason="POSIX signals")
def test_a_scheduler_busy_for_seconds_is_not_refused():
    """A real scheduler whose event loop is blocked for 8 s (stopped with SIGSTOP; dask logs
    "Event loop was unresponsive") answers then: accepted (was: refused after 5 s, though
    dask's client connected)."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from napari_sam.batch.scheduler_probe import dask_handshake_error, not_a_scheduler

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                             "127.0.0.1", "--port", str(port), "--no-dashboard"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"tcp://127.0.0.1:{port}"
    try:
        for _ in range(120):
            time.sleep(0.5)
            if dask_handshake_error(address, 2.0) is None:
                break
        else:
            pytest.fail("the scheduler did not start")
        os.kill(proc.pid, signal.SIGSTOP)
        threading.Timer(8, os.kill, (proc.pid, signal.SIGCONT)).start()
        t0 = time.monotonic()
        assert not_a_scheduler(address) is None
        assert 7 < time.monotonic() - t0 < 30
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(30)


def test_an_address_where_nothing_answers_is_said_so(tmp_path, capsys, offline_cli,
                                                     monkeypatch):
    """A host that drops packets (firewalled): dask's connect gives up with an OSError("Timed
    out trying to connect ..."), and no connection can be made; the error says nothing
    answered (was: "something listens there but does not answer as a dask scheduler
    (OSError: Timed out ...)"). No real network: both ways of connecting are replaced."""
    import distributed.comm

    import napari_sam.batch.distributed as D

    address = "tcp://192.0.2.1:8786"

    async def dask_gives_up(addr, timeout=None, **kwargs):
        raise OSError(f"Timed out trying to connect to {addr} after {timeout} s")

    def no_connection(where, timeout=None, **kwargs):
        raise TimeoutError("timed out")

    monkeypatch.setattr(distributed.comm, "connect", dask_gives_up)
    monkeypatch.setattr(socket, "create_connection", no_connection)
    monkeypatch.setattr(D, "SCHEDULER_TIMEOUT", "2s")
    image = noise_image(tmp_path / "a.tif", shape=(2, 32, 32))
    rc, _, err = cli(["auto", image, "-o", tmp_path / "out", "--scheduler", address], capsys)
    assert rc == 1, err
    assert error_line(err) == (
        f"napari-sam: error: no dask scheduler answers at {address} (nothing answered there "
        "within 2 s: check the host name, the port and any firewall between here and there); "
        "start one there (e.g. `dask scheduler --port PORT` and `dask worker ADDRESS` on the "
        "workers), check the address, or leave out --scheduler to run here (--workers N for a "
        "local cluster)")
    assert not (tmp_path / "out").exists()
