"""napari told to end (SIGTERM: a logout or shutdown, ``kill PID``, a cluster job's time
limit; SIGHUP: the terminal it runs from closed) saves what the docks have not saved yet,
then ends as it would have.

Python's default for these signals ends the process at once, without running any Python:
a hand edit made in the last 1.5 s (its autosave waits for the end of the stroke,
:mod:`napari_sam._qt.paint_autosave`) and a large labels autosave under way on the writer's
thread (:mod:`napari_sam.annotate.autosave_writer`) were lost, as on ``kill -9``. With a
dock open, the signal now writes the pending hand-edit autosaves (and tries once more an
autosave that failed: space freed since, its timed retry still to come), waits (at most
:data:`WAIT_S` seconds) for the autosaves under way and waiting, and then ends the process
by the same signal with its default action (exit status -15 for SIGTERM). When everything
was saved, the sessions are released as a closed dock releases them (their lock files go), so
the next offer to resume reads as after a normal close, not "napari ended unexpectedly"; a
session whose autosave fails (a full disk: its file lacks the last commits) is not released,
so the offer says how many commits are missing (before, it was released as if saved). A signal someone
set to be ignored (``nohup``), or gave a handler of their own, is left alone.

A Python signal handler runs only when the interpreter runs, and napari's Qt event loop may
sit in C++ for long: the signal wakes the loop through Python's wakeup file descriptor
(:func:`signal.set_wakeup_fd`, read by a ``QSocketNotifier``), so the handler runs at once and
an idle napari runs no Python of ours. Where another part of the process already holds the
wakeup descriptor (an asyncio loop with signal handlers), a light timer (:data:`TICK_MS`)
lets the handler run instead, as before (a timer that woke the loop four times a second in
every napari with a dock). Others may also take or drop the descriptor later: asyncio's
``add_signal_handler`` replaces it and ``remove_signal_handler`` sets none, as prompt_toolkit
does around every IPython prompt; after that nothing woke the loop on SIGTERM. A slow check
(:data:`WATCH_MS`) puts ours back where none is set, and where someone else's is set leaves
it to them and runs the light timer until theirs goes. The handler itself only
asks the event loop to save (the signal may come in the middle of a commit or of a write on
the UI thread): the saves run once that is done. A main thread stuck in C code never runs the handler: such
a napari (frozen) ends on SIGKILL only, where SIGTERM ended it before.

When no event loop runs (a Jupyter cell running with ``%gui qt``, a script blocked in
``widget.wait()``), nothing would run a save asked for later, and the handler runs in the
middle of whatever the main thread does, possibly a commit half applied: it then snapshots
nothing (a pending hand-edit autosave is not written: it would save the labels of that half
commit) and only waits for the autosaves already handed to the writer's thread, which are
copies taken between commits. Before, it wrote the pending hand-edit autosave there too.
All sessions share one :data:`WAIT_S` (before, each waited up to 60 s in turn: two slow
ones passed the SIGKILL kept for a hang, :data:`WAIT_S` + 10 s).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import threading
import time
import weakref

from napari_sam._qt.paint_autosave import flush_all

__all__ = ["TICK_MS", "WAIT_S", "WATCH_MS", "save_on_terminate", "wait_for_autosaves",
           "write_failed_autosaves"]

#: how often the event loop lets Python look at signals (ms) where the wakeup descriptor is
#: taken by someone else
TICK_MS = 250
#: how often the wakeup descriptor is checked (ms): put back where someone reset it (asyncio's
#: ``remove_signal_handler``), left to them where they set their own
WATCH_MS = 3000
#: how long the end waits for autosaves under way (s): a logout's manager kills after ~90 s
WAIT_S = 60.0

_SESSIONS: weakref.WeakSet = weakref.WeakSet()
_STATE: dict = {"handled": [], "timer": None, "watch": None, "wakeup": None, "ending": False}


def save_on_terminate(session) -> None:
    """Save ``session`` (an ``AnnotationSession``: its pending autosaves) when napari is told
    to end (see the module docstring); installs the handlers once per process, from the
    main thread (elsewhere it does nothing: Python takes signals on the main thread only)."""
    _SESSIONS.add(session)
    installed = _STATE["timer"] is not None or _STATE["wakeup"] is not None
    if installed or threading.current_thread() is not threading.main_thread():
        return
    for sig in _signals():
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _told_to_end)
            _STATE["handled"].append(sig)
    if not _STATE["handled"]:
        return
    from qtpy.QtCore import QTimer

    _STATE["wakeup"] = _wake_on_signals()
    if _STATE["wakeup"] is not None:
        atexit.register(_let_wakeup_go)
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: None)  # (Python runs: a signal's handler gets its turn)
    _STATE["timer"] = timer
    if _STATE["wakeup"] is None:
        timer.start()
        return
    watch = QTimer()
    watch.setInterval(WATCH_MS)
    watch.timeout.connect(_keep_waking)
    watch.start()
    _STATE["watch"] = watch
    _keep_waking()


def _keep_waking() -> None:
    """Make sure a signal still wakes the event loop: our wakeup descriptor is set again
    where nobody's is (asyncio's ``remove_signal_handler`` sets none); where someone else's
    is, theirs stays and the light timer runs until it goes."""
    ours = _STATE["wakeup"][1].fileno()
    try:
        previous = signal.set_wakeup_fd(ours, warn_on_full_buffer=False)
    except (ValueError, OSError):
        previous = None
    theirs = previous not in (-1, ours)
    if theirs and previous is not None:
        signal.set_wakeup_fd(previous)
    timer = _STATE["timer"]
    if theirs and not timer.isActive():
        timer.start()
    elif not theirs and timer.isActive():
        timer.stop()


def _wake_on_signals():
    """Wake Qt's event loop when a signal comes: Python writes a byte to the write end of a
    socket pair (:func:`signal.set_wakeup_fd`), a ``QSocketNotifier`` on the read end wakes
    the loop, and the slot that drains it lets the interpreter run the handler. Returns what
    must stay alive (the sockets, the notifier), or None where the wakeup descriptor is
    someone else's (left to them)."""
    from qtpy.QtCore import QSocketNotifier

    read_end, write_end = socket.socketpair()
    for end in (read_end, write_end):
        end.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(write_end.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError):
        previous = None
    if previous != -1:
        if previous is not None:
            signal.set_wakeup_fd(previous)
        read_end.close()
        write_end.close()
        return None
    readable = getattr(QSocketNotifier, "Type", QSocketNotifier).Read
    notifier = QSocketNotifier(read_end.fileno(), readable)

    def drain(*_):
        try:
            while read_end.recv(512):
                pass
        except OSError:  # nothing more to read (BlockingIOError)
            pass

    notifier.activated.connect(drain)
    return read_end, write_end, notifier


