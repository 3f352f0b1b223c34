"""Everything that imports napari, Qt or magicgui: the dock widget and its helpers.

The pure-logic modules here (image_data, history, prompts, preview, embedding_cache,
model_choice, workers without a viewer) are tested without Qt.
"""

from __future__ import annotations

__all__ = ["SamWidget"]


def __getattr__(name: str):
    if name == "SamWidget":
        from .widget import SamWidget

        return SamWidget
    raise AttributeError(name)
