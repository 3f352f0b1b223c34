"""Is a dask scheduler listening at a ``--scheduler`` address, or something else?

dask's client reads the answer to its handshake without a timeout and trusts the first 8
bytes as a frame count: a scheduler's dashboard (HTTP, port 8787) kept ``napari-sam`` waiting
silently for minutes, and an SSH server's banner became "MemoryError: Unable to allocate 2.82
EiB", and a listener that accepts and never speaks kept it waiting forever.
:func:`not_a_scheduler` does dask's handshake itself, bounded in time, and when it fails looks
at what answers instead; a listener that sent nothing (or an address where nothing answers) is
tried once more for the rest of the client's timeout first: a busy scheduler answers late."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

#: Seconds the first dask handshake may take before the listener is looked at (an idle
#: scheduler answers in milliseconds; an HTTP server or a server that speaks first is told
#: apart in seconds then).
HANDSHAKE_TIMEOUT = 5.0
#: Seconds in all a listener that accepts and sends nothing (or an address where no
#: connection is made) gets before it is refused: after the first handshake it is tried
#: again for the rest of this time, since a busy scheduler (its event loop blocked: dask logs
#: "Event loop was unresponsive for N s") answers after seconds. The caller passes its
#: client's own timeout (``napari_sam.batch.distributed.SCHEDULER_TIMEOUT``).
PATIENCE = 30.0

#: What to do when something other than a scheduler listens at ``--scheduler``.
WHERE_IT_IS = ("the scheduler's address is the tcp://HOST:PORT (default port 8786) that its "
               "log prints as 'Scheduler at:', not its dashboard (8787)")


def tcp_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``tcp://HOST:PORT`` (or ``HOST:PORT``) address; None for another
    scheme or an address without both."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme != "tcp" or not host or not port:
        return None
    return host, port


def dask_handshake_error(address: str, timeout: float = HANDSHAKE_TIMEOUT
                         ) -> BaseException | None:
    """None when a dask scheduler answers dask's handshake at ``address`` within
    ``timeout`` seconds; else the error (``TimeoutError`` for no answer). Runs in a thread
    of its own (an event loop of its own, whatever the caller runs)."""
    import asyncio

    from distributed.comm import connect

    async def handshake():
        comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
        await comm.close()

    box: dict = {}

    def run():
        try:
            asyncio.run(handshake())
        except BaseException as exc:  # noqa: BLE001 - what it was is the answer
            box["error"] = exc

    thread = threading.Thread(target=run, name="napari-sam scheduler probe", daemon=True)
    thread.start()
    thread.join(timeout + 5)
    if thread.is_alive():
        return TimeoutError(f"no answer within {timeout:g} s")
    return box.get("error")


def _answer(host: str, port: int, send: bytes | None, wait: float) -> bytes | None:
    """The first bytes the listener at ``host:port`` sends within ``wait`` seconds (after
    ``send``, if given); b"" for none; None when no connection could be made."""
    try:
        sock = socket.create_connection((host, port), timeout=wait)
    except OSError:
        return None
    with sock:
        try:
            if send:
                sock.sendall(send)
            return sock.recv(256)
        except OSError:  # no answer in time, or the connection was reset
            return b""


def _shown(data: bytes) -> str:
    """The first line of ``data``, printable, at most 60 characters, quoted."""
    line = data.split(b"\n", 1)[0].strip().decode("ascii", "replace")
    line = "".join(c if c.isprintable() else "?" for c in line)
    return repr(line[:60] + ("..." if len(line) > 60 else ""))


def _timed_out(error: BaseException) -> bool:
    """Whether dask's handshake ``error`` is its time running out (dask's ``connect`` says so
    with an ``OSError("Timed out ...")``, ``asyncio`` with a ``TimeoutError``)."""
    return isinstance(error, TimeoutError) or (
        isinstance(error, OSError) and "timed out" in str(error).lower())


def not_a_scheduler(address: str, timeout: float = HANDSHAKE_TIMEOUT,
                    patience: float = PATIENCE) -> str | None:
    """What listens at the ``tcp://HOST:PORT`` ``address`` when it is not a dask scheduler
    (a phrase for the error; also when nothing answers at all), or None: a scheduler
    answered dask's handshake or the address is not a TCP one (the client then tries).

    Parameters
    ----------
    address : str
        The ``--scheduler`` address.
    timeout : float
        Seconds for the first dask handshake (:data:`HANDSHAKE_TIMEOUT`).
    patience : float
        Seconds in all before a silent listener, or an address where nothing answers, is
        refused (:data:`PATIENCE`).

    Returns
    -------
    str or None
    """
    where = tcp_host_port(address)
    if where is None:
        return None
    timeout = min(timeout, patience)
    error = dask_handshake_error(address, timeout)
    if error is None:
        return None
    host, port = where
    banner = _answer(host, port, None, 1.0)  # SSH, SMTP, FTP, ... speak first; dask never
    reply = banner or _answer(host, port, f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode(),
                                3.0)
    if not banner and reply and reply.startswith(b"HTTP/"):
        return ("an HTTP server answers there, e.g. a scheduler's dashboard: this is not "
                f"a dask scheduler's port; {WHERE_IT_IS}")
    if (reply is None or _timed_out(error)) and patience > timeout:
        # a busy scheduler answers late (what it sent the looks above may be its own
        # handshake, sent once it woke up): once more, for the rest of the patience
        error = dask_handshake_error(address, patience - timeout)
        if error is None:
            return None
    if banner:
        return f"something else is listening there: it sent {_shown(banner)}"
    if reply is None:  # no connection at all (a firewall dropping packets, a host that is off)
        return (f"nothing answered there within {patience:g} s: check the host name, the "
                "port and any firewall between here and there")
    if _timed_out(error) and not reply:  # dask's client would wait forever
        return (f"something accepts connections there but sent nothing within {patience:g} s "
                "of dask's handshake: not a dask scheduler, or one too busy to answer")
    return (f"something listens there but does not answer as a dask scheduler "
            f"({type(error).__name__}{': ' if str(error) else ''}{str(error)[:80]})")