def _let_wakeup_go() -> None:
    """At exit: our wakeup descriptor unset where it is still ours, its sockets closed
    (Python warned of two unclosed sockets at the end of every process with a dock)."""
    read_end, write_end, notifier = _STATE["wakeup"]
    try:
        previous = signal.set_wakeup_fd(-1)
        if previous not in (-1, write_end.fileno()):
            signal.set_wakeup_fd(previous)  # (someone else's: left to them)
    except (ValueError, OSError):
        pass
    try:
        notifier.setEnabled(False)
    except RuntimeError:  # (Qt deleted it already)
        pass
    read_end.close()
    write_end.close()


def _signals() -> list:
    return [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]


def _told_to_end(signum, frame) -> None:
    if _STATE["ending"]:
        return
    _STATE["ending"] = True
    deadline = time.monotonic() + WAIT_S
    # whatever happens, the process ends (a save that hangs: an unreachable network share)
    watchdog = threading.Timer(WAIT_S + 10, os.kill, (os.getpid(), signal.SIGKILL))
    watchdog.daemon = True
    watchdog.start()
    from qtpy.QtCore import QCoreApplication, QThread, QTimer

    if QCoreApplication.instance() is not None and QThread.currentThread().loopLevel() > 0:
        QTimer.singleShot(0, lambda: _save_and_end(signum, deadline, True))  # after what the
        # loop is doing
    else:  # no event loop runs (a notebook cell, a script): a save asked for would never
        # come, and this runs inside whatever the main thread does (maybe a commit half
        # applied): only the autosaves handed to the writer (copies) are waited for
        _save_and_end(signum, deadline, False)


def _save_and_end(signum: int, deadline: float, flush: bool) -> None:
    try:
        if flush:
            flush_all()  # the hand edits whose autosave waits for the end of the stroke
            write_failed_autosaves(list(_SESSIONS))  # space freed since: saved now
        saved = wait_for_autosaves(list(_SESSIONS), deadline)
        if flush and saved:  # all on disk: the sessions end as closed ones (their lock files
            for session in list(_SESSIONS):  # go, so the next offer to resume does not say
                if not getattr(session, "autosave_failing", None):  # napari ended
                    session.release_session_file()  # unexpectedly); not one whose autosave
                    # fails (a full disk): its file lacks commits, the offer must say so
    finally:
        _end(signum)


def write_failed_autosaves(sessions) -> None:
    """Try once more the autosave of each of ``sessions`` (``AnnotationSession``) whose last
    write failed (a full disk, a share gone away): the space may have been freed since, and
    its timed retry may be up to 10 min away (before, the commits made since the failure
    were lost when napari was told to end meanwhile)."""
    for session in sessions:
        if getattr(session, "autosave_failing", None) and session.autosave:
            try:
                session.autosave_now()
            except Exception:  # noqa: BLE001 - the others are still saved, napari still ends
                pass


def wait_for_autosaves(sessions, deadline: float) -> bool:
    """Wait for the autosaves under way and waiting of ``sessions`` (``AnnotationSession``)
    until ``deadline`` (:func:`time.monotonic`), one deadline for all; False when it passed
    first (or a wait failed)."""
    done = True
    for session in sessions:
        try:
            done = session.wait_autosave(max(0.0, deadline - time.monotonic())) and done
        except Exception:  # noqa: BLE001 - the others are still saved
            done = False
    return done


def _end(signum: int) -> None:
    """End the process as the signal's default action ends it."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
