"""napari told to end (SIGTERM: a logout or shutdown, ``kill PID``, a cluster job's time
limit) with a hand correction whose autosave had not run yet (it waits for the end of the
stroke), or while large labels are autosaved in the background: the correction or the
commit being written was lost, as on ``kill -9``; now napari saves it, then ends as the
signal ends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sam_qt_helpers import ONE_COMMIT_SCRIPT, napari_until

from napari_sam._qt.terminate_saves import WATCH_MS

HERE = Path(__file__).resolve().parent


_NAPARI_TOLD_TO_END = r"""
import sys, time
sys.path[:0] = [{helpers!r}, {tests!r}]
import napari
import napari_sam._qt.paint_autosave as P
import napari_sam.annotate.autosave_writer as AW
import napari_sam.io.writers as W
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication
from sam_qt_helpers import canvas_click, commit_on, open_from_menu, pick_checkpoint

P.PAINT_AUTOSAVE_MS = 600_000  # the stroke's autosave is still waiting when the signal comes
if {case!r} == "write":  # every autosave on the writer's thread, as for 1 GB of labels
    AW.BACKGROUND_BYTES = 1
""" + ONE_COMMIT_SCRIPT + r"""layer = widget.controller.target_layer
fsync = W.fsync_path

def slow_write(path):  # the second commit's labels take 3 s to reach the disk
    fsync(path)
    if ".labels-" in str(path) and str(path).endswith(".tmp"):
        print("WRITING", flush=True)
        time.sleep(3)

def act():
    if {case!r} == "stroke":
        layer.selected_label = 9
        layer.brush_size = 3
        layer.paint((1, 40, 40), 9)  # what the paint brush calls for a stroke
        print("WRITING", flush=True)
    else:
        W.fsync_path = slow_write
        viewer.dims.set_point(0, 3)
        viewer.layers.selection.active = widget.controller.points_layer
        canvas_click(viewer, 44, 44)
        assert widget._on_commit() is not None

QTimer.singleShot(0, act)
QApplication.instance().exec()  # napari's event loop, until the signal
"""


@pytest.mark.parametrize("case", ["stroke", "write"])
def test_sigterm_saves_a_hand_correction_or_the_write_under_way_before_napari_ends(
        stack_file, tiny_ckpt, case):
    from napari_sam import session as S

    script = _NAPARI_TOLD_TO_END.format(helpers=str(HERE), tests=str(HERE.parent), case=case,
                                        stack=str(stack_file), ckpt=str(tiny_ckpt))
    proc = napari_until(script, "WRITING")
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == -signal.SIGTERM  # it ends as the signal ends it
    from napari_sam.annotate.ended_sessions import ended_without_closing

    saved = S.read_session(stack_file.with_name("blobs.tif.sam-session.json"))
    # all was saved: the session ended as a closed one (the next offer does not say "napari
    # ended unexpectedly", as after kill -9)
    assert not ended_without_closing(stack_file.with_name("blobs.tif.sam-session.json"))
    if case == "stroke":
        assert len(saved.operations) == 1
        assert saved.labels[1, 40, 40] == 9  # the correction painted last
        assert sorted(np.unique(saved.labels).tolist()) == [0, 1, 9]
    else:
        assert len(saved.operations) == 2  # the commit whose write was under way
        assert sorted(np.unique(saved.labels).tolist()) == [0, 1, 2]
        assert (saved.labels[3] == 2).any() and not (saved.labels[1] == 2).any()


_TOLD_TO_END_MID_COMMIT = r"""
import os, signal, sys
sys.path[:0] = [{helpers!r}, {tests!r}]
import napari
import napari_sam._qt.paint_autosave as P
from sam_qt_helpers import canvas_click, commit_on, open_from_menu, pick_checkpoint

P.PAINT_AUTOSAVE_MS = 600_000  # a stroke's autosave still waits when the signal comes
""" + ONE_COMMIT_SCRIPT + r"""c = widget.controller
c.target_layer.selected_label = 9
c.target_layer.paint((1, 40, 40), 9)  # a hand edit: its autosave waits for the stroke's end
written = c.labels_changed

