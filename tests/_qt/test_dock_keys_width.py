"""The dock for keyboard users and small screens.

* Stepping through 'Model' with the arrow keys loaded every model passed (Qt's combo box
  makes each Up/Down a pick): from 'demo' to the 4th entry, three load and embedding jobs.
  Now the entry the keys rest on is loaded (after a moment, on Enter or on leaving the box);
  a pick from the open list still loads at once.
* The dock was at least 397 px wide (a one-line placeholder in the trace panel, the
  'Compute embeddings' button widening the form's label column): on a 1024 x 768 screen
  napari's canvas kept 281 px. Now at most 330 px, with every text still whole.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication, QCheckBox, QDockWidget, QLabel, QPushButton
from sam_qt_helpers import blob_stack

from napari_sam._qt.settled_pick import SETTLE_MS
from napari_sam.annotate.model_choice import ModelChoice


def _cached_models(widget, tiny_predictor, monkeypatch, n: int = 4) -> list:
    """``n`` cached models listed right after 'demo'; loading one records its name (and
    gives the tiny predictor). Returns the names loaded."""
    box, c = widget._model, widget.controller
    for i in range(1, n + 1):
        choice = ModelChoice(f"tiny-{i}", f"tiny-{i} (cached)")
        box.insertItem(i, choice.label, choice)
    loaded = []

    def load(choice, device, precision="auto"):
        loaded.append(choice.key)
        return tiny_predictor

    monkeypatch.setattr(c.models, "load", load)
    return loaded


def _show_focused(viewer, widget, qtbot):
    window = viewer.window._qt_window
    window.resize(1024, 768)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(lambda: widget.isVisible(), timeout=5000)
    widget._scroll.ensureWidgetVisible(widget._model)
    widget._model.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(widget._model.hasFocus, timeout=5000)


def _idle(widget):
    c = widget.controller
    return c.job is None or not c.job.running


def test_arrow_keys_in_model_load_only_the_entry_they_rest_on(make_widget, tiny_predictor,
                                                               qtbot, monkeypatch):
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    loaded = _cached_models(widget, tiny_predictor, monkeypatch)
    c, box = widget.controller, widget._model
    assert box.currentIndex() == 0 and c.model_choice.is_demo
    _show_focused(viewer, widget, qtbot)
    widget.preload = True  # opening the dock embeds the shown slice: so does a model's pick
    said = []
    c.status_changed.connect(said.append)
    for _ in range(3):
        QTest.keyClick(box, Qt.Key.Key_Down)
        qtbot.wait(60)  # a user's quick key presses
    assert box.currentText() == "tiny-3 (cached)"
    assert loaded == [] and c.model_choice.is_demo  # nothing picked while the keys move
    qtbot.waitUntil(lambda: loaded != [], timeout=SETTLE_MS + 5000)
    qtbot.waitUntil(lambda: _idle(widget) and c.emb is not None, timeout=30_000)
    qtbot.wait(SETTLE_MS + 100)
    assert loaded == ["tiny-3"]  # one load job: the entry the keys rested on
    assert c.model_choice.key == "tiny-3"
    named = [line for line in said if "tiny-" in line]
    assert named and all("tiny-3" in line and "tiny-1" not in line for line in named), said
    assert named[0].startswith("Model tiny-3.")


def test_enter_picks_at_once_and_a_click_in_the_list_loads_at_once(make_widget, tiny_predictor,
                                                                     qtbot, monkeypatch):
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    loaded = _cached_models(widget, tiny_predictor, monkeypatch)
    c, box = widget.controller, widget._model
    _show_focused(viewer, widget, qtbot)
    QTest.keyClick(box, Qt.Key.Key_Down)
    QTest.keyClick(box, Qt.Key.Key_Down)
    QTest.keyClick(box, Qt.Key.Key_Return)  # no wait for the keys to rest
    assert c.model_choice.key == "tiny-2"
    # the open list, clicked: picked at once
    box.showPopup()
    view = box.view()
    qtbot.waitUntil(view.isVisible, timeout=5000)
    index = box.model().index(4, 0)
    view.scrollTo(index)
    qtbot.wait(QApplication.doubleClickInterval() + 100)  # Qt ignores a release sooner
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                     pos=view.visualRect(index).center())
    qtbot.waitUntil(lambda: not view.isVisible(), timeout=5000)
    assert c.model_choice.key == "tiny-4"
    assert loaded == []  # preload off: nothing loads until a click on the image


def test_keys_passing_a_download_entry_start_nothing_and_leaving_picks(make_widget, qtbot,
                                                                       monkeypatch):
    """From 'demo', Down passes 'vit_b (download)' to 'vit_l (download)': neither is
    chosen on the way, and Tab away picks the one shown (its status line: downloaded at the
    first click), without waiting."""
    viewer, widget = make_widget(blob_stack(), sync=False, preload=True, name="blobs")
    c, box = widget.controller, widget._model
    qtbot.waitUntil(lambda: c.emb is not None and _idle(widget), timeout=60_000)
    said = []
    monkeypatch.setattr(c, "set_model", lambda ch, real=c.set_model: (said.append(ch.key),
                                                                       real(ch))[1])
    _show_focused(viewer, widget, qtbot)
    QTest.keyClick(box, Qt.Key.Key_Down)
    QTest.keyClick(box, Qt.Key.Key_Down)
    assert box.currentData().key == "vit_l" and said == []
    widget._store.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(lambda: said != [], timeout=5000)
    assert said == ["vit_l"]
    assert "vit_l" in widget._status.text() and "downloaded at the first click" in \
        widget._status.text()
    qtbot.wait(SETTLE_MS + 100)
    assert said == ["vit_l"] and _idle(widget)


def test_keys_resting_as_the_dock_closes_pick_nothing(make_widget, qtbot, monkeypatch):
    """Keys step through 'Model' and the dock is closed within the half second: napari keeps
    the closed dock's widgets, and the rest (or the focus lost) picked a model for a closed
    dock (reviewer of session 36)."""
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    c, box = widget.controller, widget._model
    said = []
    monkeypatch.setattr(c, "set_model", lambda ch: said.append(ch.key))
    _show_focused(viewer, widget, qtbot)
    QTest.keyClick(box, Qt.Key.Key_Down)
    assert widget._model_pick.waiting
    widget._teardown()  # what closing the dock runs
    qtbot.wait(SETTLE_MS + 200)
    assert said == []


def test_keys_resting_on_checkpoint_file_open_no_dialog(make_widget, qtbot, monkeypatch):
    from qtpy.QtWidgets import QFileDialog

    opened = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **k: (opened.append(a), ("", ""))[1])
    viewer, widget = make_widget(blob_stack(), preload=False, name="blobs")
    box = widget._model
    _show_focused(viewer, widget, qtbot)
    QTest.keyClick(box, Qt.Key.Key_End)
    assert box.currentText() == "Checkpoint file..."
    qtbot.wait(SETTLE_MS + 200)
    assert opened == []  # resting there asks nothing
    QTest.keyClick(box, Qt.Key.Key_Return)
    assert len(opened) == 1  # Enter opens the dialog (cancelled here: the model in use)
    assert widget.controller.model_choice.is_demo and box.currentData().is_demo
    QTest.keyClick(box, Qt.Key.Key_End)
    widget._store.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(lambda: not box.hasFocus(), timeout=5000)
    assert len(opened) == 1 and box.currentData().is_demo  # left: the model in use again


def _dock_of(widget) -> QDockWidget:
    parent = widget.parentWidget()
    while not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    return parent


def _clipped(root) -> list[str]:
    """The texts under ``root`` that do not fit their widget: a button's or check box's
    narrower than it needs, a label's line wider than the label or a wrapped label shorter
    than its lines."""
    out = []
    for w in root.findChildren(QLabel) + root.findChildren(QPushButton) + \
            root.findChildren(QCheckBox):
        if not w.isVisibleTo(root) or not w.text() or "<" in w.text():  # (html legend)
            continue
        fm, room = w.fontMetrics(), w.contentsRect().width()
        if isinstance(w, QLabel) and w.wordWrap():
            longest = max(fm.horizontalAdvance(word) for word in w.text().split())
            if longest > room or w.heightForWidth(w.width()) > w.height():
                out.append(f"{w.text()} ({w.width()} x {w.height()}, needs "
                           f"{w.heightForWidth(w.width())} high, longest word {longest})")
        elif isinstance(w, QLabel):
            if max(fm.horizontalAdvance(line) for line in w.text().split("\n")) > room:
                out.append(w.text())
        elif w.minimumSizeHint().width() > w.width():  # its text and the style's padding
            out.append(w.text())
    return out


def test_the_dock_fits_a_small_screen_with_every_text_whole(make_widget, qtbot):
    viewer, widget = make_widget(blob_stack(), preload=False, name="blobs")
    dock = _dock_of(widget)
    assert dock.minimumSizeHint().width() <= 330
    window = viewer.window._qt_window
    window.resize(1024, 768)
    window.show()
    window.resizeDocks([dock], [dock.minimumSizeHint().width()], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: widget.isVisible() and dock.width() <= 330, timeout=5000)
    qtbot.wait(100)
    assert dock.width() <= 330
    assert widget._scroll.horizontalScrollBar().maximum() == 0  # no sideways scrolling
    assert _clipped(widget) == []
    canvas = viewer.window._qt_viewer.canvas.native.width()
    assert canvas >= 340  # (281 px when the dock was 397 px wide)
