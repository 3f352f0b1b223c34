"""The annotation session without napari or Qt: a script (or a test) drives it with numpy
arrays, and the napari dock (:mod:`napari_sam._qt`) is a view of it.

Modules: :mod:`.annotation_session` (the session: image, model, prompts, preview, commits,
undo and redo, status line), :mod:`.stack_actions` (propagation and segment everything),
:mod:`.session_log` (the commit log, session files, autosave, resume), :mod:`.prompt_groups`
(drawn points and boxes -> objects), :mod:`.image_source` (an image as a stack of slices),
:mod:`.model_choice` and :mod:`.embedding_cache` (models and embeddings kept per choice),
:mod:`.jobs` (long work as generators that yield progress), :mod:`.errors`.

Example
-------
>>> from napari_sam.annotate import AnnotationSession, file_choice  # doctest: +SKIP
>>> s = AnnotationSession()
>>> s.set_image(stack)                       # (Z, Y, X)
>>> s.set_model(file_choice("my_model.pt"))
>>> s.add_point(3, 20, 20); s.update_preview(); s.commit()
>>> s.labels                                 # (Z, Y, X) uint32
"""

from __future__ import annotations

from .annotation_session import AnnotationSession
from .errors import UserError
from .image_source import ImageSource, UnsupportedImage, make_source
from .model_choice import ModelCache, ModelChoice, file_choice
from .prompt_groups import POINT_OBJECT, DrawnPrompts, ObjectPrompts, group_prompts

__all__ = [
    "POINT_OBJECT",
    "AnnotationSession",
    "DrawnPrompts",
    "ImageSource",
    "ModelCache",
    "ModelChoice",
    "ObjectPrompts",
    "UnsupportedImage",
    "UserError",
    "file_choice",
    "group_prompts",
    "make_source",
]
