"""Keyboard shortcuts: one table, bound on the viewer, unbound (previous bindings restored) on
close, rendered into the help tooltip and docs/gui.md.

Keys are chosen so that no layer napari ships shadows them while our prompt layers (points,
shapes) or a labels or image layer is selected: napari gives the selected layer's own keys
priority over keys bound on the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KEYS", "MOUSE", "KeyBindings", "help_html", "markdown_table"]


@dataclass(frozen=True)
class Key:
    key: str  # napari key binding syntax
    action: str  # name of the widget handler: _on_<action>
    text: str


KEYS = (
    Key("Shift-S", "segment", "Segment: preview the object on the current slice"),
    Key("Shift-M", "next_candidate", "Next candidate mask of an ambiguous click"),
    Key("N", "toggle_negative", "Toggle new points between positive and negative"),
    Key("Shift-C", "commit", "Commit the previewed objects as new labels"),
    Key("Shift-D", "propagate", "Propagate the current object through the stack (3D)"),
    Key("Shift-X", "clear", "Clear prompts and preview"),
    Key("Shift-U", "undo", "Undo the last commit"),
    Key("Shift-R", "redo", "Redo the last undone commit"),
)

#: Mouse gestures, for the help text.
MOUSE = (
    ("click (SAM points layer)", "positive point"),
    ("Shift-click (SAM points layer)", "negative point"),
    ("drag (SAM boxes layer)", "box: one object per box"),
)


def _display(key: str) -> str:
    return key.replace("-", "+")


def help_html() -> str:
    """The help tooltip: keys and mouse gestures as an HTML table."""
    rows = [f"<tr><td><b>{_display(k.key)}</b></td><td>{k.text}</td></tr>" for k in KEYS]
    rows += [f"<tr><td><b>{g}</b></td><td>{t}</td></tr>" for g, t in MOUSE]
    return "<table>" + "".join(rows) + "</table>"


def markdown_table() -> str:
    """The keys table for docs/gui.md and the README."""
    lines = ["| Key | Action |", "| --- | --- |"]
    lines += [f"| `{_display(k.key)}` | {k.text} |" for k in KEYS]
    lines += [f"| {g} | {t} |" for g, t in MOUSE]
    return "\n".join(lines)


class KeyBindings:
    """Bind :data:`KEYS` on a viewer to ``handlers[action]()``; :meth:`unbind` restores."""

    def __init__(self, viewer, handlers: dict):
        self.viewer = viewer
        self._previous: dict[str, object] = {}
        for k in KEYS:
            fn = handlers[k.action]

            def call(_viewer, fn=fn):
                fn()

            self._previous[k.key] = viewer.bind_key(k.key, call, overwrite=True)

    def unbind(self) -> None:
        """Remove our bindings and put back whatever was bound before."""
        for key, previous in self._previous.items():
            self.viewer.bind_key(key, previous, overwrite=True)
        self._previous.clear()
