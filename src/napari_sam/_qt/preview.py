"""Decoding of one slice's objects: moved to the core, :mod:`napari_sam.annotation`."""

from __future__ import annotations

from napari_sam.annotation import ObjectPreview, decode_slice

__all__ = ["ObjectPreview", "decode_slice"]
