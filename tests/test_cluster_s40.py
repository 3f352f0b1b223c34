"""A ``--scheduler`` address where something accepts connections and never speaks (session 40).

dask's client waits for the scheduler's answer to its handshake without a timeout: ``auto``,
``segment`` and ``embed`` hung there forever (its own 30 s timeout covers the connection
only). The probe now refuses such a listener after its handshake timeout (5 s), before any
work, naming the address and what to do.
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
        "accepts connections there but sent nothing within 5 s of dask's handshake: not a "
        "dask scheduler, or one too busy to answer); start one there (e.g. `dask scheduler "
        "--port PORT` and `dask worker ADDRESS` on the workers), check the address, or leave "
        "out --scheduler to run here (--workers N for a local cluster)")
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "out").exists()
