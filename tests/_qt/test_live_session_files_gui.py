"""The dock and session files other live docks autosave in: File > Load SAM session... of
another dock's live file is refused with what to do, and nothing changes; unticking
'Autosave next to the image' lets the dock's file go to another dock."""

from __future__ import annotations

from sam_qt_helpers import canvas_click, dock_on

from napari_sam import session as S
from napari_sam.annotate.session_claims import claimed


def _click(viewer, widget, z: int, row: float = 20, col: float = 20) -> None:
    viewer.dims.set_point(0, z)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, row, col)


def test_file_menu_load_of_another_docks_live_file_is_refused(make_widget, stack_file,
                                                              tiny_ckpt, notifications):
    from napari_sam._qt.session_menu import load_session

    v1, w1 = dock_on(make_widget, stack_file, tiny_ckpt)
    _click(v1, w1, 1)
    assert w1._on_commit() is not None, w1.controller.status
    live = w1.controller.autosave_path()
    v2, w2 = dock_on(make_widget, stack_file, tiny_ckpt)
    layers = [ly.name for ly in v2.layers]
    before = live.read_bytes()
    assert load_session(v2, str(live)) is None
    said = [m for _, m in notifications if m.startswith("Not loaded:")]
    assert said and f"{live} is being autosaved by another dock (or session) of this napari" \
        in said[-1] and "Close that dock (or that napari) first" in said[-1], notifications
    assert [ly.name for ly in v2.layers] == layers and w2.controller.log == []
    assert live.read_bytes() == before
    v1.window.remove_dock_widget(w1)  # the other dock closed: loaded now
    assert len(load_session(v2, str(live)).operations) == 1


def test_unticking_autosave_lets_the_docks_file_go(make_widget, stack_file, tiny_ckpt):
    v1, w1 = dock_on(make_widget, stack_file, tiny_ckpt)
    _click(v1, w1, 1)
    assert w1._on_commit() is not None, w1.controller.status
    file = w1.controller.autosave_path()
    assert claimed(file)
    w1._autosave.setChecked(False)
    assert not claimed(file)
    v2, w2 = dock_on(make_widget, stack_file, tiny_ckpt)  # offered to a second dock now
    assert w2._resume_row.isVisibleTo(w2)
    assert len(w2._on_resume().operations) == 1
    _click(v2, w2, 3)
    assert w2._on_commit() is not None
    assert len(S.read_session(file).operations) == 2
