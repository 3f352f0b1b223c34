"""The dock's Undo and Redo buttons follow the session's history of commits: each is enabled
only while there is a commit to undo (redo), and its tooltip names it ("Undo the commit of
label 3 in 'segmentation'"); disabled, the tooltip says why ("Nothing to undo", a commit of
another image's labels). Before, both were always enabled: a click with nothing to undo only
changed the status line.

The history changes with commits, undos, redos, propagation and Segment everything commits,
a loaded session, and a labels layer removed (its steps are forgotten); each of these says
something on the status line or ends a job, so the buttons are refreshed then, and when a
layer is added or removed. napari's own Ctrl+Z on the labels layer leaves the dock's history
as it is (the dock's Undo then finds the label gone and its Redo puts it back), so the buttons
stay as they were.
"""

from __future__ import annotations

from napari_sam.words import for_count

__all__ = ["HistoryButtons", "history_tip"]


def history_tip(session, redo: bool) -> tuple[bool, str]:
    """Whether the Undo (``redo`` False) or Redo button of ``session`` (an
    :class:`~napari_sam._qt.controller.AnnotationController`) can act now, and its tooltip."""
    verb = "Redo" if redo else "Undo"
    history = session.history
    commit = history.peek_redo() if redo else history.peek_undo()
    if commit is None:
        return False, f"Nothing to {verb.lower()}: no commit {'undone' if redo else 'made'} yet."
    target = commit.target
    if not session.target_alive(target):  # a click forgets it and says so
        return True, f"{verb}: the labels layer of the last commit was removed."
    problem = session.history_problem(target)
    ids = for_count(len(commit.ids), "label") + " " + ", ".join(map(str, commit.ids))
    what = f"the commit of {ids} in '{session.labels_name(target)}'"
    if problem:
        return False, f"Cannot {verb.lower()} {what}: {problem}."
    tail = ("; pixels you changed since are left as they are." if not redo else ".")
    return True, f"{verb} {what}{tail}"


class HistoryButtons:
    """Keeps the dock's Undo and Redo buttons enabled only when they can act.

    Parameters
    ----------
    session : napari_sam._qt.controller.AnnotationController
    undo, redo : QPushButton
        The buttons; their second line (the key) is added to the tooltips.
    links : list
        The dock's (signal, slot) pairs, disconnected when it closes: the connections made
        here are kept in it.
    """

    def __init__(self, session, undo, redo, links: list):
        self.session = session
        self.buttons = {False: undo, True: redo}
        layers = session.viewer.layers.events
        for signal in (session.status_changed, session.job_changed, session.target_changed,
                       session.session_loaded, layers.inserted, layers.removed):
            links.append((signal, self.refresh))
            signal.connect(self.refresh)
        self.refresh()

    def refresh(self, *_) -> None:
        """Enable each button and set its tooltip from the session's history now."""
        for redo, button in self.buttons.items():
            can, tip = history_tip(self.session, redo)
            try:
                key = button.text().partition("\n")[2]
                button.setEnabled(can)
                button.setToolTip(f"{tip} Key: {key}." if key else tip)
            except RuntimeError:  # (its Qt object was deleted with the dock)
                return
