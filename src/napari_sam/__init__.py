"""Segment Anything for microscopy, X-ray and underwater images and volumes.

The public API is imported lazily so that ``import napari_sam`` (done by napari
when it discovers the plugin) stays cheap and does not import torch.

>>> import napari_sam as ns
>>> model = ns.load_model("demo")
>>> pred = ns.Predictor(model)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "load_model": "napari_sam.models.registry",
    "list_models": "napari_sam.models.registry",
    "Predictor": "napari_sam.predictor",
    "ImageEmbedding": "napari_sam.predictor",
    "embed": "napari_sam.tiled_stack",
    "StackEmbeddings": "napari_sam.embeddings",
    "TiledStackEmbeddings": "napari_sam.tiled_stack",
    "segment_volume": "napari_sam.volume",
    "segment_everything": "napari_sam.automatic",
    "train": "napari_sam.training",
    "export_onnx": "napari_sam.export",
    "configure_threads": "napari_sam.device",
}

__all__ = [  # the same names as _EXPORTS, spelled out for linters and IDEs
    "__version__",
    "load_model",
    "list_models",
    "Predictor",
    "ImageEmbedding",
    "embed",
    "StackEmbeddings",
    "TiledStackEmbeddings",
    "segment_volume",
    "segment_everything",
    "train",
    "export_onnx",
    "configure_threads",
]

if TYPE_CHECKING:  # pragma: no cover
    from napari_sam.automatic import segment_everything
    from napari_sam.device import configure_threads
    from napari_sam.embeddings import StackEmbeddings
    from napari_sam.export import export_onnx
    from napari_sam.models.registry import list_models, load_model
    from napari_sam.predictor import ImageEmbedding, Predictor
    from napari_sam.tiled_stack import TiledStackEmbeddings, embed
    from napari_sam.training import train
    from napari_sam.volume import segment_volume


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'napari_sam' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
