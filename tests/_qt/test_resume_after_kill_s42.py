"""The offer to resume after napari was killed (``kill -9``, a crash) read as after any
other session: it now says that napari ended without closing the session, when its last
autosave was, and how many commits since the last *Save session...* resuming recovers."""

from __future__ import annotations

import signal
from pathlib import Path

from sam_qt_helpers import ONE_COMMIT_SCRIPT, napari_until

HERE = Path(__file__).resolve().parent

_KILLED_AFTER_THREE_COMMITS = r"""
import sys, time
sys.path[:0] = [{helpers!r}, {tests!r}]
import napari
from sam_qt_helpers import commit_on, open_from_menu, pick_checkpoint

""" + ONE_COMMIT_SCRIPT + r"""if {save!r}:
    widget.save_session({work!r})
commit_on(viewer, widget, 3)
commit_on(viewer, widget, 4)
print("COMMITTED", flush=True)
time.sleep(600)
"""


def _killed_after_three_commits(stack_file, ckpt, save: bool) -> None:
    """napari with the dock: a commit, *Save session...* to work.json (``save``), two more
    commits, then ``kill -9``."""
    script = _KILLED_AFTER_THREE_COMMITS.format(
        helpers=str(HERE), tests=str(HERE.parent), stack=str(stack_file), ckpt=str(ckpt),
        save=save, work=str(stack_file.with_name("work.json")))
    proc = napari_until(script, "COMMITTED")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def _offer(make_widget, stack_file, ckpt) -> str:
    from sam_qt_helpers import pick_checkpoint

    viewer, widget = make_widget()
    pick_checkpoint(widget, ckpt)
    viewer.open(str(stack_file), plugin="napari")  # the offer appears
    assert widget._resume_row.isVisibleTo(widget)
    return widget._resume_label.text()


def test_the_offer_after_a_kill_says_so_and_what_resuming_recovers(make_widget, stack_file,
                                                                   tiny_ckpt):
    from napari_sam import session as S

    _killed_after_three_commits(stack_file, tiny_ckpt, save=True)
    saved = S.read_session(stack_file.with_name("blobs.tif.sam-session.json"), load_labels=False)
    text = _offer(make_widget, stack_file, tiny_ckpt)
    assert text.startswith(
        "napari ended unexpectedly (killed or crashed; its last autosave was at "
        f"{S.local_time(saved.saved)}) without closing this session: 2 commits since the last "
        "save ('Save session' to work.json at ")
    assert text.endswith("can be recovered. A saved session exists for this image (3 commits, "
                         f"labels 1-3, saved {S.local_time(saved.saved)}): resume it?")


def test_without_a_save_every_commit_is_counted(make_widget, stack_file, tiny_ckpt):
    _killed_after_three_commits(stack_file, tiny_ckpt, save=False)
    text = _offer(make_widget, stack_file, tiny_ckpt)
    assert ": 3 commits since the last save (none was saved with 'Save session') can be " \
           "recovered. A saved session exists" in text


def test_a_dock_closed_before_napari_quit_is_offered_as_before(make_widget, stack_file,
                                                               tiny_ckpt):
    from sam_qt_helpers import commit_on, pick_checkpoint

    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open(str(stack_file), plugin="napari")
    commit_on(viewer, widget, 1)
    viewer.close()  # (the dock closed: its lock file goes)
    assert _offer(make_widget, stack_file, tiny_ckpt).startswith(
        "A saved session exists for this image (1 commit")
