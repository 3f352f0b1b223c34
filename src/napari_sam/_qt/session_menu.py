"""File menu entries "Save SAM session..." and "Load SAM session..." (napari.yaml).

They act on the Segment Anything dock, opening it first if needed (as the Plugins menu
does), and ask for the file with the dock's own dialogs.
"""

from __future__ import annotations

from napari.viewer import Viewer

__all__ = ["load_session", "save_session"]

PLUGIN = "napari-sam-stacks"
WIDGET = "Segment Anything"


def _dock_widget(viewer):
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return widget


def save_session(viewer: Viewer, path: str | None = None):
    """File > IO Utilities > Save SAM session...: the dock's "Save session..." (a dialog
    unless ``path``)."""
    return _dock_widget(viewer).save_session(path)


def load_session(viewer: Viewer, path: str | None = None):
    """File > IO Utilities > Load SAM session...: the dock's "Load session..." (a dialog
    unless ``path``)."""
    return _dock_widget(viewer).load_session(path)