def written_then_told_to_end(*args, **kwargs):  # the pixels are in, the log not yet
    written(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)

c.labels_changed = written_then_told_to_end
viewer.dims.set_point(0, 3)
viewer.layers.selection.active = c.points_layer
canvas_click(viewer, 44, 44)
print("COMMITTING", flush=True)
widget._on_commit()  # no event loop runs (a notebook cell, a script): the signal comes here
print("NOT ENDED", flush=True)
"""


def test_sigterm_with_no_event_loop_saves_no_half_applied_commit(stack_file, tiny_ckpt):
    """Told to end while a notebook cell (or a script, no Qt event loop running) commits:
    the handler ran in the middle of the commit and wrote the waiting hand-edit autosave
    there, a file holding the commit's pixels without its record (its replay differs, its
    object table misses label 2). Now the file holds the last whole state autosaved."""
    from napari_sam import session as S

    script = _TOLD_TO_END_MID_COMMIT.format(helpers=str(HERE), tests=str(HERE.parent),
                                            stack=str(stack_file), ckpt=str(tiny_ckpt))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert "COMMITTING" in proc.stdout and "NOT ENDED" not in proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == -signal.SIGTERM
    saved = S.read_session(stack_file.with_name("blobs.tif.sam-session.json"))
    assert len(saved.operations) == 1  # the first commit, whole
    assert sorted(np.unique(saved.labels).tolist()) == [0, 1]  # no pixel of the half commit


def test_all_sessions_share_one_deadline_for_their_autosaves():
    """Two sessions whose autosaves hang waited 60 s each in turn, past the SIGKILL that
    ends a hung napari at 70 s; they share the one deadline now."""
    from napari_sam._qt.terminate_saves import wait_for_autosaves

    asked = []

    class Hung:
        def wait_autosave(self, timeout):
            asked.append(timeout)
            time.sleep(timeout)
            return False

    t0 = time.monotonic()
    assert wait_for_autosaves([Hung(), Hung(), Hung()], t0 + 0.6) is False
    assert time.monotonic() - t0 < 1.5  # (in turn: 1.8 s; a loaded machine wakes late)
    assert asked[0] <= 0.6 and asked[1] < 0.05 and asked[2] < 0.05


#: an AnnotationSession for the scripts below: what the signal waits for and then lets go
_STAND_IN = r"""
class Session:
    def wait_autosave(self, timeout):
        print("SAVED", flush=True)
        return True

    def release_session_file(self):
        pass
"""


def _ends_saved(proc, wait: float = 0.0) -> None:
    """Tell ``proc`` (a script of this module) to end with SIGTERM after ``wait`` seconds: it
    saves its sessions ("SAVED") and ends as the signal ends it."""
    try:
        time.sleep(wait)
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)  # the idle loop woke for the signal: nothing else would wake it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.stdout.read().strip() == "SAVED"
    assert proc.returncode == -signal.SIGTERM


_IDLE_NAPARI_TOLD_TO_END = r"""
import sys
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication
from napari_sam._qt.terminate_saves import save_on_terminate

{stand_in}
app = QApplication([])
if {taken!r}:  # the wakeup descriptor is someone else's (an asyncio loop's signal handlers)
    import signal, socket
    theirs = socket.socketpair()
    theirs[1].setblocking(False)
    signal.set_wakeup_fd(theirs[1].fileno())
session = Session()
save_on_terminate(session)
if {taken!r}:
    print("THEIRS", signal.set_wakeup_fd(theirs[1].fileno()) == theirs[1].fileno(), flush=True)
ours = []

def count(frame, event, arg):
    if event == "call" and "napari_sam" in frame.f_code.co_filename:
        ours.append(frame.f_code.co_name)

def stop_counting():
    sys.setprofile(None)
    print("IDLE", len(ours), sorted(set(ours)), flush=True)

