"""Two docks on one image file, as a walkthrough met them: the second autosaved in
``.session-2`` while the first had the file. Closed and opened again, the second dock was
offered the first one's session instead of going on with its own (whose labels its layer
held), resumed it into a second labels layer drawn over its own, and committed into the
first one's file from then on, ``.session-2`` left behind without a word; a third window was
offered one session with no hint of the other; and the status line naming the alternate with
full paths pushed the dock's Commit row out of view."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels
from qtpy.QtWidgets import QApplication
from sam_qt_helpers import commit_on, dock_on, open_from_menu, pick_checkpoint

from napari_sam import session as S


def files_of(stack_file):
    """The image's session file and its first alternate."""
    return (stack_file.with_name(stack_file.name + S.SESSION_FILE_SUFFIX),
            stack_file.with_name(stack_file.name + ".session-2" + S.SESSION_FILE_SUFFIX))


def two_sessions(make_widget, stack_file, tiny_ckpt):
    """The walkthrough: window 1 commits 2 objects, window 2 one (into ``.session-2``), window 1
    a third; then window 1's dock is closed. Returns window 2's viewer, dock and status line
    after its commit."""
    v1, w1 = dock_on(make_widget, stack_file, tiny_ckpt)
    v2, w2 = dock_on(make_widget, stack_file, tiny_ckpt)
    commit_on(v1, w1, 1)
    commit_on(v1, w1, 3)
    commit_on(v2, w2, 5, row=40)
    line = w2.controller.status
    commit_on(v1, w1, 2)
    v1.window.remove_dock_widget(w1)
    return v2, w2, line


def test_the_status_line_names_the_alternate_file_the_notification_its_path(
        make_widget, stack_file, tiny_ckpt, notifications):
    """The full paths made the line so long that it pushed the Commit row out of view."""
    main, other = files_of(stack_file)
    _v2, _w2, line = two_sessions(make_widget, stack_file, tiny_ckpt)
    assert (f"The session file {main.name} is being autosaved by another dock (or session) of "
            f"this napari: this session is autosaved in {other.name} beside it instead") in line
    assert str(stack_file.parent) not in line, line
    assert [m for _, m in notifications
            if f"The session file {main} is being autosaved" in m
            and f"is autosaved in {other} instead" in m]


def test_a_dock_opened_again_goes_on_with_its_alternate_session(make_widget, stack_file,
                                                                tiny_ckpt, notifications):
    main, other = files_of(stack_file)
    v2, w2, _line = two_sessions(make_widget, stack_file, tiny_ckpt)
    v2.window.remove_dock_widget(w2)
    notifications.clear()
    _dock, w2 = open_from_menu(v2)
    w2.controller.sync = True
    pick_checkpoint(w2, tiny_ckpt)
    QApplication.processEvents()
    assert not w2._resume_row.isVisibleTo(w2), w2._resume_label.text()
    told = [m for _, m in notifications if "goes on with its session in" in m]
    assert told and other.name in told[0] and str(main) in told[0] and "3 commits" in told[0]
    assert "separate (napari-sam cannot merge them)" in told[0]
    commit_on(v2, w2, 3, row=40)
    labels = [ly for ly in v2.layers if isinstance(ly, Labels) and not ly.name.startswith("SAM")]
    assert [ly.name for ly in labels] == ["segmentation"]  # no second layer over it
    assert sorted(np.unique(labels[0].data)) == [0, 1, 2]
    assert len(S.read_session(other).operations) == 2  # its own file goes on
    assert S.read_session(other).operations == w2.controller.log
    assert len(S.read_session(main).operations) == 3  # the first dock's, untouched
    assert not list(stack_file.parent.glob("*.kept-*"))


def test_a_third_window_is_told_of_both_sessions_and_that_they_are_separate(
        make_widget, stack_file, tiny_ckpt, notifications):
    main, other = files_of(stack_file)
    v2, w2, _line = two_sessions(make_widget, stack_file, tiny_ckpt)
    v2.window.remove_dock_widget(w2)
    _v3, w3 = dock_on(make_widget, stack_file, tiny_ckpt)
    QApplication.processEvents()
    offer = w3._resume_label.text()
    assert w3._resume_row.isVisibleTo(w3)
    assert offer.startswith("2 saved sessions for this image: "), offer
    assert f"{main.name} (3 commits" in offer and f"{other.name} (1 commit" in offer, offer
    assert "made while another dock had the file" in offer
    assert "They are separate sessions (napari-sam cannot merge them)" in offer
    newest = max((main, other), key=lambda p: p.stat().st_mtime)
    assert f"Resume loads the newest, {newest.name}" in offer
    assert str(stack_file.parent) not in offer  # (the notification has the paths)
    said = [m for _, m in notifications if m.startswith("2 saved sessions of 'blobs'")]
    assert said and str(main) in said[0] and str(other) in said[0], said
