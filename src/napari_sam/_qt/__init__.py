"""Everything that imports napari or Qt: the dock widget, the napari layers of the
annotation session, its signals and worker threads.

The session's logic is the core's (:mod:`napari_sam.annotate`, tested without Qt);
:class:`~.controller.AnnotationController` binds it to a viewer.
"""

from __future__ import annotations

__all__ = ["SamWidget"]


def __getattr__(name: str):
    if name == "SamWidget":
        from .widget import SamWidget

        return SamWidget
    raise AttributeError(name)