QTimer.singleShot(0, lambda: sys.setprofile(count))
QTimer.singleShot(1600, stop_counting)
app.exec()
"""


@pytest.mark.parametrize("taken", [False, True])
def test_an_idle_napari_runs_no_python_of_ours_yet_sigterm_still_saves(taken):
    """The handler used to get its turn from a timer that woke napari's event loop four times
    a second for as long as a dock had been open; the signal now wakes the loop itself. Where
    the wakeup descriptor is someone else's, it is left to them and the timer comes back."""
    script = _IDLE_NAPARI_TOLD_TO_END.format(taken=taken, stand_in=_STAND_IN)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if taken:
        assert line.strip() == "THEIRS True", line + proc.stderr.read()[-3000:]
        line = proc.stdout.readline()
    assert line.startswith("IDLE"), proc.stderr.read()[-3000:]
    # 1.6 s of an idle loop: nothing of ours ran (the timer: about six ticks; the check of
    # the wakeup descriptor runs every WATCH_MS, later than that)
    assert WATCH_MS > 1600
    assert (int(line.split()[1]) >= 3) if taken else line.split()[1] == "0", line
    _ends_saved(proc, wait=0.5)


_WAKEUP_TAKEN_LATER = r"""
import asyncio, signal, socket, sys
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication
import napari_sam._qt.terminate_saves as T

{stand_in}
T.WATCH_MS = 300
app = QApplication([])
session = Session()  # (kept: the handler holds sessions weakly)
T.save_on_terminate(session)
theirs = socket.socketpair()
theirs[1].setblocking(False)
if {case!r} == "reset":  # an IPython prompt (prompt_toolkit) starts and ends
    loop = asyncio.new_event_loop()
    loop.add_signal_handler(signal.SIGWINCH, lambda: None)
    loop.remove_signal_handler(signal.SIGWINCH)  # (sets no wakeup descriptor)
else:  # someone sets their own and keeps it
    signal.set_wakeup_fd(theirs[1].fileno())

def ready():
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    print("READY", fd == theirs[1].fileno(), flush=True)

QTimer.singleShot(1000, ready)
app.exec()
"""


@pytest.mark.parametrize("case", ["reset", "replaced"])
def test_sigterm_still_saves_after_someone_resets_the_wakeup_descriptor(case):
    """asyncio's ``add_signal_handler``/``remove_signal_handler`` (prompt_toolkit around every
    IPython prompt) left no wakeup descriptor, or someone else's: nothing woke the idle loop
    on SIGTERM and napari did not end. Ours is put back where none is set; someone else's is
    kept (with the light timer)."""
    script = _WAKEUP_TAKEN_LATER.format(case=case, stand_in=_STAND_IN)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip() == f"READY {case == 'replaced'}", line + proc.stderr.read()[-3000:]
    _ends_saved(proc)


_NAPARI_QUITS = r"""
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication
from napari_sam._qt.terminate_saves import save_on_terminate

{stand_in}
app = QApplication([])
session = Session()
save_on_terminate(session)
QTimer.singleShot(300, app.quit)
app.exec()
import atexit, gc, signal
import napari_sam._qt.terminate_saves as T

atexit._run_exitfuncs()  # what the interpreter runs at its end
print("QUIT", signal.set_wakeup_fd(-1), flush=True)  # -1: no descriptor of ours left set
T._STATE.clear()  # (the sockets' last references: collected now, warned if left open)
gc.collect()
"""


def test_napari_quitting_leaves_no_unclosed_socket_behind():
    """The sockets that wake the event loop for a signal are closed at exit: a process whose
    state was let go (the test suite's) warned 'unclosed <socket.socket ...>'."""
    script = _NAPARI_QUITS.format(stand_in=_STAND_IN)
    done = subprocess.run([sys.executable, "-W", "default::ResourceWarning", "-c", script],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "QUIT -1", done.stderr[-3000:]
    assert "unclosed" not in done.stderr, done.stderr[-3000:]
