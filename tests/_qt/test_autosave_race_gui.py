"""Two docks autosaving the session of one image file (two napari windows on it): the second
notices that the file is the first's, autosaves in an alternate file beside it and says so
(status line and notification); neither writes over the other's commits, also with the
large labels written on the autosave worker; a dock closed and opened again goes on in the
file the closed one wrote."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import commit_on, dock_on, open_from_menu, pick_checkpoint

from napari_sam import session as S
from napari_sam.annotate import autosave_writer


@pytest.fixture(params=["on the UI thread", "on the autosave worker"])
def writes(request, monkeypatch):
    """Where autosaves are written: the small labels of the test stack at once, or (as
    labels of 16 MiB and more) on the autosave writer's worker thread."""
    if request.param == "on the autosave worker":
        monkeypatch.setattr(autosave_writer, "BACKGROUND_BYTES", 0)
    return request.param


def test_two_docks_on_one_file_keep_their_own_session_files(make_widget, stack_file,
                                                           tiny_ckpt, notifications, writes):
    v1, w1 = dock_on(make_widget, stack_file, tiny_ckpt)
    v2, w2 = dock_on(make_widget, stack_file, tiny_ckpt)
    for z in (1, 3, 5):  # interleaved commits of the two windows
        commit_on(v1, w1, z)
        commit_on(v2, w2, z, row=40)
        if z == 1:
            from qtpy.QtWidgets import QApplication

            QApplication.processEvents()  # (news of a background write: queued)
            line = w2.controller.status
    mine = stack_file.with_name(stack_file.name + S.SESSION_FILE_SUFFIX)
    other = stack_file.with_name(stack_file.name + ".session-2" + S.SESSION_FILE_SUFFIX)
    first, second = S.read_session(mine), S.read_session(other)
    assert first.operations == w1.controller.log and len(first.operations) == 3
    assert second.operations == w2.controller.log and len(second.operations) == 3
    assert np.array_equal(first.labels, np.asarray(w1.controller.target_layer.data))
    assert np.array_equal(second.labels, np.asarray(w2.controller.target_layer.data))
    assert not list(stack_file.parent.glob("*.kept-*"))  # nobody's file was replaced
    said = "is being autosaved by another dock (or session) of this napari: this session " \
           "is autosaved in {} instead"
    assert said.format(f"{other.name} beside it") in line, line  # the name; notified: path
    assert [m for _, m in notifications if said.format(other) in m]
    # the first window's dock closed and opened again: it goes on in the first file
    v1.window.remove_dock_widget(w1)
    _dock, w1 = open_from_menu(v1)
    w1.controller.sync = True
    pick_checkpoint(w1, tiny_ckpt)
    commit_on(v1, w1, 2)
    assert len(S.read_session(mine).operations) == 4
    assert S.read_session(other).operations == second.operations
    assert not list(stack_file.parent.glob("*.kept-*"))


def test_a_second_window_is_not_offered_the_first_ones_live_session(make_widget, stack_file,
                                                                    tiny_ckpt):
    """Before: the second window's dock offered the first one's session file while the first
    dock autosaved in it; resumed, the one log went on in two diverging files."""
    v1, w1 = dock_on(make_widget, stack_file, tiny_ckpt)
    commit_on(v1, w1, 1)
    v2, w2 = dock_on(make_widget, stack_file, tiny_ckpt)
    assert not w2._resume_row.isVisibleTo(w2)
    commit_on(v2, w2, 3, row=40)
    mine = stack_file.with_name(stack_file.name + S.SESSION_FILE_SUFFIX)
    other = stack_file.with_name(stack_file.name + ".session-2" + S.SESSION_FILE_SUFFIX)
    assert S.read_session(mine).operations == w1.controller.log
    assert S.read_session(other).operations == w2.controller.log
    assert len(w2.controller.log) == 1
    v1.window.remove_dock_widget(w1)  # the first session ends: a third window is offered it
    v3, w3 = dock_on(make_widget, stack_file, tiny_ckpt)
    assert w3._resume_row.isVisibleTo(w3) and "1 commit" in w3._resume_label.text()
