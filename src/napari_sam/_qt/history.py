"""Commits with exact undo and redo: moved to the core, :mod:`napari_sam.annotation`."""

from __future__ import annotations

from napari_sam.annotation import (
    Change,
    Commit,
    CommitHistory,
    ObjectMask,
    apply_objects,
    fresh_id,
)

__all__ = ["Change", "Commit", "CommitHistory", "ObjectMask", "apply_objects", "fresh_id"]
