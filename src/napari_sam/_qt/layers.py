"""The napari layers the plugin makes: prompt points, prompt boxes, preview and result labels.

Points carry a categorical feature ``prompt`` ("positive" / "negative") that sets their colour:
green for positive, magenta for negative (tell-apart for most colour-blind users as well).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_sam.annotate.image_source import ImageSource
from napari_sam.annotate.prompt_groups import boxes_from_shapes

__all__ = [
    "BOXES_NAME",
    "MIN_BOX_SIDE",
    "NEGATIVE_COLOR",
    "POINTS_NAME",
    "POSITIVE_COLOR",
    "PREVIEW_NAME",
    "TARGET_NAME",
    "add_boxes_layer",
    "add_labels_layer",
    "add_points_layer",
    "boxes_from_layer",
    "layer_coords",
    "read_boxes",
    "read_points",
    "same",
    "unwrap",
]

POINTS_NAME = "SAM points"
BOXES_NAME = "SAM boxes"
PREVIEW_NAME = "SAM current object"
TARGET_NAME = "segmentation"
POSITIVE_COLOR = "#39ff14"
NEGATIVE_COLOR = "#ff00ff"
PROMPT_KINDS = ("positive", "negative")


def unwrap(obj):
    """The object behind napari's ``PublicOnlyProxy``, or ``obj`` itself.

    napari hands a plugin opened from the menu a proxy of the viewer, and every layer read
    through it is a new proxy: ``proxy is layer`` is False, and ``id(proxy.data)`` changes
    between two reads. The session keeps the layers themselves.
    """
    while obj is not None and hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    return obj


def same(a, b) -> bool:
    """Whether ``a`` and ``b`` are the same layer, proxied or not (None is no layer)."""
    return a is not None and b is not None and unwrap(a) is unwrap(b)


def _geometry(source: ImageSource, image_layer) -> dict:
    scale, translate = source.derived_geometry(image_layer.scale, image_layer.translate)
    return {"scale": scale, "translate": translate}


def add_points_layer(viewer, source: ImageSource, image_layer):
    """The prompt points layer (the layer itself, never a proxy: :func:`unwrap`)."""
    features = pd.DataFrame({"prompt": pd.Categorical([], categories=PROMPT_KINDS)})
    layer = viewer.add_points(
        np.empty((0, source.ndim)),
        ndim=source.ndim,
        name=POINTS_NAME,
        features=features,
        feature_defaults={"prompt": "positive"},
        face_color="prompt",
        face_color_cycle={"positive": POSITIVE_COLOR, "negative": NEGATIVE_COLOR},
        border_color="black",
        border_width=0.1,
        size=max(3.0, min(source.shape[1:3]) / 40),
        # on screen at most 24 px: zoomed in on a small object of a large image, a point
        # sized for the whole image would hide the object
        canvas_size_limits=(4, 24),
        out_of_slice_display=False,
        **_geometry(source, image_layer),
    )
    layer = unwrap(layer)
    layer.mode = "add"
    return layer


def add_boxes_layer(viewer, source: ImageSource, image_layer):
    layer = viewer.add_shapes(
        ndim=source.ndim,
        name=BOXES_NAME,
        face_color="transparent",
        edge_color="#ffd700",
        edge_width=min(max(1.0, min(source.shape[1:3]) / 200), 4.0),
        **_geometry(source, image_layer),
    )
    layer = unwrap(layer)
    layer.mode = "add_rectangle"
    return layer


def add_labels_layer(viewer, source: ImageSource, image_layer, name: str, dtype=np.uint32):
    data = np.zeros(source.layer_shape, dtype=dtype)
    return unwrap(viewer.add_labels(data, name=name, **_geometry(source, image_layer)))


def read_points(layer, source: ImageSource) -> tuple[np.ndarray, np.ndarray]:
    """Prompt points as (P, 3) (z, row, col) stack coordinates and (P,) 1/0 labels."""
    if layer is None or len(layer.data) == 0:
        return np.zeros((0, 3)), np.zeros(0, int)
    zyx = source.to_zyx(layer.data)
    kinds = layer.features["prompt"].astype(str).to_numpy()
    return zyx, (kinds != "negative").astype(int)


#: Rectangles with a side shorter than this (image pixels) are not prompts: a plain click
#: on the boxes layer makes one of about 1.5 px, which would segment junk.
MIN_BOX_SIDE = 3.0


def read_boxes(layer, source: ImageSource) -> list[np.ndarray]:
    """Rectangles of the boxes layer as (4, 3) vertex arrays in (z, row, col); rectangles
    with a side under :data:`MIN_BOX_SIDE` pixels are left out."""
    if layer is None:
        return []
    out = []
    for verts, kind in zip(layer.data, layer.shape_type):
        if kind != "rectangle":
            continue
        zyx = source.to_zyx(verts)
        if np.ptp(zyx[:, 1:], axis=0).min() < MIN_BOX_SIDE:
            continue
        out.append(zyx)
    return out


def boxes_from_layer(layer, source: ImageSource) -> np.ndarray:
    """Rectangles of the boxes layer as (N, 5) (z, row0, col0, row1, col1) stack boxes."""
    return boxes_from_shapes(read_boxes(layer, source))


def layer_coords(source: ImageSource, zyx) -> np.ndarray:
    """Stack coordinates (N, 3) (z, row, col) -> layer data coordinates (N, ndim)."""
    zyx = np.asarray(zyx, dtype=float).reshape(-1, 3)
    out = np.zeros((len(zyx), source.ndim))
    out[:, list(source.spatial_axes)] = zyx if source.is_3d else zyx[:, 1:]
    return out
